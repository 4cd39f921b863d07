// The vae_cuda command line as a user meets it: help and version, every kind of bad flag (exit 2
// with usage), a missing data directory (exit 1 naming it), and a tiny end-to-end run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test_support.hpp"
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
  const auto r = cli("--train " + dir.path().string() + " --epochs 1 --batch 16 --hidden 32 --latent 4");
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
}

TEST(ParseWidths, AcceptsListsRejectsJunk) {
  EXPECT_EQ(parse_widths("400"), std::vector<int>{400});
  EXPECT_EQ(parse_widths("512,256,128"), (std::vector<int>{512, 256, 128}));
  for (const char* junk : {"", ",", "400,", ",400", "4 00", "-3", "0", "99999999999", "1e3"})
    EXPECT_THROW(parse_widths(junk), UsageError) << junk;
}

}  // namespace
}  // namespace vae
