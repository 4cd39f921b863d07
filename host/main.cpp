// vae_cuda's entry point: parse, dispatch to training or a checkpoint command, and turn any error
// into one line and an exit code (2 for usage, 1 for everything else).
#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <filesystem>

#include "vae/cli.hpp"
#include "vae/error.hpp"
#include "vae/evaluate_command.hpp"
#include "vae/inspect.hpp"
#include "vae/omp_wait_policy.hpp"
#include "vae/serve_command.hpp"
#include "vae/train_command.hpp"

namespace {

// --out names the PNG itself when it ends in .png, else the folder that receives `default_name`.
// Missing folders are created when the PNG is written.
std::string output_png(const std::string& out, const std::string& default_name) {
  const std::filesystem::path path(out);
  if (path.extension() == ".png") return out;
  return (path / default_name).string();
}

int run_command(const vae::CommandLine& command) {
  if (command.command == vae::Command::kTrain) return vae::run_train(command.config, command.explicit_model_flags);
  if (command.command == vae::Command::kServe) {
    vae::run_serve(command.serve);
    return 0;
  }
  if (command.command == vae::Command::kEvaluate) {
    vae::EvaluateOptions options = command.evaluate;
    options.seed = command.config.seed;
    options.progress = command.config.progress;
    options.out_png = output_png(command.config.out_dir, "latent_traversal.png");
    vae::run_evaluate(options);
    return 0;
  }
  vae::InspectOptions options;
  options.checkpoint = command.checkpoint;
  options.data_dir = command.config.data_dir;
  options.seed = command.config.seed;
  options.pair_i = command.pair_i;
  options.pair_j = command.pair_j;
  options.sampled_ends = command.sampled_ends;
  const std::string& out = command.config.out_dir;
  switch (command.command) {
    case vae::Command::kSample:
      options.out_png = output_png(out, "samples.png");
      vae::run_sample(options);
      break;
    case vae::Command::kInterpolate:
      options.out_png = output_png(out, fmt::format("interpolate_{}_{}.png", command.pair_i, command.pair_j));
      vae::run_interpolate(options);
      break;
    default:
      options.out_png = output_png(out, "latent_map.png");
      vae::run_latent_map(options);
      break;
  }
  fmt::print("wrote {}\n", options.out_png);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  vae::prefer_passive_omp_waits(argv);
  try {
    const vae::CommandLine command = vae::parse_command_line(argc, argv);
    if (command.exit_code) return *command.exit_code;
    return run_command(command);
  } catch (const vae::UsageError& e) {
    std::fflush(stdout);  // keep the report lines before the error in a captured log
    fmt::print(stderr, "vae_cuda: {} (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "vae_cuda: error: {}\n", e.what());
    return 1;
  }
}
