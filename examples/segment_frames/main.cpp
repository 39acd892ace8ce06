// Example consumer: tokenizes the labels once, then segments a batch of video frames that are
// already tensors on the device (here: synthetic frames made on the device), and prints each
// label's share of the pixels per frame. Uses only groupvit::groupvit (no OpenCV).
//
//   segment_frames MODEL_DIR "cat,dog,grass" [--device cuda] [--frames 4]
#include <groupvit/groupvit.h>
#include <torch/torch.h>

#include <iomanip>
#include <iostream>
#include <sstream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: segment_frames MODEL_DIR LABELS [--device cpu|cuda] [--frames N]\n";
    return 2;
  }
  std::string device_name = torch::cuda::is_available() ? "cuda" : "cpu";
  int64_t num_frames = 4;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--device") device_name = argv[i + 1];
    if (std::string(argv[i]) == "--frames") num_frames = std::stoll(argv[i + 1]);
  }
  std::vector<std::string> labels;
  std::stringstream list(argv[2]);
  for (std::string label; std::getline(list, label, ',');)
    if (!label.empty()) labels.push_back(label);

  try {
    const torch::Device device(device_name);
    const auto dtype = device.is_cuda() ? torch::kHalf : torch::kFloat;
    auto model = groupvit::GroupViT::load(argv[1], device, dtype);

    // Once per run: one embedding per label, from a prompt.
    std::vector<std::string> prompts;
    for (const auto& label : labels) prompts.push_back("a photo of a " + label + ".");
    const auto text_embeds = model.encode_texts(prompts);

    // Frames as a decoder on the GPU would hand them over: uint8 [N, H, W, 3] on the device.
    auto y = torch::linspace(0, 255, 360, torch::TensorOptions().device(device)).view({1, 360, 1, 1});
    auto x = torch::linspace(0, 255, 640, torch::TensorOptions().device(device)).view({1, 1, 640, 1});
    auto t = torch::arange(num_frames, torch::TensorOptions().device(device)).view({-1, 1, 1, 1}) * 40;
    auto frames = torch::cat({(x + t).remainder(256).expand({num_frames, 360, 640, 1}),
                              y.expand({num_frames, 360, 640, 1}), (255 - x).expand({num_frames, 360, 640, 1})},
                             3)
                      .to(torch::kByte);

    const auto pixel_values = model.preprocess_frames(frames);                   // [N, 3, 224, 224]
    const auto labels_map = model.segment_hf_labels(pixel_values, text_embeds);  // [N, 224, 224]
    const auto counts = torch::nn::functional::one_hot(labels_map.flatten(1), static_cast<int64_t>(labels.size()))
                            .sum(1)
                            .to(torch::kCPU, torch::kDouble);
    const double pixels = static_cast<double>(labels_map.size(1) * labels_map.size(2));

    std::cout << "groupvit " << GROUPVIT_VERSION << ", device " << device << ", " << num_frames << " frames\n";
    for (int64_t f = 0; f < counts.size(0); ++f) {
      std::cout << "frame " << f << ":";
      for (size_t l = 0; l < labels.size(); ++l)
        std::cout << "  " << labels[l] << " " << std::fixed << std::setprecision(1)
                  << 100.0 * counts[f][static_cast<int64_t>(l)].item<double>() / pixels << "%";
      std::cout << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "segment_frames: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
