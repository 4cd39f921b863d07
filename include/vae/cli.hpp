// The command line of vae_cuda: flags into a TrainConfig, or an immediate exit (help, version,
// usage errors). Kept apart from main() so tests can drive it.
#pragma once

#include <optional>
#include <string>

#include "vae/config.hpp"

namespace vae {

struct CommandLine {
  std::optional<int> exit_code;  // set when the program should stop right away (help, version, bad flags)
  TrainConfig config;
};

// Prints help and version to stdout, errors with usage to stderr.
CommandLine parse_command_line(int argc, const char* const* argv);

// "400" or "512,256" into widths; throws vae::UsageError on anything else.
std::vector<int> parse_widths(const std::string& text);

}  // namespace vae
