// --preset vae-playground as a user meets it: it is the seed series' run, every setting stated here
// from the seed's own model and config (not read back from presets.cpp); the command line and --config
// each override it; an unknown name is one line listing the presets; and with --resume its values
// are defaults, not explicit flags that must agree with the checkpoint.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "cli_support.hpp"
#include "vae/cli.hpp"

namespace vae {
namespace {

using testing::HasSubstr;
using testing_support::run_process;
using testing_support::TempDir;

using testing_support::parse;

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
  const auto path = dir.path() / name;
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

// The seed's models/vae.py and config.yaml: encoder Flatten, (Linear, BatchNorm1d, LeakyReLU(0.1)) for
// 392, 196 and 128, then Linear(128, 128); latent 128; decoder mirrored with Tanh; loss 1024 * MSE +
// KL, averaged over the batch; Adam lr 0.005, batch 144, 30 epochs, ReduceLROnPlateau on the
// validation loss with PyTorch's defaults.
TrainConfig seed_run() {
  TrainConfig t;
  t.model.hidden = {392, 196, 128};
  t.model.encoder_output = 128;
  t.model.latent = 128;
  t.model.batch_norm = true;
  t.model.activation = Activation::kLeakyReLU;
  t.model.negative_slope = 0.1f;
  t.model.likelihood = Likelihood::kGaussian;
  t.model.alpha = 1024.0f;
  t.adam.lr = 0.005;
  t.batch = 144;
  t.epochs = 30;
  t.lr_schedule = LrSchedule::kPlateau;
  return t;
}

// Every field, so a preset that also set something unasked for is caught.
using testing_support::expect_same_train_config;

TEST(Preset, VaePlaygroundIsTheSeedsRunExactly) {
  const CommandLine c = parse({"--train", "d", "--preset", "vae-playground"});
  ASSERT_FALSE(c.exit_code.has_value());
  TrainConfig expected = seed_run();
  expected.data_dir = "d";
  expect_same_train_config(c.config, expected);
  // ReduceLROnPlateau with PyTorch's defaults, which the seed does not change.
  EXPECT_EQ(c.config.plateau.factor, 0.1);
  EXPECT_EQ(c.config.plateau.patience, 10);
  EXPECT_EQ(c.config.plateau.threshold, 1e-4);
  EXPECT_EQ(c.config.plateau.cooldown, 0);
  EXPECT_EQ(c.config.plateau.min_lr, 0.0);
}

TEST(Preset, TheCommandLineOverridesItWhereverTheFlagStands) {
  for (const auto& args : {std::vector<std::string>{"--train", "d", "--preset", "vae-playground", "--batch", "64",
                                                     "--hidden", "32,16", "--activation", "relu"},
                           std::vector<std::string>{"--batch", "64", "--hidden", "32,16", "--activation", "relu",
                                                    "--preset", "vae-playground", "--train", "d"}}) {
    const CommandLine c = parse(args);
    ASSERT_FALSE(c.exit_code.has_value());
    TrainConfig expected = seed_run();
    expected.data_dir = "d";
    expected.batch = 64;
    expected.model.hidden = {32, 16};
    expected.model.activation = Activation::kReLU;
    expect_same_train_config(c.config, expected);
  }
}

TEST(Preset, AConfigFileOverridesItAndTheCommandLineOverridesTheFile) {
  TempDir dir;
  const std::string file =
      write_file(dir, "p.toml", "batch = 100\nalpha = 2.5\nlr-schedule = \"constant\"\nbatch-norm = false\n");
  CommandLine c = parse({"--train", "d", "--preset", "vae-playground", "--config", file});
  ASSERT_FALSE(c.exit_code.has_value());
  TrainConfig expected = seed_run();
  expected.data_dir = "d";
  expected.batch = 100;
  expected.model.alpha = 2.5f;
  expected.lr_schedule = LrSchedule::kConstant;
  expected.model.batch_norm = false;
  expect_same_train_config(c.config, expected);

  c = parse({"--train", "d", "--preset", "vae-playground", "--config", file, "--batch", "50", "--alpha", "3"});
  ASSERT_FALSE(c.exit_code.has_value());
  expected.batch = 50;
  expected.model.alpha = 3.0f;
  expect_same_train_config(c.config, expected);

  // The preset itself may come from the file.
  const std::string named = write_file(dir, "named.toml", "preset = \"vae-playground\"\nepochs = 2\n");
  c = parse({"--train", "d", "--config", named});
  ASSERT_FALSE(c.exit_code.has_value());
  expected = seed_run();
  expected.data_dir = "d";
  expected.epochs = 2;
  expect_same_train_config(c.config, expected);
}

TEST(Preset, AnUnknownNameIsOneLineListingThePresets) {
  TempDir dir;
  const std::string file = write_file(dir, "bad.toml", "preset = \"vae-playgrund\"\n");
  for (const std::string& args : {std::string("--train d --preset vae-playgrund"), "--train d --config " + file}) {
    const auto r = run_process(VAE_CLI_PATH, args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_EQ(r.output.rfind("vae_cuda: ", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("vae-playgrund")) << args;
    EXPECT_THAT(r.output, HasSubstr("vae-playground")) << args;  // the known presets, named
  }
}

TEST(Preset, ItsValuesAreNotExplicitFlags) {
  CommandLine c = parse({"--train", "d", "--preset", "vae-playground"});
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_TRUE(c.explicit_model_flags.empty());
  c = parse({"--train", "d", "--preset", "vae-playground", "--alpha", "3"});
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_EQ(c.explicit_model_flags, std::vector<std::string>{"--alpha"});
}

TEST(Preset, HelpNamesIt) {
  const auto r = run_process(VAE_CLI_PATH, "--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("--preset"));
  EXPECT_THAT(r.output, HasSubstr("vae-playground"));
}

// A run trained with the preset's options on a tiny model resumes under --preset: the preset's
// model (392,196,128, batch 144, ...) is not held against the checkpoint's, which is the run's.
TEST(Preset, ResumingUnderThePresetTakesTheCheckpointsModel) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 32, 8);
  const std::string data = dir.path().string(), out = (dir.path() / "out").string();
  const auto first = run_process(VAE_CLI_PATH, "--train " + data + " --device cpu --no-progress --preset vae-playground "
                                               "--hidden 16 --encoder-output 6 --latent 3 --batch 16 --epochs 1 --out " + out);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::string checkpoint = out + "/checkpoint.safetensors";
  const auto resumed = run_process(VAE_CLI_PATH, "--train " + data + " --device cpu --no-progress --preset vae-playground "
                                                 "--epochs 2 --out " + out + " --resume " + checkpoint);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const Checkpoint c = read_checkpoint(checkpoint);
  EXPECT_EQ(c.state.step, 4);  // two epochs of 2 batches of 16
  EXPECT_EQ(c.config.model.hidden, std::vector<int>{16});
  EXPECT_EQ(c.config.model.encoder_output, 6);
  EXPECT_EQ(c.config.batch, 16);
  EXPECT_TRUE(c.config.model.batch_norm);
  EXPECT_EQ(c.config.model.likelihood, Likelihood::kGaussian);
  // An explicit flag that contradicts the checkpoint is still refused.
  const auto contradicted = run_process(VAE_CLI_PATH, "--train " + data + " --device cpu --preset vae-playground "
                                                      "--hidden 392,196,128 --epochs 3 --out " + out + " --resume " + checkpoint);
  EXPECT_EQ(contradicted.exit_code, 2) << contradicted.output;
  EXPECT_THAT(contradicted.output, HasSubstr("--hidden differs from the checkpoint"));
}

}  // namespace
}  // namespace vae
