// vae_cuda's entry point: parse, run, and turn any error into one line and an exit code
// (2 for usage, 1 for everything else).
#include <fmt/format.h>

#include <cstdio>
#include <exception>

#include "vae/cli.hpp"
#include "vae/error.hpp"
#include "vae/train_command.hpp"

int main(int argc, char** argv) {
  try {
    const vae::CommandLine command = vae::parse_command_line(argc, argv);
    if (command.exit_code) return *command.exit_code;
    return vae::run_train(command.config);
  } catch (const vae::UsageError& e) {
    std::fflush(stdout);  // keep the report lines before the error in a captured log
    fmt::print(stderr, "vae_cuda: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "vae_cuda: error: {}\n", e.what());
    return 1;
  }
}
