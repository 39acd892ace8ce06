// The groupvit command-line tool: model information, tokenization, image-text similarity
// (cmd_similarity.cpp), embeddings (cmd_embed.cpp), zero-shot segmentation of image sets (cmd_segment.cpp), training
// (cmd_train.cpp) and evaluation on labelled data (cmd_eval.cpp).
// Every failure becomes one line on stderr and a non-zero exit code.
#include "groupvit/groupvit.h"

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "batch/source.h"
#include "cli_common.h"
#include "groupvit/image/image.h"
#include "groupvit/model/weights.h"
#include "groupvit/preprocess/tokenizer_torch.h"
#include "groupvit/version.h"

namespace {

using namespace groupvit_cli;
namespace fs = std::filesystem;
using json = nlohmann::json;

int run_info(const Common& c) {
  check_model_dir(c.model_dir);
  groupvit::verify_model_files(c.model_dir);
  const auto config = groupvit::GroupViTConfig::from_file((fs::path(c.model_dir) / groupvit::kConfigFile).string());
  const auto weights = groupvit::find_weights_file(c.model_dir);
  // One read of the weights: checked against the config like load_model does, and the
  // stored dtype taken from the same tensors.
  const auto tensors = groupvit::read_weights_file(weights);
  groupvit::check_file_can_hold(config, weights);
  groupvit::GroupViTModel model(config);
  groupvit::load_state_dict(*model, tensors, weights);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  std::string stored_dtype = "float32";
  for (const auto& [name, t] : tensors) {
    if (t.is_floating_point()) {
      stored_dtype = c10::toString(t.scalar_type());
      break;
    }
  }
  const auto& tc = config.text_config;
  const auto& vc = config.vision_config;
  json devices = json::array({"cpu"});
  if (torch::cuda::is_available())
    for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i)
      devices.push_back("cuda:" + std::to_string(i));
  json j = {{"model_dir", c.model_dir},
            {"model_source", c.model_description},
            {"weights", weights},
            {"stored_dtype", stored_dtype},
            {"parameters", params},
            {"text",
             {{"layers", tc.num_hidden_layers},
              {"width", tc.hidden_size},
              {"heads", tc.num_attention_heads},
              {"vocab_size", tc.vocab_size},
              {"context_length", tc.max_position_embeddings}}},
            {"vision",
             {{"width", vc.hidden_size},
              {"heads", vc.num_attention_heads},
              {"depths", vc.depths},
              {"num_group_tokens", vc.num_group_tokens},
              {"num_output_groups", vc.num_output_groups},
              {"image_size", {vc.image_height, vc.image_width}},
              {"patch_size", vc.patch_size}}},
            {"projection_dim", config.projection_dim},
            {"devices", devices},
            {"version", GROUPVIT_VERSION}};
  if (c.json_output) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "model      " << c.model_dir << "\n";
  if (c.model_description != c.model_dir) std::cout << "source     " << c.model_description << "\n";
  std::cout << "weights    " << weights << " (" << stored_dtype << ")\n"
            << "parameters " << params << "\n"
            << "text       " << tc.num_hidden_layers << " layers, width " << tc.hidden_size << ", "
            << tc.num_attention_heads << " heads, vocabulary " << tc.vocab_size << ", context "
            << tc.max_position_embeddings << "\n"
            << "vision     width " << vc.hidden_size << ", " << vc.num_attention_heads << " heads, depths "
            << json(vc.depths).dump() << ", group tokens " << json(vc.num_group_tokens).dump() << ", output groups "
            << json(vc.num_output_groups).dump() << ", " << vc.image_height << "x" << vc.image_width << " images in "
            << vc.patch_size << "px patches\n"
            << "projection " << config.projection_dim << "\n"
            << "devices    " << devices.dump() << "\n";
  return 0;
}

int run_tokenize(const Common& c, const std::vector<std::string>& texts) {
  check_model_dir(c.model_dir);
  auto tokenizer = groupvit::ClipTokenizer::from_directory(c.model_dir);
  tokenizer.set_truncation_warning([](const std::string& text, size_t n) {
    std::cerr << "groupvit: warning: text of " << n << " tokens truncated to "
              << groupvit::ClipTokenizer::kContextLength << ": \"" << text.substr(0, 40)
              << (text.size() > 40 ? "...\"" : "\"") << "\n";
  });
  auto batch = tokenizer.encode_batch(texts, groupvit::Padding::Longest);
  json ids = json::array(), mask = json::array();
  for (const auto& e : batch) {
    ids.push_back(e.input_ids);
    mask.push_back(e.attention_mask);
  }
  if (c.json_output) {
    std::cout << json{{"input_ids", ids}, {"attention_mask", mask}}.dump() << "\n";
  } else {
    for (size_t i = 0; i < texts.size(); ++i) std::cout << texts[i] << "\n  " << ids[i].dump() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A file size limit (ulimit -f) must surface as a write error (EFBIG) that the batch run reports,
  // not as SIGXFSZ killing the process mid-run.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "groupvit: GroupViT (CVPR 2022) in C++ with LibTorch - image-text similarity and zero-shot "
      "segmentation that emerges from text supervision"};
  app.set_version_flag("--version", std::string("groupvit ") + GROUPVIT_VERSION);
  app.require_subcommand(1);
  // A bad option is reported like every other usage error: one "groupvit: error:" line.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("groupvit: error: ") + e.what() + " (see --help)\n";
  });

  Common info_opts, tok_opts, sim_opts;
  auto* info = app.add_subcommand("info", "show a model directory's configuration, size and the devices available");
  add_common(info, info_opts, false);

  std::vector<std::string> tok_texts;
  auto* tokenize =
      app.add_subcommand("tokenize", "CLIP BPE token ids of texts, padded like transformers' padding=True");
  add_common(tokenize, tok_opts, false);
  tokenize->add_option("--text", tok_texts, "a text to tokenize (repeat for several)")->required();

  SimilarityOptions sim;
  auto* similarity = app.add_subcommand("similarity", "probability of each text for each image (softmax over texts)");
  add_common(similarity, sim_opts, true);
  add_similarity_options(similarity, sim);

  Common classify_opts;
  ClassifyOptions classify_cli;
  auto* classify = app.add_subcommand("classify",
                                      "zero-shot classification: each image's candidate labels sorted by score, as "
                                      "Hugging Face's zero-shot-image-classification pipeline");
  add_common(classify, classify_opts, true);
  add_classify_options(classify, classify_cli);

  Common serve_opts;
  ServeOptions serve_cli;
  auto* serve = app.add_subcommand("serve",
                                   "the demo page and a JSON API over HTTP (segment, similarity, embed), with "
                                   "dynamic batching; docs/serve-api.md");
  add_common(serve, serve_opts, true);
  add_serve_options(serve, serve_cli);

  Common embed_opts, seg_opts;
  EmbedOptions embed_cli;
  auto* embed = app.add_subcommand("embed",
                                   "projected image and/or text features (as get_image_features / "
                                   "get_text_features), written as .json or .npy, or streamed into a directory");
  add_common(embed, embed_opts, true);
  add_embed_options(embed, embed_cli);

  SegmentOptions seg;
  auto* segment = app.add_subcommand("segment",
                                     "zero-shot semantic segmentation of images, files or whole "
                                     "directories, with resumable, shardable batch runs");
  add_common(segment, seg_opts, true);
  add_segment_options(segment, seg);

  Common train_opts;
  TrainCliOptions train_cli;
  auto* train = app.add_subcommand("train",
                                   "train GroupViT from captioned images (image-caption and multi-label "
                                   "contrastive losses), from scratch or fine-tuning; writes a model directory");
  train->add_option("--device", train_opts.device, "cpu, cuda or cuda:N")->capture_default_str();
  train->add_option("-t,--threads", train_opts.threads, threads_help());
  train->add_flag("--json", train_opts.json_output, "print a JSON summary at the end");
  add_train_options(train, train_cli);

  Common eval_opts;
  EvalOptions eval_cli;
  auto* eval = app.add_subcommand("eval",
                                  "zero-shot segmentation mIoU on a labelled dataset (VOC layout: images, "
                                  "label PNGs, class list) with the paper's protocol");
  add_common(eval, eval_opts, true);
  eval->get_option("--model")->required(false)->description(
      "model directory or Hugging Face id, as the other commands take it (not needed with --predictions)");
  add_eval_options(eval, eval_cli);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every bad option is the documented usage error, exit 1 (CLI11's
    // own codes, 105 for a value out of range and so on, are not part of the interface).
    return app.exit(e) == 0 ? 0 : kExitError;
  }
  try {
    // --model may be a hub id: resolved into a directory once, before any command looks at it.
    const std::pair<CLI::App*, Common*> with_model[] = {
        {info, &info_opts},   {tokenize, &tok_opts}, {similarity, &sim_opts}, {classify, &classify_opts},
        {embed, &embed_opts}, {segment, &seg_opts},  {eval, &eval_opts},      {serve, &serve_opts}};
    for (const auto& [cmd, opts] : with_model)
      if (*cmd) resolve_model_option(*opts);
    if (*info) return run_info(info_opts);
    if (*tokenize) return run_tokenize(tok_opts, tok_texts);
    // --threads is checked before any work: an absurd count would hang LibTorch's pool set-up.
    if (*similarity) return check_threads(sim_opts.threads), run_similarity(sim_opts, sim);
    if (*classify) return check_threads(classify_opts.threads), run_classify(classify_opts, classify_cli);
    if (*embed) return check_threads(embed_opts.threads), run_embed(embed_opts, embed_cli);
    if (*serve) return check_threads(serve_opts.threads), run_serve(serve_opts, serve_cli);
    if (*segment) return check_threads(seg_opts.threads), run_segment(seg_opts, seg);
    if (*train) return check_threads(train_opts.threads), run_train(train_opts, train_cli);
    if (*eval) return check_threads(eval_opts.threads), run_eval(eval_opts, eval_cli);
  } catch (const c10::Error& e) {
    std::cerr << "groupvit: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "groupvit: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
