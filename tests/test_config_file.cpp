// --config FILE as a user meets it: a file gives the very TrainConfig its flags would, the command
// line overrides it, its numbers meet the flags' own checks, every malformed file is one line (exit
// 2) naming the file, the line and the key, and the README's example file reads as it says.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "cli_support.hpp"
#include "vae/cli.hpp"

namespace vae {
namespace {

using testing::HasSubstr;
using testing_support::run_process;
using testing_support::TempDir;

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
  const auto path = dir.path() / name;
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

using testing_support::parse;

void expect_same_config(const CommandLine& a, const CommandLine& b) {
  ASSERT_FALSE(a.exit_code.has_value());
  ASSERT_FALSE(b.exit_code.has_value());
  testing_support::expect_same_train_config(a.config, b.config);
  EXPECT_EQ(a.explicit_model_flags, b.explicit_model_flags);
}

TEST(ConfigFile, GivesTheSameConfigAsTheFlags) {
  TempDir dir;
  const std::string file = write_file(dir, "run.toml",
                                      "# every setting but the command\n"
                                      "epochs = 3\n"
                                      "checkpoint-every = 2\n"
                                      "batch = 64\n"
                                      "lr = 2e-3\n"
                                      "hidden = [512, 256]\n"
                                      "latent = 8\n"
                                      "beta = 0.5\n"
                                      "seed = \"18446744073709551615\"\n"  // above int64: TOML's integers stop there
                                      "device = \"cpu\"\n"
                                      "precision = \"tf32\"\n"
                                      "data = \"device\"\n"
                                      "no-graph = true\n"
                                      "weight-decay = 0.01\n"
                                      "adamw = true\n"
                                      "out = \"o\"\n"
                                      "no-progress = true\n"
                                      "allow-data-change = true\n");
  const auto from_file = parse({"--train", "d", "--resume", "c", "--config", file});
  const auto from_flags =
      parse({"--train", "d", "--resume", "c", "--epochs", "3", "--checkpoint-every", "2", "--batch", "64", "--lr",
             "2e-3", "--hidden", "512,256", "--latent", "8", "--beta", "0.5", "--seed", "18446744073709551615",
             "--device", "cpu", "--precision", "tf32", "--data", "device", "--no-graph", "--weight-decay", "0.01",
             "--adamw", "--out", "o", "--no-progress", "--allow-data-change"});
  expect_same_config(from_file, from_flags);
  EXPECT_EQ(from_file.config.epochs, 3);
  EXPECT_EQ(from_file.config.model.hidden, (std::vector<int>{512, 256}));
  EXPECT_EQ(from_file.config.seed, UINT64_MAX);
  EXPECT_FALSE(from_file.config.cuda_graphs);
  EXPECT_TRUE(from_file.config.adam.decoupled);
}

TEST(ConfigFile, ListsMayBeStringsAndNumbersMayUseTomlUnderscores) {
  TempDir dir;
  const auto a = parse({"--train", "d", "--config", write_file(dir, "a.toml", "hidden = \"392,196,128\"\nepochs = 1_000\n")});
  const auto b = parse({"--train", "d", "--config", write_file(dir, "b.toml", "hidden = [\n  392,\n  196,\n  128,\n]\n")});
  ASSERT_FALSE(a.exit_code.has_value());
  ASSERT_FALSE(b.exit_code.has_value());
  EXPECT_EQ(a.config.model.hidden, (std::vector<int>{392, 196, 128}));
  EXPECT_EQ(b.config.model.hidden, (std::vector<int>{392, 196, 128}));
  EXPECT_EQ(a.config.epochs, 1000);
}

TEST(ConfigFile, FalseLeavesAFlagOff) {
  TempDir dir;
  const auto c = parse({"--train", "d", "--config", write_file(dir, "f.toml", "adamw = false\nno-graph = false\n")});
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_FALSE(c.config.adam.decoupled);
  EXPECT_TRUE(c.config.cuda_graphs);
}

TEST(ConfigFile, TheCommandLineOverridesTheFile) {
  TempDir dir;
  const std::string file = write_file(dir, "o.toml", "epochs = 30\nlr = 0.01\ndevice = \"cpu\"\nhidden = [64]\n");
  for (const auto& args : {std::vector<std::string>{"--train", "d", "--config", file, "--epochs", "5", "--hidden", "32,16"},
                           std::vector<std::string>{"--epochs", "5", "--hidden", "32,16", "--config", file, "--train", "d"}}) {
    const auto c = parse(args);
    ASSERT_FALSE(c.exit_code.has_value());
    EXPECT_EQ(c.config.epochs, 5);
    EXPECT_EQ(c.config.model.hidden, (std::vector<int>{32, 16}));
    EXPECT_EQ(c.config.adam.lr, 0.01);  // the file's, where the command line says nothing
    EXPECT_EQ(c.config.device, DeviceChoice::kCpu);
  }
  // A bad value in the file that the command line overrides is never read.
  const std::string bad = write_file(dir, "bad.toml", "epochs = 0\n");
  const auto c = parse({"--train", "d", "--config", bad, "--epochs", "2"});
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_EQ(c.config.epochs, 2);
}

// vae_cuda's error for `args`, asserting the one-line, exit-2 form.
std::string usage_error(const std::string& args) {
  const auto r = run_process(VAE_CLI_PATH, args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  EXPECT_EQ(r.output.rfind("vae_cuda: ", 0), 0u) << args << "\n" << r.output;
  EXPECT_THAT(r.output, testing::EndsWith(" (see --help)\n")) << args;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
  return r.output;
}

// The file's numbers go through flag_values as text: the file gives the flag's message, followed by
// where in the file the value was written.
TEST(ConfigFile, NumbersMeetTheFlagsOwnChecks) {
  TempDir dir;
  const std::pair<const char*, const char*> cases[] = {
      {"epochs = 1.5", "--epochs 1.5"},
      {"epochs = 0", "--epochs 0"},
      {"epochs = 30.0", "--epochs 30.0"},
      {"batch = -4", "--batch -4"},
      {"seed = 0x10", "--seed 0x10"},
      {"seed = -1", "--seed -1"},
      {"seed = 99999999999999999999", "--seed 99999999999999999999"},  // toml11 would clamp it to int64
      {"lr = inf", "--lr inf"},
      {"lr = nan", "--lr nan"},
      {"lr = 1e999", "--lr 1e999"},
      {"beta = -1.0", "--beta -1.0"},
      {"hidden = [400, 0]", "--hidden 400,0"},
      {"hidden = []", "--hidden ''"},
      {"hidden = \"400,x\"", "--hidden 400,x"},
      {"device = \"tpu\"", "--device tpu"},
      {"weight-decay = 2", "--weight-decay 2"},
  };
  for (const auto& [line, flag] : cases) {
    const std::string file = write_file(dir, "n.toml", std::string("# a comment first\n") + line + "\n");
    const std::string from_flag = usage_error(std::string("--train d ") + flag);
    const std::string from_file = usage_error("--train d --config " + file);
    std::string expected = from_flag;
    expected.insert(expected.rfind(" (see --help)"), " (from " + file + " line 2)");
    EXPECT_EQ(from_file, expected) << line;
  }
}

// The seed model's settings in a file: the flag's own message, then where the file wrote the value.
TEST(ConfigFile, SeedModelKeysMeetTheFlagsOwnChecks) {
  TempDir dir;
  std::string many_layers = "1";
  for (int i = 1; i < 65; ++i) many_layers += ",1";
  const std::pair<std::string, std::string> cases[] = {
      {"activation = \"junk\"", "--activation junk"},
      {"negative-slope = -0.1", "--negative-slope -0.1"},
      {"negative-slope = 2", "--negative-slope 2"},
      {"likelihood = \"junk\"", "--likelihood junk"},
      {"alpha = 0", "--alpha 0"},
      {"alpha = -1", "--alpha -1"},
      {"encoder-output = -1", "--encoder-output -1"},
      {"hidden = \"" + many_layers + "\"", "--hidden " + many_layers},
      {"plateau-factor = 0", "--plateau-factor 0"},
      {"plateau-factor = 1", "--plateau-factor 1"},
      {"plateau-factor = 1.5", "--plateau-factor 1.5"},
      {"plateau-threshold = 1", "--plateau-threshold 1"},
      {"lr-schedule = \"junk\"", "--lr-schedule junk"},
  };
  for (const auto& [line, flag] : cases) {
    const std::string file = write_file(dir, "n.toml", "# a comment first\n" + line + "\n");
    const std::string from_flag = usage_error("--train d " + flag);
    const std::string from_file = usage_error("--train d --config " + file);
    std::string expected = from_flag;
    expected.insert(expected.rfind(" (see --help)"), " (from " + file + " line 2)");
    EXPECT_EQ(from_file, expected) << line;
  }
  // Settings wrong only together: the message names the flag whose value the file gave.
  std::string file = write_file(dir, "bn.toml", "batch-norm = true\nbatch = 1\n");
  std::string out = usage_error("--train d --config " + file);
  EXPECT_THAT(out, HasSubstr("vae_cuda: --batch: "));
  EXPECT_THAT(out, HasSubstr("BatchNorm1d"));
  EXPECT_THAT(out, HasSubstr("(from " + file + " line 2)"));
  file = write_file(dir, "iz.toml", "interpolate-z = \"sampled\"\n");
  out = usage_error("--train d --config " + file);
  EXPECT_THAT(out, HasSubstr("vae_cuda: --interpolate-z"));
  EXPECT_THAT(out, HasSubstr("--interpolate"));
  EXPECT_THAT(out, HasSubstr("(from " + file + " line 1)"));
  file = write_file(dir, "adc.toml", "epochs = 2\nallow-data-change = true\n");
  EXPECT_THAT(usage_error("--train d --config " + file),
              HasSubstr("--allow-data-change goes with --resume (from " + file + " line 2)"));
  // And the good values arrive as the flags give them.
  file = write_file(dir, "ok.toml",
                    "activation = \"leaky_relu\"\nnegative-slope = 0.1\nbatch-norm = true\nencoder-output = 128\n"
                    "likelihood = \"gaussian\"\nalpha = 1024\nlr-schedule = \"plateau\"\nplateau-factor = 0.5\n"
                    "plateau-patience = 2\nplateau-threshold = 0.001\nplateau-cooldown = 1\nmin-lr = 1e-6\n");
  const CommandLine a = parse({"--train", "d", "--config", file});
  const CommandLine b = parse({"--train", "d", "--activation", "leaky_relu", "--negative-slope", "0.1", "--batch-norm",
                               "--encoder-output", "128", "--likelihood", "gaussian", "--alpha", "1024", "--lr-schedule",
                               "plateau", "--plateau-factor", "0.5", "--plateau-patience", "2", "--plateau-threshold",
                               "0.001", "--plateau-cooldown", "1", "--min-lr", "1e-6"});
  expect_same_config(a, b);
  EXPECT_EQ(a.config.model, b.config.model);
  EXPECT_TRUE(a.config.model.batch_norm);
  EXPECT_EQ(a.config.lr_schedule, b.config.lr_schedule);
  EXPECT_EQ(a.config.plateau.factor, b.config.plateau.factor);
  EXPECT_EQ(a.config.plateau.patience, b.config.plateau.patience);
  EXPECT_EQ(a.config.plateau.threshold, b.config.plateau.threshold);
  EXPECT_EQ(a.config.plateau.cooldown, b.config.plateau.cooldown);
  EXPECT_EQ(a.config.plateau.min_lr, b.config.plateau.min_lr);
}

TEST(ConfigFile, MalformedFilesAreOneLineNamingTheFileAndKey) {
  TempDir dir;
  struct Case {
    const char* text;
    const char* key;
    int line;
  };
  const Case cases[] = {
      {"epochs = 3\nepoch = 3\n", "epoch: not a setting", 2},        // unknown key
      {"epochs = 3\n\"--lr\" = 0.1\n", "--lr: not a setting", 2},     // keys have no dashes
      {"adamw = 1\n", "adamw: a flag takes true or false, not an integer", 1},
      {"adamw = \"true\"\n", "adamw: a flag takes true or false, not a string", 1},
      {"epochs = true\n", "epochs: takes a number or a string, not true/false", 1},
      {"epochs = [1, 2]\n", "epochs: takes a number or a string, not an array", 1},
      {"lr = 2024-01-01\n", "lr: takes a number or a string, not a date/time", 1},
      {"hidden = [400, \"a\"]\n", "hidden: the array holds a string", 1},
      {"hidden = [[400]]\n", "hidden: the array holds an array", 1},
      {"epochs = [1, 2\n", "epochs = [1, 2", 2},                       // syntax error: CLI11 would take 1
      {"epochs =\n", "'epochs ='", 1},                                 // syntax error
      {"epochs = 3\nbatch = 4\nepochs = 4\n", "(\"epochs\") already exists", 3},  // a key twice
      {"epochs = 3\n[train]\nlr = 0.1\n", "train: tables, [sections] and dotted keys are not allowed", 2},
      {"model.latent = 2\n", "model: tables, [sections] and dotted keys are not allowed", 1},
      {"lr = {value = 0.1}\n", "lr: tables, [sections] and dotted keys are not allowed", 1},
      {"train = \"data\"\n", "train: --train is not a setting", 1},   // the command stays on the command line
      {"resume = \"c\"\n", "resume: --resume is not a setting", 1},
      {"data-dir = \"d\"\n", "data-dir: --data-dir is not a setting", 1},
      {"pair = \"1,2\"\n", "pair: --pair is not a setting", 1},
      {"config = \"other.toml\"\n", "config: --config is not a setting", 1},
      {"help = true\n", "help: --help is not a setting", 1},
      {"version = true\n", "version: --version is not a setting", 1},
  };
  for (const Case& c : cases) {
    const std::string file = write_file(dir, "bad.toml", c.text);
    const std::string out = usage_error("--train d --config " + file);
    EXPECT_THAT(out, HasSubstr("--config " + file + " line " + std::to_string(c.line) + ": ")) << c.text;
    EXPECT_THAT(out, HasSubstr(c.key)) << c.text;
  }
  // Files that cannot be read: the message names them.
  for (const std::string& path : {(dir.path() / "absent.toml").string(), dir.path().string()})
    EXPECT_THAT(usage_error("--train d --config " + path), HasSubstr("--config " + path + ": cannot read it"));
  const std::string file = write_file(dir, "ok.toml", "epochs = 2\n");
  EXPECT_THAT(usage_error("--train d --config " + file + " --config " + file), HasSubstr("--config"));
}

// The README's example file, taken from the README itself, sets what it says it does.
TEST(ConfigFile, TheReadmeExampleReadsAsWritten) {
  std::ifstream readme(std::string(VAE_SOURCE_DIR) + "/README.md");
  std::string text((std::istreambuf_iterator<char>(readme)), {});
  const size_t begin = text.find("```toml\n");
  ASSERT_NE(begin, std::string::npos);
  const size_t end = text.find("```", begin + 8);
  std::string example;
  std::istringstream lines(text.substr(begin + 8, end - begin - 8));
  for (std::string line; std::getline(lines, line);) example += line.substr(std::min(line.size(), size_t{2})) + "\n";
  TempDir dir;
  const auto from_file = parse({"--train", "d", "--config", write_file(dir, "deep.toml", example), "--epochs", "5"});
  const auto from_flags = parse({"--train", "d", "--epochs", "5", "--batch", "256", "--lr", "2e-3", "--hidden",
                                 "392,196,128", "--latent", "16", "--weight-decay", "0.01", "--adamw", "--device",
                                 "cpu", "--checkpoint-every", "5", "--out", "runs/deep"});
  expect_same_config(from_file, from_flags);
  EXPECT_EQ(from_file.config.epochs, 5);
  EXPECT_EQ(from_file.config.model.hidden, (std::vector<int>{392, 196, 128}));
}

TEST(ConfigFile, HelpShowsTheOption) {
  EXPECT_THAT(run_process(VAE_CLI_PATH, "--help").output, HasSubstr("--config FILE"));
}

}  // namespace
}  // namespace vae
