// What the groupvit subcommands share: the common options, device/dtype parsing, model loading
// with clear errors, signal handling for batch runs, and the documented exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <string>

#include "batch/batch_options.h"
#include "groupvit/model/weights.h"
#include "groupvit/preprocess/image_preprocess.h"
#include "groupvit/segment/nvlabs_segmentation.h"
#include "groupvit/train/training.h"

namespace groupvit_cli {

// Exit codes (README "Command line").
constexpr int kExitOk = 0;
constexpr int kExitError = 1;             // bad usage, model, device, labels...: nothing or little done
constexpr int kExitSomeImagesFailed = 3;  // the run finished; errors.jsonl lists the images that failed
constexpr int kExitOutputUnusable = 4;    // stopped: outputs cannot be written (disk full, read-only); --resume
// Stopped by SIGINT/SIGTERM after finishing the current batch: 128 + signal (130, 143).

struct Common {
  std::string model_dir;          // --model as given until resolve_model_option makes it a directory
  std::string revision;           // --revision: a hub id's branch, tag or commit; empty: not given
  std::string model_description;  // where the model came from (resolve_model_option)
  std::string device = "cpu";
  std::string dtype = "fp32";
  int threads = 0;
  bool fixed_threads = false;  // --fixed-threads: no adapt_threads
  bool json_output = false;
};

// -m/--model, --revision, and with_device: --device, --dtype, -t/--threads, --fixed-threads; --json.
void add_common(CLI::App* cmd, Common& c, bool with_device);

// The flags' one vocabulary (README "Command line"): -m/--model, -t/--threads, -i/--input,
// -o/--output, --labels (class names, comma-separated), --labels-file. An old name is kept for one
// release as a hidden alias of the new one, with a warning (once per name) when used.
void warn_deprecated(const std::string& old_name, const std::string& new_name);
template <typename T>
CLI::Option* add_deprecated_alias(CLI::App* cmd, const std::string& old_name, const std::string& new_name,
                                  T& variable) {
  return cmd->add_option(old_name, variable)->group("")->each([old_name, new_name](const std::string&) {
    warn_deprecated(old_name, new_name);
  });
}
// --labels "cat, dog,sofa": the names, trimmed, empty entries dropped.
std::vector<std::string> split_labels(const std::string& list);
// --threads: 0 (LibTorch's choice) or 1 to 4x the cores; UsageError otherwise.
void check_threads(int threads);
std::string threads_help();

torch::Device parse_device(const std::string& text);
torch::Dtype parse_dtype(const std::string& text);
// --dtype of the commands that run a model: parse_dtype's; int8 (dynamic int8 Linear layers on the
// CPU, groupvit/model/layers.h), whose activations and outputs are float32: kFloat; or auto, the
// device's fastest (groupvit/runtime/fast_dtype.h; on the CPU timed once, with the threads set
// then), said once on stderr. check_dtype: a UsageError for anything else.
void check_dtype(const std::string& text);
torch::Dtype compute_dtype(const std::string& text, const torch::Device& device);
bool is_int8(const std::string& dtype);

// --model names a directory or a Hugging Face id in the local hub cache (model_source.h): made a
// directory once, before any command checks or loads it. No --model (eval --predictions): nothing.
void resolve_model_option(Common& c);
// Checks the directory first so that a typo gives "does not exist", not a missing config.json.
void check_model_dir(const std::string& dir);
// What every command that runs a model does before loading it: check_model_dir, --device and
// --dtype parsed, --threads applied.
struct ModelPlacement {
  torch::Device device;
  torch::Dtype dtype;  // compute_dtype
  bool int8 = false;
  groupvit::LoadOptions load_options() const;
};
ModelPlacement model_placement(const Common& c);
// --threads applied; on the CPU, unless --fixed-threads, the policy adapt_threads follows started.
void apply_threads(const Common& c, const torch::Device& device);
// On the CPU, unless --fixed-threads: fewer intra-op threads while other processes use this
// process's cores (groupvit/runtime/cpu_share.h), measured from apply_threads on. Call it on the
// thread that runs a forward, before each; it does nothing when there is no such policy.
void adapt_threads();
// The threads forwards ran with so far: the most (--threads or LibTorch's count) and the fewest
// adapt_threads gave them; adaptive: whether the policy runs. In the batch commands' --json summary.
struct ThreadUse {
  bool adaptive = false;
  int most = 0, fewest = 0;
};
ThreadUse thread_use();
// model_placement, then load_model.
groupvit::GroupViTModel load_for(const Common& c, torch::Device* device_out = nullptr,
                                 torch::Dtype* dtype_out = nullptr);

// The model directory's image preprocessing; note_default_preprocessing says on stderr when it
// has none and CLIP's defaults stand in.
groupvit::ImagePreprocessConfig preprocessor_for(const std::string& model_dir);
void note_default_preprocessing(const std::string& model_dir);

// --progress-interval and --quiet, as segment and train offer them.
void add_progress_options(CLI::App* cmd, double& interval_s, bool& quiet);

// SIGINT/SIGTERM set stop_signal() instead of killing the process (a second one kills it).
void install_stop_handlers();
int stop_signal();  // 0 while no stop was requested

struct SimilarityOptions : BatchOptions {
  SimilarityOptions() { batch_size = 16; }
  std::vector<std::string> texts;
};
void add_similarity_options(CLI::App* cmd, SimilarityOptions& o);
int run_similarity(const Common& c, const SimilarityOptions& o);
// --text values; "@FILE" stands for the file's lines (one text a line, empty lines skipped).
std::vector<std::string> read_texts(const std::vector<std::string>& given);

struct ClassifyOptions : BatchOptions {
  ClassifyOptions() { batch_size = 16; }
  std::string labels, labels_file;
  std::string hypothesis_template = "This is a photo of {}.";  // the pipeline's default
  std::string templates;                                       // set: prompt ensembling instead
  int64_t top_k = 0;
};
void add_classify_options(CLI::App* cmd, ClassifyOptions& o);
int run_classify(const Common& c, const ClassifyOptions& o);

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key_file;
  bool insecure = false;
  int max_body_mb = 20;
  int64_t max_pixels = 40000000;
  int max_labels = 64;
  int request_timeout = 30;
  int max_connections = 32;
  int max_queue = 64;
  int max_batch_size = 8;
  int max_wait_ms = 10;
};
void add_serve_options(CLI::App* cmd, ServeOptions& o);
int run_serve(const Common& c, const ServeOptions& o);

struct EmbedOptions : BatchOptions {
  EmbedOptions() { batch_size = 16; }
  std::vector<std::string> texts;
  bool normalize = false;
  int64_t chunk_size = 1000;
  int64_t shard_index = 0;  // resolved: texts are written by shard 0 (or the unsharded run)
};
void add_embed_options(CLI::App* cmd, EmbedOptions& o);
int run_embed(const Common& c, const EmbedOptions& o);

struct SegmentOptions : BatchOptions {
  std::string mode = "nvlabs";
  std::string labels;
  std::string labels_file;
  std::string templates = "simple";
  double bg_thresh = 0.95;
  bool no_background = false;
  bool whole = false;
  int64_t short_side = 448;
  std::string resize = "mmcv";  // nvlabs: mmcv (OpenCV bilinear, as the paper) or pillow (bicubic)
  int64_t long_side = 2048;
  int64_t crop_size = 448;
  int64_t stride = 224;
  int64_t top_k = 5;
  bool cuda_graphs = false;
  bool save_groups = false;
  bool save_logits = false;
  std::string overlay_format = "jpg";
  bool no_overlay = false;
  std::vector<std::string> formats{"png"};                 // png, coco, labelstudio, cvat
  std::string image_url_prefix = "/data/local-files/?d=";  // labelstudio: a task's image URL is this + the key
  std::vector<const CLI::Option*> nvlabs_only;             // the paper protocol's options (warned about with --mode hf)
  const CLI::Option* bg_thresh_option = nullptr;
};
void add_segment_options(CLI::App* cmd, SegmentOptions& o);
int run_segment(const Common& c, const SegmentOptions& o);

// Options of the NVlabs segmentation head that segment and eval share: templates, background
// threshold, sizes, windows, top-k; checked and turned into the library's options.
void add_nvlabs_options(CLI::App* cmd, SegmentOptions& o);
groupvit::NvlabsSegmentationOptions nvlabs_head(const SegmentOptions& o);
groupvit::ImagePreprocessConfig nvlabs_preprocess(const SegmentOptions& o);

struct TrainCliOptions {
  groupvit::TrainOptions train;
  std::string data, output, config, init, tokenizer;
  std::string phrase_template = "{}";
  std::string save_dtype = "fp32";
  bool hflip = false;
  bool resume = false;
  int64_t save_every = 0;
  int64_t stop_after = 0;
  int64_t log_every = 10;
  int workers = 2;
  double progress_interval = 30;
  bool quiet = false;
};
void add_train_options(CLI::App* cmd, TrainCliOptions& o);
int run_train(const Common& c, const TrainCliOptions& o);

struct EvalOptions {
  SegmentOptions seg;                 // templates and the NVlabs head's options
  std::string images;                 // -i/--input: directory of images
  std::string ground_truth;           // directory of label PNGs (same file stems)
  std::string labels;                 // class names, comma-separated: entry k = label k
  std::string labels_file;            // class list, line k = label k; "background" first means a threshold
  std::string predictions;            // evaluate these label PNGs instead of running the model
  std::string list;                   // optional: the file stems to evaluate (VOC ImageSets style)
  std::string report;                 // optional (-o/--output): write the JSON report here
  std::string report_md;              // optional: the report as a Markdown table
  std::string dataset;                // a preset (apps/datasets.h) in place of images/labels/list/classes
  std::string root;                   // the preset's dataset root
  std::string label_suffix = ".png";  // a label map is STEM + this
  int64_t max_images = 0;
  const CLI::Option* bg_thresh_option = nullptr;  // given explicitly: it overrides the preset's
};
void add_eval_options(CLI::App* cmd, EvalOptions& o);
int run_eval(const Common& c, const EvalOptions& o);

// UsageError naming the first name that appears twice in `names` (from `source`) and both positions.
void reject_duplicates(const std::vector<std::string>& names, const std::string& source);
// Whitespace trimmed from both ends.
std::string trim(const std::string& s);
// The non-empty lines of a text file, trimmed; UsageError naming `what` and the path when it is
// unreadable or holds none.
std::vector<std::string> read_lines(const std::string& path, const std::string& what);
// --templates: simple, subset, full or a file with one template a line.
std::vector<std::string> read_templates(const std::string& name);

}  // namespace groupvit_cli
