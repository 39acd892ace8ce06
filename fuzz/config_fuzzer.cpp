// Fuzzes the config.json reader: any text must give a valid config or a ConfigError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "groupvit/formats/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto config = groupvit::GroupViTConfig::from_json_string(std::string(reinterpret_cast<const char*>(data), size));
    // What was accepted round-trips.
    auto again = groupvit::GroupViTConfig::from_json_string(config.to_json_string());
    if (again.to_json_string() != config.to_json_string()) __builtin_trap();
  } catch (const groupvit::ConfigError&) {
  }
  return 0;
}
