// SIGINT during training: vae_cuda finishes the current step, writes a checkpoint, exits 0, and the
// resumed run ends with exactly the weights of a run that was never interrupted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "vae/checkpoint.hpp"

extern char** environ;

namespace vae {
namespace {

using testing::HasSubstr;
using testing_support::TempDir;

struct Interrupted {
  int exit_code = -1;
  std::string output;
};

// Starts vae_cuda, waits until it prints its model line (the SIGINT handler is installed before
// training starts), lets it train for `delay`, then sends SIGINT and collects everything.
Interrupted run_and_interrupt(const std::vector<std::string>& args, std::chrono::milliseconds delay) {
  int pipe_fds[2];
  EXPECT_EQ(pipe(pipe_fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::vector<char*> argv{const_cast<char*>(VAE_CLI_PATH)};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t child = 0;
  EXPECT_EQ(posix_spawn(&child, VAE_CLI_PATH, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);

  Interrupted result;
  char buffer[4096];
  bool signalled = false;
  ssize_t n = 0;
  while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) {
    result.output.append(buffer, static_cast<size_t>(n));
    if (!signalled && result.output.find("model ") != std::string::npos) {
      std::this_thread::sleep_for(delay);
      kill(child, SIGINT);
      signalled = true;
    }
  }
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST(Interrupt, SigintCheckpointsAndTheResumedRunMatchesAnUninterruptedOne) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 30000, 100);  // a few seconds of training on 2 cores
  const std::string data = dir.path().string();
  const auto straight = dir.path() / "straight", split = dir.path() / "split";
  const std::vector<std::string> common = {"--train", data, "--device", "cpu", "--hidden", "128", "--latent", "8",
                                           "--epochs", "3", "--no-progress"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const auto stopped = run_and_interrupt(with({"--out", split.string()}), std::chrono::milliseconds(200));
  ASSERT_EQ(stopped.exit_code, 0) << stopped.output;
  ASSERT_THAT(stopped.output, HasSubstr("interrupted after step"));
  const Checkpoint saved = read_checkpoint(split / "checkpoint.safetensors");
  EXPECT_GT(saved.state.step, 0);
  // Written with the checkpoint, so the folder's history matches it for the next --resume.
  EXPECT_TRUE(std::filesystem::exists(split / "metrics.csv"));

  const auto resumed = testing_support::run_process(
      VAE_CLI_PATH, "--train " + data + " --device cpu --epochs 3 --no-progress --out " + split.string() +
                        " --resume " + (split / "checkpoint.safetensors").string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto full = testing_support::run_process(
      VAE_CLI_PATH, "--train " + data + " --device cpu --hidden 128 --latent 8 --epochs 3 --no-progress --out " +
                        straight.string());
  ASSERT_EQ(full.exit_code, 0) << full.output;
  EXPECT_EQ(read_checkpoint(split / "checkpoint.safetensors").state.params,
            read_checkpoint(straight / "checkpoint.safetensors").state.params);
  // And the same rows in metrics.csv but for the timings (images_per_s and seconds, the 7th and 8th
  // columns; lr, after them, must match too).
  auto rows = [](const std::filesystem::path& metrics) {
    std::ifstream in(metrics);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> fields;
      std::stringstream fields_in(line);
      for (std::string field; std::getline(fields_in, field, ',');) fields.push_back(field);
      if (fields.size() == 9) fields.erase(fields.begin() + 6, fields.begin() + 8);
      std::string kept;
      for (const std::string& field : fields) kept += field + ",";
      out.push_back(kept);
    }
    return out;
  };
  EXPECT_EQ(rows(split / "metrics.csv"), rows(straight / "metrics.csv"));
  EXPECT_EQ(rows(split / "metrics.csv").size(), 4u);  // the header and 3 epochs
}

}  // namespace
}  // namespace vae
