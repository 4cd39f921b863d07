// The vae_cuda command line as a user meets it: help and version, every kind of bad flag (exit 2
// with usage), a missing data directory (exit 1 naming it), and a tiny end-to-end run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/cli.hpp"
#include "vae/cuda_device.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

using testing::HasSubstr;
using testing_support::run_process;
using testing_support::TempDir;

testing_support::ProcessResult cli(const std::string& args) { return run_process(VAE_CLI_PATH, args); }

TEST(Cli, HelpListsEveryFlagAndExitsZero) {
  const auto r = cli("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--train", "--epochs", "--batch", "--lr", "--hidden", "--latent", "--beta", "--seed",
                           "--device", "--precision", "--weight-decay", "--adamw", "--out", "--version"})
    EXPECT_THAT(r.output, HasSubstr(flag));
}

// OpenMP threads wait passively unless the user says otherwise (libgomp's spinning default collapses
// CPU training on a shared 2-core machine). libgomp shows the spin count it settled on when asked
// (OMP_DISPLAY_ENV): 0 is passive, 30000000000 is OMP_WAIT_POLICY=active's.
TEST(Cli, OpenMpThreadsWaitPassivelyUnlessTheUserChoosesOtherwise) {
  const std::string cli_path = std::string("'") + VAE_CLI_PATH + "'";
  auto r = run_process("/usr/bin/env", "-u OMP_WAIT_POLICY OMP_DISPLAY_ENV=verbose " + cli_path + " --version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("GOMP_SPINCOUNT = '0'"));
  EXPECT_THAT(r.output, HasSubstr("vae_cuda "));
  r = run_process("/usr/bin/env", "OMP_WAIT_POLICY=active OMP_DISPLAY_ENV=verbose " + cli_path + " --version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("GOMP_SPINCOUNT = '30000000000'"));
  EXPECT_THAT(r.output, testing::Not(HasSubstr("GOMP_SPINCOUNT = '0'")));
}

TEST(Cli, VersionPrintsTheVersion) {
  const auto r = cli("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("vae_cuda 0.1.0"));
}

TEST(Cli, BadFlagsAndValuesExitTwoWithUsage) {
  const char* bad[] = {
      "",                                   // --train is required
      "--train d --bogus",                  // unknown flag
      "--train d --epochs abc",             // not a number
      "--train d --epochs 0",               // not positive
      "--train d --batch -4",               // negative
      "--train d --lr 0",                   // zero learning rate
      "--train d --hidden 400,x",           // bad width list
      "--train d --hidden ,",               // empty widths
      "--train d --hidden 400,,200",        // empty entry
      "--train d --hidden 0",               // zero width
      "--train d --latent 0",               // zero latent
      "--train d --beta -1",                // negative beta
      "--train d --device tpu",             // unknown device
      "--train d --seed banana",            // non-numeric seed
      "--train d --precision fp16",         // unknown precision
      "--train d --weight-decay -0.1",      // negative decay
      "--train",                            // missing value
      "--train d --sample c",               // two commands
      "--interpolate c --pair 1,2",         // no --data-dir
      "--interpolate c --data-dir d --pair 1", // one index
      "--interpolate c --data-dir d --pair 1,2,3", // three indices
      "--sample c --pair 1,2",              // --pair without --interpolate
      "--train d --checkpoint-every -1",    // negative interval
  };
  for (const char* args : bad) {
    const auto r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr("vae_cuda: ")) << args;
    EXPECT_THAT(r.output, HasSubstr("Usage")) << args;
  }
}

TEST(Cli, ParsesEveryFlagIntoTheConfig) {
  const char* argv[] = {"vae_cuda", "--train", "dir", "--epochs", "3", "--batch", "64", "--lr", "0.002", "--hidden",
                        "512,256", "--latent", "8", "--beta", "0.5", "--seed", "77", "--device", "cpu", "--out", "o",
                        "--precision", "tf32", "--weight-decay", "0.01", "--adamw"};
  const CommandLine c = parse_command_line(static_cast<int>(std::size(argv)), argv);
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_EQ(c.config.data_dir, "dir");
  EXPECT_EQ(c.config.epochs, 3);
  EXPECT_EQ(c.config.batch, 64);
  EXPECT_DOUBLE_EQ(c.config.adam.lr, 0.002);
  EXPECT_EQ(c.config.model.hidden, (std::vector<int>{512, 256}));
  EXPECT_EQ(c.config.model.latent, 8);
  EXPECT_FLOAT_EQ(c.config.model.beta, 0.5f);
  EXPECT_EQ(c.config.seed, 77u);
  EXPECT_EQ(c.config.device, DeviceChoice::kCpu);
  EXPECT_EQ(c.config.out_dir, "o");
  EXPECT_EQ(c.config.precision, Precision::kTf32);
  EXPECT_DOUBLE_EQ(c.config.adam.weight_decay, 0.01);
  EXPECT_TRUE(c.config.adam.decoupled);
}

TEST(Cli, DefaultsArePyTorchsExample) {
  const char* argv[] = {"vae_cuda", "--train", "dir"};
  const CommandLine c = parse_command_line(3, argv);
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_EQ(c.config.epochs, 10);
  EXPECT_EQ(c.config.batch, 128);
  EXPECT_DOUBLE_EQ(c.config.adam.lr, 1e-3);
  EXPECT_EQ(c.config.model.hidden, std::vector<int>{400});
  EXPECT_EQ(c.config.model.latent, 20);
  EXPECT_FLOAT_EQ(c.config.model.beta, 1.0f);
  EXPECT_EQ(c.config.device, DeviceChoice::kAuto);
  EXPECT_EQ(c.config.precision, Precision::kFp32);
  EXPECT_EQ(c.config.adam.weight_decay, 0.0);
  EXPECT_FALSE(c.config.adam.decoupled);
}

TEST(Cli, MissingDataDirectoryIsAOneLineErrorNamingIt) {
  const auto r = cli("--train /nonexistent/vae-data --device cpu");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("/nonexistent/vae-data"));
  EXPECT_THAT(r.output, HasSubstr("vae_cuda: error: "));
}

TEST(Cli, CudaWithoutAGpuIsAClearError) {
  if (query_cuda_devices().count > 0) GTEST_SKIP() << "this machine has a GPU";
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 8, 4);
  const auto r = cli("--train " + dir.path().string() + " --device cuda");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--device cuda: no CUDA device"));
}

TEST(Cli, AutoWithoutAGpuSaysItUsesTheReferenceBackendInOneLine) {
  if (query_cuda_devices().count > 0) GTEST_SKIP() << "this machine has a GPU";
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 40, 10);
  const auto r = cli("--train " + dir.path().string() + " --epochs 1 --batch 16 --hidden 32 --latent 4 --out " +
                     (dir.path() / "out").string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("device: CPU reference backend (no CUDA device: "));
}

TEST(Cli, TinyRunTrainsAndWritesMetrics) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 50, 20);  // 50 = 3 batches of 16 and a partial one of 2
  const auto out = dir.path() / "out";
  const auto r = cli("--train " + dir.path().string() + " --device cpu --epochs 2 --batch 16 --hidden 32,16 "
                     "--latent 3 --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epoch   1/2"));
  EXPECT_THAT(r.output, HasSubstr("epoch   2/2"));
  EXPECT_THAT(r.output, HasSubstr("test"));
  std::ifstream metrics(out / "metrics.csv");
  ASSERT_TRUE(metrics.good());
  std::string header, line;
  std::getline(metrics, header);
  EXPECT_EQ(header, "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds");
  std::vector<std::string> rows;
  while (std::getline(metrics, line)) rows.push_back(line);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].rfind("1,4,", 0), 0u) << rows[0];  // 4 steps in epoch 1, the partial batch included
  EXPECT_EQ(rows[1].rfind("2,8,", 0), 0u) << rows[1];
  EXPECT_FALSE(std::filesystem::exists(out / "metrics.csv.tmp"));
  EXPECT_TRUE(std::filesystem::exists(out / "checkpoint.safetensors"));
}

// Two epochs straight against one, then --resume for the second: the same weights, bit for bit,
// and metrics.csv keeps the first epoch's row.
TEST(Cli, ResumeContinuesExactly) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 100, 20);
  const std::string common = "--train " + dir.path().string() + " --device cpu --batch 16 --hidden 24 --latent 3 ";
  const auto straight = dir.path() / "straight", split = dir.path() / "split";
  ASSERT_EQ(cli(common + "--epochs 2 --out " + straight.string()).exit_code, 0);
  ASSERT_EQ(cli(common + "--epochs 1 --out " + split.string()).exit_code, 0);
  const auto r = cli("--train " + dir.path().string() + " --device cpu --epochs 2 --out " + split.string() +
                     " --resume " + (split / "checkpoint.safetensors").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resumed: "));
  EXPECT_EQ(read_checkpoint(straight / "checkpoint.safetensors").state.params,
            read_checkpoint(split / "checkpoint.safetensors").state.params);
  std::ifstream metrics(split / "metrics.csv");
  std::string line;
  int rows = 0;
  while (std::getline(metrics, line)) rows += line.rfind("1,", 0) == 0 || line.rfind("2,", 0) == 0;
  EXPECT_EQ(rows, 2);
}

TEST(Cli, ResumeRejectsAFlagThatContradictsTheCheckpoint) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 40, 10);
  const std::string base = "--train " + dir.path().string() + " --device cpu --batch 16 --hidden 24 --latent 3 ";
  ASSERT_EQ(cli(base + "--epochs 1 --out " + dir.path().string()).exit_code, 0);
  const auto r = cli("--train " + dir.path().string() + " --hidden 32 --epochs 2 --out " + dir.path().string() +
                     " --resume " + (dir.path() / "checkpoint.safetensors").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--hidden differs from the checkpoint"));
}

TEST(Cli, BadCheckpointIsAOneLineError) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 40, 10);
  std::ofstream(dir.path() / "junk.safetensors") << "not a checkpoint at all";
  const auto r = cli("--train " + dir.path().string() + " --resume " + (dir.path() / "junk.safetensors").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("junk.safetensors: header length"));
}

// A poisoned checkpoint makes the loss NaN at once: the run stops naming the step, exits 1, and the
// good checkpoint already in --out is not replaced.
TEST(Cli, NonFiniteLossLeavesTheLastCheckpointUntouched) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 40, 10);
  const std::string base = "--train " + dir.path().string() + " --device cpu --batch 16 --hidden 24 --latent 3 ";
  ASSERT_EQ(cli(base + "--epochs 1 --out " + dir.path().string()).exit_code, 0);
  const auto good = dir.path() / "checkpoint.safetensors";
  Checkpoint poisoned = read_checkpoint(good);
  poisoned.state.params[3] = std::numeric_limits<float>::infinity();
  write_checkpoint(dir.path() / "poisoned.safetensors", poisoned);
  auto bytes = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string before = bytes(good);
  const auto r = cli("--train " + dir.path().string() + " --epochs 3 --out " + dir.path().string() + " --resume " +
                     (dir.path() / "poisoned.safetensors").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("non-finite loss at step 4"));  // epoch 1 had 3 steps
  EXPECT_EQ(bytes(good), before);
}

TEST(ParseWidths, AcceptsListsRejectsJunk) {
  EXPECT_EQ(parse_widths("400"), std::vector<int>{400});
  EXPECT_EQ(parse_widths("512,256,128"), (std::vector<int>{512, 256, 128}));
  for (const char* junk : {"", ",", "400,", ",400", "4 00", "-3", "0", "99999999999", "1e3"})
    EXPECT_THROW(parse_widths(junk), UsageError) << junk;
}

}  // namespace
}  // namespace vae
