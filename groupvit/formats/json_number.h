// Internal header (not installed): the one rule for reading integers from JSON numbers, shared by
// the config.json and preprocessor_config.json readers.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>

namespace groupvit {

// A JSON integer, or a float that holds a whole number (Python's json writes 224.0 for a float
// that a config happened to carry) of magnitude below 2^53, where doubles stop holding every
// integer; nullopt for anything else (strings, fractions, NaN, huge values), which the caller
// reports with its own file and key.
inline std::optional<int64_t> json_integer(const nlohmann::json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

}  // namespace groupvit
