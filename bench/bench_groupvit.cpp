// Benchmark of the C++ port: times each row of the benchmark table (see scripts/bench.sh) and
// prints one JSON object. bench/bench_reference.py times the same rows with transformers.
//
//   bench_groupvit --model DIR [--threads N] [--reps R] [--warmup W] [--device cpu|cuda]
//                  [--rows image_fp32_b1,...] [--only-load] [--profile image_fp32_b1|image_fp32_b32]
// --profile records the LibTorch profiler's CPU events over the timed runs of one row and prints
// each operator's self time instead of the table rows (bench/profile_report.py compares both sides).
#include <sys/resource.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "groupvit/formats/png_writer.h"
#include "groupvit/groupvit.h"
#include "groupvit/model/layers.h"
#include "groupvit/runtime/allocator.h"
#include "groupvit/runtime/cpu_share.h"
#include "groupvit/runtime/cuda_graph.h"
#include "groupvit/runtime/fast_dtype.h"
#include "groupvit/segment/nvlabs_segmentation.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Share of tokens, over every stage, whose hard assignment (argmax over groups) equals the reference's.
double assignment_agreement(const std::vector<torch::Tensor>& ours, const std::vector<torch::Tensor>& ref) {
  double agree = 0, total = 0;
  for (size_t s = 0; s < ours.size(); ++s) {
    agree += (ours[s].argmax(1) == ref[s].argmax(1)).sum().item<double>();
    total += static_cast<double>(ref[s].argmax(1).numel());
  }
  return agree / total;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// As the CLI runs: fewer threads while other processes use the cores (groupvit/runtime/cpu_share.h),
// measured before each run; null with --fixed-threads or on CUDA.
groupvit::AdaptiveThreads* adaptive_threads = nullptr;
int adapt_threads() { return adaptive_threads ? adaptive_threads->update() : torch::get_num_threads(); }

// Median, min and max of `reps` timed runs after `warmup` untimed ones, and the fewest threads
// the runs were given.
json time_it(const std::function<void()>& fn, int warmup, int reps, bool cuda) {
  for (int i = 0; i < warmup; ++i) {
    adapt_threads();
    fn();
  }
  std::vector<double> t;
  int fewest_threads = torch::get_num_threads();
  for (int i = 0; i < reps; ++i) {
    fewest_threads = std::min(fewest_threads, adapt_threads());
    if (cuda) torch::cuda::synchronize();
    const auto t0 = Clock::now();
    fn();
    if (cuda) torch::cuda::synchronize();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return {{"median_s", t[t.size() / 2]},
          {"min_s", t.front()},
          {"max_s", t.back()},
          {"reps", reps},
          {"fewest_threads", fewest_threads}};
}

// Self time per operator (its duration minus that of the operators it called), summed over all
// calls, from the profiler's CPU events: the same numbers torch.profiler's key_averages() gives
// the reference as self_cpu_time_total.
json profile_ops(const std::function<void()>& fn, int warmup, int reps) {
  namespace prof = torch::autograd::profiler;
  namespace impl = torch::profiler::impl;
  for (int i = 0; i < warmup; ++i) fn();
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO);
  const std::set<impl::ActivityType> activities = {impl::ActivityType::CPU};
  prof::prepareProfiler(config, activities);  // sets up Kineto's trace; enableProfiler crashes without it
  prof::enableProfiler(config, activities);
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) fn();
  const double wall = seconds_since(t0);
  const auto result = prof::disableProfiler();
  std::map<uint64_t, std::vector<const prof::KinetoEvent*>> by_thread;
  for (const auto& e : result->events()) {
    if (e.deviceType() == c10::DeviceType::CPU && !e.isAsync()) by_thread[e.startThreadId()].push_back(&e);
  }
  std::map<std::string, std::pair<double, int64_t>> ops;  // name -> (self seconds, calls)
  for (auto& [thread, events] : by_thread) {
    std::sort(events.begin(), events.end(), [](auto* a, auto* b) {
      return a->startNs() != b->startNs() ? a->startNs() < b->startNs() : a->endNs() > b->endNs();
    });
    // A stack of open events: each event's time is taken from its innermost enclosing event.
    std::vector<std::pair<const prof::KinetoEvent*, double>> open;  // event, self seconds so far
    auto close_until = [&](uint64_t t) {
      while (!open.empty() && open.back().first->endNs() <= t) {
        auto& slot = ops[open.back().first->name()];
        slot.first += open.back().second;
        slot.second += 1;
        open.pop_back();
      }
    };
    for (const auto* e : events) {
      close_until(e->startNs());
      const double d = static_cast<double>(e->durationNs()) * 1e-9;
      if (!open.empty()) open.back().second -= d;
      open.emplace_back(e, d);
    }
    close_until(std::numeric_limits<uint64_t>::max());
  }
  json out = {{"reps", reps}, {"wall_s", wall}, {"ops", json::object()}};
  for (const auto& [name, v] : ops) out["ops"][name] = {{"self_s", v.first}, {"calls", v.second}};
  return out;
}

// Multiply-adds x2 of the image tower and its head for one image at the native 224 size:
// the linear layers and attention products dominate; LayerNorms and softmaxes are left out.
double image_features_flops(const groupvit::GroupViTConfig& config) {
  const auto& v = config.vision_config;
  const double c = static_cast<double>(v.hidden_size), inter = static_cast<double>(v.intermediate_size);
  double flops = 2.0 * v.num_channels * v.patch_size * v.patch_size * c * static_cast<double>(v.num_patches());
  auto layer = [&](double tokens) { return tokens * (8 * c * c + 4 * c * inter) + 4 * tokens * tokens * c; };
  double image_tokens = static_cast<double>(v.num_patches());
  for (size_t s = 0; s < v.depths.size(); ++s) {
    const double groups = static_cast<double>(v.num_group_tokens[s]);
    flops += static_cast<double>(v.depths[s]) * layer(image_tokens + groups);
    if (groups > 0) {
      const double out = static_cast<double>(v.num_output_groups[s]);
      const double tokens_dim = v.assign_mlp_ratio[0] * c, channels_dim = v.assign_mlp_ratio[1] * c;
      flops += 2 * c * (groups * tokens_dim + tokens_dim * out);                         // mixer over tokens
      flops += out * 8 * c * c + image_tokens * 4 * c * c + 4 * out * image_tokens * c;  // cross-attention
      flops += out * 4 * c * inter;                                                      // its MLP
      flops += out * 4 * c * c + image_tokens * 4 * c * c + 4 * out * image_tokens * c;  // assignment
      flops += out * 4 * c * channels_dim;                                               // channel MLP
      image_tokens = out;
    }
  }
  flops +=
      2 * c * config.projection_intermediate_dim + 2.0 * config.projection_intermediate_dim * config.projection_dim;
  return flops;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"groupvit benchmark (C++ side); prints JSON"};
  std::string model_dir, device_name = "cpu", rows_arg, profile_row;
  int threads = 0, reps = 7, warmup = 2;
  int64_t gpu_batch = 64;
  bool only_load = false, system_malloc = false, fixed_threads = false;
  app.add_option("--model", model_dir, "model directory (converted or Hugging Face)")->required();
  app.add_option("--threads", threads, "intra-op threads (0: LibTorch's default)");
  app.add_option("--reps", reps, "timed repetitions per row");
  app.add_option("--warmup", warmup, "untimed warm-up runs per row");
  app.add_option("--device", device_name, "cpu or cuda");
  app.add_option("--rows", rows_arg, "comma-separated subset of rows");
  app.add_option("--gpu-batch", gpu_batch, "batch of the gpu_* rows (run by default on CUDA only)")
      ->capture_default_str();
  app.add_flag("--system-malloc", system_malloc,
               "leave malloc as it is instead of keep_freed_memory_for_reuse() after the load (as the CLI does)");
  app.add_flag("--fixed-threads", fixed_threads, "keep --threads while other processes use the cores (as the CLI's)");
  app.add_flag("--only-load", only_load, "only time loading (run in a fresh process for peak memory)");
  app.add_option("--profile", profile_row, "print operator self times over the timed runs of this row")
      ->check(CLI::IsMember({"image_fp32_b1", "image_fp32_b32", "text_fp32_1", "text_fp32_80", "image_int8_b1",
                             "image_int8_b32", "text_int8_1", "text_int8_80", "image_bf16_b1", "image_bf16_b32"}));
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) torch::set_num_threads(threads);
  const torch::Device device(device_name);
  const bool cuda = device.is_cuda();
  std::optional<groupvit::AdaptiveThreads> adaptive;
  if (!cuda && !fixed_threads) adaptive_threads = &adaptive.emplace(threads);

  json out = {{"impl", "groupvit C++"},
              {"threads", torch::get_num_threads()},
              {"device", device_name},
              {"torch", TORCH_VERSION}};
  try {
    // Load time with a warm page cache: read the weights once before timing.
    const auto weights = groupvit::find_weights_file(model_dir);
    {
      std::ifstream in(weights, std::ios::binary);
      std::vector<char> sink(1 << 20);
      while (in.read(sink.data(), static_cast<std::streamsize>(sink.size())) || in.gcount() > 0) {
      }
    }
    const double rss_before = peak_rss_mb();
    const auto t0 = Clock::now();
    auto model = groupvit::GroupViT::load(model_dir, device, torch::kFloat);
    out["load_s"] = seconds_since(t0);
    out["load_peak_rss_mb"] = peak_rss_mb();
    out["rss_before_load_mb"] = rss_before;
    double weight_mb = 0;
    for (const auto& p : model.model()->parameters()) weight_mb += static_cast<double>(p.numel() * 4) / 1048576.0;
    out["weights_mb"] = weight_mb;
    if (only_load) {
      std::cout << out.dump(1) << "\n";
      return 0;
    }
    // What the CLI does after loading (groupvit/runtime/allocator.h).
    out["keep_freed_memory_for_reuse"] = !system_malloc && groupvit::keep_freed_memory_for_reuse();

    std::set<std::string> rows;
    std::stringstream list(rows_arg);
    for (std::string r; std::getline(list, r, ',');) rows.insert(r);
    auto want = [&](const std::string& r) { return rows.empty() || rows.count(r) > 0; };
    // The gpu_* rows run by default on CUDA; elsewhere (a smoke test at a small --gpu-batch)
    // only when named.
    auto want_gpu = [&](const std::string& r) { return cuda ? want(r) : rows.count(r) > 0; };
    torch::NoGradGuard no_grad;
    torch::manual_seed(0);
    const auto& config = model.model()->config();
    const auto opts = torch::TensorOptions().device(device);
    json results = json::object();
    // The int8 rows profile the model after quantize_linear_int8 (--dtype int8).
    if (profile_row.find("_int8_") != std::string::npos) model.model()->quantize_linear_int8();
    const bool profile_bf16 = profile_row.find("_bf16_") != std::string::npos;  // the model as --dtype bf16 has it
    if (profile_bf16) model.model()->to(torch::kBFloat16);
    if (!profile_row.empty() && profile_row.rfind("text_", 0) == 0) {
      const int64_t n = (profile_row == "text_fp32_1" || profile_row == "text_int8_1") ? 1 : 80;
      const std::vector<std::string> words = {"cat", "dog", "person", "car", "tree", "sky", "road", "grass"};
      std::vector<std::string> prompts;
      for (int64_t i = 0; i < n; ++i) prompts.push_back("a photo of a " + words[i % words.size()] + ".");
      auto tokens = model.tokenize(prompts);
      out["profile"] =
          profile_ops([&] { model.model()->get_text_features(tokens.input_ids, tokens.attention_mask); }, warmup, reps);
      out["profile"]["row"] = profile_row;
      std::cout << out.dump(1) << "\n";
      return 0;
    }
    if (!profile_row.empty()) {
      const int64_t batch =
          profile_row.size() > 3 && profile_row.compare(profile_row.size() - 3, 3, "_b1") == 0 ? 1 : 32;
      auto pixels = torch::randn({batch, 3, 224, 224}, opts.dtype(profile_bf16 ? torch::kBFloat16 : torch::kFloat));
      out["profile"] = profile_ops([&] { model.model()->get_image_features(pixels); }, warmup, reps);
      out["profile"]["row"] = profile_row;
      std::cout << out.dump(1) << "\n";
      return 0;
    }

    // The machine's fp32 matrix-multiply rate: the ceiling for the image tower. The best of
    // many runs, since a shared machine's clock and neighbours make single runs vary.
    auto gemm_fp32 = [&] {
      const int64_t n = 2048;
      auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
      auto r = time_it([&] { auto c = torch::mm(a, b); }, 3, std::max(reps, 15), cuda);
      r["gflops"] = 2.0 * n * n * n / r["min_s"].get<double>() / 1e9;
      results["gemm_fp32"] = r;
    };
    auto gemm_bf16 = [&] {
      const int64_t n = 1024;
      auto a = torch::randn({n, n}, opts).to(torch::kBFloat16), b = torch::randn({n, n}, opts).to(torch::kBFloat16);
      auto r = time_it([&] { auto c = torch::mm(a, b); }, 2, reps, cuda);
      r["gflops"] = 2.0 * n * n * n / r["median_s"].get<double>() / 1e9;
      results["gemm_bf16"] = r;
    };
    if (want("gemm_fp32")) gemm_fp32();
    if (want("gemm_bf16")) gemm_bf16();
    const double flops = image_features_flops(config);
    // The image and text rows of one precision ("fp32", "int8"), as the model stands.
    auto image_rows = [&](const std::string& tag) {
      for (int64_t batch : {1, 8, 32}) {
        const std::string name = "image_" + tag + "_b" + std::to_string(batch);
        if (!want(name)) continue;
        auto pixels = torch::randn({batch, 3, 224, 224}, opts);
        auto r = time_it([&] { model.model()->get_image_features(pixels); }, warmup, reps, cuda);
        r["images_per_s"] = static_cast<double>(batch) / r["median_s"].get<double>();
        r["gflops"] = flops * static_cast<double>(batch) / r["median_s"].get<double>() / 1e9;
        results[name] = r;
      }
    };
    const std::vector<std::string> labels = {"cat", "dog", "person", "car", "tree", "sky", "road", "grass"};
    auto text_rows = [&](const std::string& tag) {
      for (int64_t n : {1, 80}) {
        const std::string name = "text_" + tag + "_" + std::to_string(n);
        if (!want(name)) continue;
        std::vector<std::string> prompts;
        for (int64_t i = 0; i < n; ++i) prompts.push_back("a photo of a " + labels[i % labels.size()] + ".");
        auto tokens = model.tokenize(prompts);
        results[name] = time_it([&] { model.model()->get_text_features(tokens.input_ids, tokens.attention_mask); },
                                warmup, reps, cuda);
      }
    };
    image_rows("fp32");
    if (want("image_bf16_b32") || want("image_bf16_b1") || want("bf16_accuracy")) {
      // Without native bf16 matrix units LibTorch falls back to a scalar kernel (seen: under
      // 1 GFLOP/s on an AVX2-only CPU); a full batch-32 row would then take many minutes, so
      // such machines get one small timed pass and the accuracy check on 16 images (~10 s there;
      // 2 images' 520 tokens made the agreement swing by a percent between runs).
      // "Native" is what `--dtype auto` decides (groupvit/runtime/fast_dtype.h), so that the peer
      // benchmark's "ours in its best precision" rows run what a user's auto run would.
      const auto& check = groupvit::cpu_bf16_check();
      const bool native = cuda || check.native;
      const int64_t batch = native ? 32 : 1, check_batch = native ? 32 : 16;
      auto pixels = torch::randn({check_batch, 3, 224, 224}, opts);
      auto fp32_embeds = model.model()->get_image_features(pixels);
      auto fp32_assign = model.model()->vision_model(pixels, false, true).attentions;
      model.model()->to(torch::kBFloat16);
      auto px16 = pixels.to(torch::kBFloat16);
      if (want("image_bf16_b32")) {
        auto timed = torch::randn({batch, 3, 224, 224}, opts).to(torch::kBFloat16);
        auto r =
            time_it([&] { model.model()->get_image_features(timed); }, native ? warmup : 0, native ? reps : 1, cuda);
        r["batch"] = batch;
        r["images_per_s"] = static_cast<double>(batch) / r["median_s"].get<double>();
        r["native_bf16"] = native;
        r["auto_check"] = {{"bf16_instructions", check.instructions},
                           {"fp32_gflops", check.fp32_gflops},
                           {"bf16_gflops", check.bf16_gflops},
                           {"threads", check.threads}};
        results["image_bf16_b32"] = r;
      }
      // Batch 1 only where bf16 is what --dtype auto runs: elsewhere the scalar fallback says nothing new.
      if (want("image_bf16_b1") && native) {
        auto timed = torch::randn({1, 3, 224, 224}, opts).to(torch::kBFloat16);
        auto r = time_it([&] { model.model()->get_image_features(timed); }, warmup, reps, cuda);
        r["images_per_s"] = 1.0 / r["median_s"].get<double>();
        r["native_bf16"] = true;
        results["image_bf16_b1"] = r;
      }
      auto bf16_embeds = model.model()->get_image_features(px16).to(torch::kFloat);
      auto bf16_assign = model.model()->vision_model(px16, false, true).attentions;
      results["bf16_accuracy"] = {
          {"images", check_batch},
          {"min_cosine", torch::cosine_similarity(bf16_embeds, fp32_embeds, 1).min().item<double>()},
          {"assignment_agreement", assignment_agreement(bf16_assign, fp32_assign)}};
      model.model()->to(torch::kFloat);
    }
    text_rows("fp32");
    auto text_embeds = model.encode_texts({"a photo of a cat.", "a photo of a dog.", "a photo of a person.",
                                           "a photo of a car.", "a photo of a tree.", "a photo of the sky."});
    if (want("seg_hf_224")) {
      auto pixels = torch::randn({1, 3, 224, 224}, opts);
      results["seg_hf_224"] = time_it([&] { model.segment_hf_labels(pixels, text_embeds); }, warmup, reps, cuda);
    }
    if (want("seg_nvlabs_640x480")) {
      // A 640x480 photo at short side 448: 597x448, two 448-crops with stride 224.
      auto image = torch::randn({3, 448, 597}, opts);
      groupvit::NvlabsSegmentationOptions so;
      results["seg_nvlabs_640x480"] = time_it(
          [&] {
            groupvit::nvlabs_segment(*model.model(), {image}, text_embeds, {{{480, 640}}}, so);
          },
          warmup, reps, cuda);
    }
    // Throughput at a GPU batch: image features and Hugging Face-style segmentation (labels of
    // 6 classes), each eager and through CUDA graphs (groupvit/runtime/cuda_graph.h), in fp16 and bf16
    // (fp32 only when named). bench_reference.py --gpu-rows times transformers on the same rows.
    const std::vector<std::pair<std::string, torch::Dtype>> gpu_dtypes = {
        {"fp16", torch::kHalf}, {"bf16", torch::kBFloat16}, {"fp32", torch::kFloat}};
    auto seg_text = model.encode_texts({"a photo of a cat.", "a photo of a dog.", "a photo of a person.",
                                        "a photo of a car.", "a photo of a tree.", "a photo of a sky."});
    for (const auto& [tag, dtype] : gpu_dtypes) {
      const std::string image_row = "gpu_image_" + tag, seg_row = "gpu_seg_hf_" + tag;
      const bool named = rows.count(image_row) || rows.count(image_row + "_graph") || rows.count(seg_row) ||
                         rows.count(seg_row + "_graph");
      if (!(named || (cuda && rows.empty() && dtype != torch::kFloat))) continue;
      model.model()->to(dtype);
      auto pixels = torch::randn({gpu_batch, 3, 224, 224}, opts).to(dtype);
      auto text = seg_text.to(dtype);
      auto image_fn = [&](const torch::Tensor& px) -> std::vector<torch::Tensor> {
        return {model.model()->get_image_features(px)};
      };
      auto seg_fn = [&](const torch::Tensor& px) -> std::vector<torch::Tensor> {
        auto vision = model.model()->vision_model(px, false, true);
        return {model.model()->segmentation_logits(vision, text, px.size(2), px.size(3)).argmax(1)};
      };
      const std::vector<std::pair<std::string, groupvit::CudaGraphCache::Fn>> gpu_rows = {{image_row, image_fn},
                                                                                          {seg_row, seg_fn}};
      for (const auto& [row, fn] : gpu_rows) {
        for (const bool graph : {false, true}) {
          const std::string name = row + (graph ? "_graph" : "");
          if (!want_gpu(name)) continue;
          groupvit::CudaGraphCache graphs(fn);
          json r = graph ? time_it([&] { graphs(pixels); }, std::max(warmup, 2), reps, cuda)
                         : time_it([&] { fn(pixels); }, warmup, reps, cuda);
          r["batch"] = gpu_batch;
          r["images_per_s"] = static_cast<double>(gpu_batch) / r["median_s"].get<double>();
          if (graph) {
            r["graphs"] = graphs.graphs();
            r["replays"] = graphs.replays();
            r["fallback_reason"] = graphs.fallback_reason();
          }
          results[name] = r;
        }
      }
      model.model()->to(torch::kFloat);
    }
    if (want("seg_postprocess")) {
      // What segmentation adds after the model: the two windows' forward alone, then the
      // label map's PNG encoding; the share of post-processing is reported against the
      // seg_nvlabs_640x480 row.
      auto image = torch::randn({3, 448, 597}, opts);
      auto windows = torch::stack({image.narrow(2, 0, 448), image.narrow(2, 149, 448)});
      json r = time_it([&] { model.model()->vision_model(windows, false, true); }, warmup, reps, cuda);
      auto labels_map = torch::randint(0, 7, {480, 640}, torch::kByte);
      std::vector<uint8_t> label_bytes(labels_map.data_ptr<uint8_t>(),
                                       labels_map.data_ptr<uint8_t>() + labels_map.numel());
      std::vector<std::array<uint8_t, 3>> palette(7, {10, 20, 30});
      json png = time_it([&] { groupvit::encode_paletted_png(label_bytes, 480, 640, palette); }, 1, reps, false);
      results["seg_postprocess"] = {{"windows_forward_s", r["median_s"]}, {"png_encode_s", png["median_s"]}};
    }
    // Dynamic int8 (--dtype int8): the same rows, and its accuracy against float32 on 16 images.
    // Last, since quantizing releases the float32 weights.
    const bool int8_rows = want("image_int8_b1") || want("image_int8_b8") || want("image_int8_b32") ||
                           want("text_int8_1") || want("text_int8_80") || want("int8_accuracy");
    if (int8_rows && !cuda) {
      const bool accuracy = want("int8_accuracy");
      auto check_pixels = torch::randn({accuracy ? 16 : 1, 3, 224, 224}, opts);
      torch::Tensor fp32_embeds;
      std::vector<torch::Tensor> fp32_assign;
      if (accuracy) {
        fp32_embeds = model.model()->get_image_features(check_pixels);
        fp32_assign = model.model()->vision_model(check_pixels, false, true).attentions;
      }
      const auto t0 = Clock::now();
      model.model()->quantize_linear_int8();
      const double quantize_s = seconds_since(t0);
      image_rows("int8");
      text_rows("int8");
      if (accuracy) {
        auto int8_embeds = model.model()->get_image_features(check_pixels);
        auto int8_assign = model.model()->vision_model(check_pixels, false, true).attentions;
        results["int8_accuracy"] = {
            {"images", 16},
            {"quantize_s", quantize_s},
            {"qengine", at::globalContext().qEngine() == at::QEngine::FBGEMM ? "fbgemm" : "onednn"},
            {"min_cosine", torch::cosine_similarity(int8_embeds, fp32_embeds, 1).min().item<double>()},
            {"assignment_agreement", assignment_agreement(int8_assign, fp32_assign)}};
      }
    }
    out["rows"] = results;
    out["image_flops_per_image"] = flops;
    // The float32 kernel each Linear shape got on this CPU (groupvit/model/layers.h), measured on first use.
    json kernels = json::array();
    for (const auto& c : groupvit::linear_kernel_choices())
      kernels.push_back({{"in", c.key.in_features},
                         {"out", c.key.out_features},
                         {"rows", c.key.rows},
                         {"threads", c.key.threads},
                         {"fused_gelu", c.key.fused_gelu},
                         {"bf16", c.key.bf16},
                         {"mkl_s", c.mkl_s},
                         {"onednn_s", c.onednn_s},
                         {"kernel", c.onednn ? "onednn" : "mkl"}});
    out["linear_kernel_choices"] = kernels;
    // The same for attention (bf16/fp16 shapes; float32 always runs the fused kernel).
    json attention = json::array();
    for (const auto& c : groupvit::attention_kernel_choices())
      attention.push_back({{"batch_heads", c.key.batch_heads},
                           {"queries", c.key.queries},
                           {"keys", c.key.keys},
                           {"head_dim", c.key.head_dim},
                           {"threads", c.key.threads},
                           {"dtype", c10::toString(static_cast<c10::ScalarType>(c.key.dtype))},
                           {"masked", c.key.masked},
                           {"fused_s", c.fused_s},
                           {"matmuls_s", c.matmuls_s},
                           {"kernel", c.matmuls ? "matmuls" : "fused"}});
    out["attention_kernel_choices"] = attention;
  } catch (const std::exception& e) {
    std::cerr << "bench_groupvit: error: " << e.what() << "\n";
    return 1;
  }
  std::cout << out.dump(1) << "\n";
  return 0;
}
