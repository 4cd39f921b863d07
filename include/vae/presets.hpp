// Named runs: a preset fills in flags that neither the command line nor --config set, so
// `--preset vae-playground` is the seed series' own model and training and any flag still adjusts it.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace vae {

struct Preset {
  const char* name;
  const char* summary;  // one line for --help and the README
  std::vector<std::pair<const char*, const char*>> flags;  // flag, value as typed ("" for a flag without one)
};

// Every preset, in --help order.
const std::vector<Preset>& presets();

// The preset called name, or nullptr.
const Preset* find_preset(const std::string& name);

}  // namespace vae
