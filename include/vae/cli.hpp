// The command line of vae_cuda: flags into a TrainConfig, or an immediate exit (help, version,
// usage errors). Kept apart from main() so tests can drive it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vae/config.hpp"
#include "vae/evaluate_command.hpp"
#include "vae/serve_command.hpp"

namespace vae {

// What the invocation asks for: training, or one of the commands that read a checkpoint.
enum class Command { kTrain, kSample, kInterpolate, kLatentMap, kServe, kEvaluate };

struct CommandLine {
  std::optional<int> exit_code;  // set when the program should stop right away (help, version, bad flags)
  Command command = Command::kTrain;
  TrainConfig config;
  std::string checkpoint;     // the CKPT of --sample, --interpolate, --latent-map
  int pair_i = 0, pair_j = 1;  // --pair I,J for --interpolate
  bool sampled_ends = false;   // --interpolate-z sampled
  ServeOptions serve;          // --serve CKPT... with --host, --port and --data-dir
  EvaluateOptions evaluate;    // --evaluate CKPT with its flags; seed, out and progress come from config
  // The flags that fix the model and the optimiser which were given explicitly: with --resume each must
  // agree with the checkpoint, since the checkpoint's values are the ones used.
  std::vector<std::string> explicit_model_flags;
};

// Prints help and version to stdout, errors with usage to stderr.
CommandLine parse_command_line(int argc, const char* const* argv);

}  // namespace vae
