// The vae_cuda command line as a user meets it: help and version, every kind of bad flag (exit 2,
// one line), a missing data directory (exit 1 naming it), and a tiny end-to-end run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "test_support.hpp"
#include "old_checkpoints.hpp"
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
                           "--device", "--precision", "--weight-decay", "--adamw", "--out", "--version",
                           "--resume", "--allow-data-change"})
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

// One line naming the mistake and pointing to --help; the 35-line usage would push it out of view.
TEST(Cli, BadFlagsAndValuesExitTwoWithOneLine) {
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
      "--train ''",                         // empty paths
      "--sample c --out ''",
      "--evaluate c --data-dir d --json ''",
      "--evaluate c --data-dir ''",
  };
  for (const char* args : bad) {
    const auto r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_EQ(r.output.rfind("vae_cuda: ", 0), 0u) << args << "\n" << r.output;
    EXPECT_THAT(r.output, testing::EndsWith(" (see --help)\n")) << args;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
  }
}

TEST(Cli, TrainingFlagsWithACheckpointCommandAreErrorsNotIgnored) {
  // The model and the training settings come from the checkpoint; each flag is refused by name,
  // before the checkpoint is read.
  testing_support::expect_one_line_errors(
      VAE_CLI_PATH, "",
      {
          {"--sample c --epochs 3", 2, "--epochs goes with --train"},
          {"--sample c --device cuda", 2, "--device goes with --train or --evaluate"},
          {"--serve c --device cpu", 2, "--device goes with --train or --evaluate"},
          {"--latent-map c --latent 2", 2, "--latent goes with --train"},
          {"--interpolate c --data-dir d --pair 1,2 --hidden 64", 2, "--hidden goes with --train"},
          {"--evaluate c --data-dir d --precision tf32", 2, "--precision goes with --train"},
          {"--evaluate c --data-dir d --batch-norm", 2, "--batch-norm goes with --train"},
          {"--serve c --preset vae-playground", 2, "--preset goes with --train"},
          {"--serve c --resume r", 2, "--resume goes with --train"},
          {"--sample c --lr-schedule plateau", 2, "--lr-schedule goes with --train"},
      });
  // A --config file's training settings are left alone, so one file serves every command.
  TempDir dir;
  std::ofstream(dir.path() / "run.toml") << "epochs = 3\nlatent = 2\n";
  const auto r = cli("--sample '" + (dir.path() / "absent.safetensors").string() + "' --config '" +
                     (dir.path() / "run.toml").string() + "'");
  EXPECT_EQ(r.exit_code, 1) << r.output;  // the missing checkpoint, not the file's keys
  EXPECT_THAT(r.output, HasSubstr("absent.safetensors"));
}

// The seed model's flags: each bad value is one line naming the flag it is about.
TEST(Cli, SeedModelFlagsBadValuesNameTheFlag) {
  std::string many_layers = "1";
  for (int i = 1; i < 65; ++i) many_layers += ",1";  // 65 hidden layers, one more than allowed
  const std::pair<std::string, const char*> bad[] = {
      {"--train d --activation junk", "--activation"},
      {"--train d --negative-slope -0.1", "--negative-slope"},
      {"--train d --negative-slope 2", "--negative-slope"},
      {"--train d --likelihood junk", "--likelihood"},
      {"--train d --alpha 0", "--alpha"},
      {"--train d --alpha -1", "--alpha"},
      {"--train d --encoder-output -1", "--encoder-output"},
      {"--train d --batch-norm --batch 1", "--batch"},
      {"--train d --hidden " + many_layers, "--hidden"},
      {"--train d --lr-schedule plateau --plateau-factor 0", "--plateau-factor"},
      {"--train d --lr-schedule plateau --plateau-factor 1", "--plateau-factor"},
      {"--train d --lr-schedule plateau --plateau-factor 1.5", "--plateau-factor"},
      {"--train d --lr-schedule plateau --plateau-threshold 1", "--plateau-threshold"},
      {"--train d --lr-schedule junk", "--lr-schedule"},
      {"--train d --interpolate-z sampled", "--interpolate-z"},
      {"--sample c --interpolate-z sampled", "--interpolate-z"},
      {"--interpolate c --data-dir d --pair 1,2 --interpolate-z junk", "--interpolate-z"},
  };
  for (const auto& [args, flag] : bad) {
    const auto r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_EQ(r.output.rfind(std::string("vae_cuda: ") + flag, 0), 0u) << args << "\n" << r.output;
    EXPECT_THAT(r.output, testing::EndsWith(" (see --help)\n")) << args;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
  }
  // At the edges of their ranges the values are taken.
  const char* argv[] = {"vae_cuda", "--train", "d", "--negative-slope", "0", "--encoder-output", "0",
                        "--batch-norm", "--batch", "2", "--plateau-threshold", "0", "--plateau-factor", "0.999"};
  const CommandLine c = parse_command_line(static_cast<int>(std::size(argv)), argv);
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_EQ(c.config.model.negative_slope, 0.0f);
  EXPECT_EQ(c.config.batch, 2);
  EXPECT_EQ(c.config.plateau.factor, 0.999);
}

TEST(Cli, ParsesTheSeedModelFlagsIntoTheConfig) {
  const char* argv[] = {"vae_cuda", "--train", "d", "--activation", "leaky_relu", "--negative-slope", "0.25",
                        "--batch-norm", "--encoder-output", "12", "--likelihood", "gaussian", "--alpha", "8",
                        "--lr-schedule", "plateau", "--plateau-factor", "0.5", "--plateau-patience", "3",
                        "--plateau-threshold", "0.01", "--plateau-cooldown", "2", "--min-lr", "1e-5"};
  const CommandLine c = parse_command_line(static_cast<int>(std::size(argv)), argv);
  ASSERT_FALSE(c.exit_code.has_value());
  EXPECT_EQ(c.config.model.activation, Activation::kLeakyReLU);
  EXPECT_EQ(c.config.model.negative_slope, 0.25f);
  EXPECT_TRUE(c.config.model.batch_norm);
  EXPECT_EQ(c.config.model.encoder_output, 12);
  EXPECT_EQ(c.config.model.likelihood, Likelihood::kGaussian);
  EXPECT_EQ(c.config.model.alpha, 8.0f);
  EXPECT_EQ(c.config.lr_schedule, LrSchedule::kPlateau);
  EXPECT_EQ(c.config.plateau.factor, 0.5);
  EXPECT_EQ(c.config.plateau.patience, 3);
  EXPECT_EQ(c.config.plateau.threshold, 0.01);
  EXPECT_EQ(c.config.plateau.cooldown, 2);
  EXPECT_EQ(c.config.plateau.min_lr, 1e-5);
  const char* interpolate[] = {"vae_cuda", "--interpolate", "c", "--data-dir", "d", "--pair", "3,4",
                               "--interpolate-z", "sampled"};
  EXPECT_TRUE(parse_command_line(9, interpolate).sampled_ends);
  EXPECT_FALSE(parse_command_line(7, interpolate).sampled_ends);  // the means, by default
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
  EXPECT_EQ(header, "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds,lr");
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
// good checkpoint already in --out is not replaced. The reader refuses non-finite weights, so the
// poison is finite: one hidden unit's weights at FLT_MAX overflow its sum to Inf in the first step.
TEST(Cli, NonFiniteLossLeavesTheLastCheckpointUntouched) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 40, 10);
  const std::string base = "--train " + dir.path().string() + " --device cpu --batch 16 --hidden 24 --latent 3 ";
  ASSERT_EQ(cli(base + "--epochs 1 --out " + dir.path().string()).exit_code, 0);
  const auto good = dir.path() / "checkpoint.safetensors";
  Checkpoint poisoned = read_checkpoint(good);
  const NamedTensor fc1 = parameter_tensors(poisoned.config.model).front();
  std::fill_n(poisoned.state.params.begin() + fc1.offset, fc1.shape[1], std::numeric_limits<float>::max());
  write_checkpoint(dir.path() / "poisoned.safetensors", poisoned);
  auto bytes = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string before = bytes(good);
  const auto r = cli("--train " + dir.path().string() + " --epochs 3 --out " + dir.path().string() + " --resume " +
                     (dir.path() / "poisoned.safetensors").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("non-finite loss at step 4 (epoch 2); training stopped; the last checkpoint, " +
                                  good.string() + ", is left as it was\n"));  // epoch 1 had 3 steps
  EXPECT_EQ(bytes(good), before);
}

// ---- resuming on other data, and drawing at the trained shape ----

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A PNG's width and height, from its IHDR chunk (bytes 16..23, big-endian).
std::pair<int, int> png_size(const std::filesystem::path& p) {
  const std::string b = file_bytes(p);
  if (b.size() < 24) return {0, 0};
  auto be32 = [&](size_t at) {
    return static_cast<int>((static_cast<uint32_t>(static_cast<uint8_t>(b[at])) << 24) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(b[at + 1])) << 16) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(b[at + 2])) << 8) |
                            static_cast<uint8_t>(b[at + 3]));
  };
  return {be32(16), be32(20)};
}

// Width and height of a grid of n x m tiles of rows x cols with the 2-pixel padding.
std::pair<int, int> grid_size(int tiles_across, int tiles_down, int rows, int cols) {
  return {tiles_across * cols + (tiles_across + 1) * 2, tiles_down * rows + (tiles_down + 1) * 2};
}

// The same checkpoint as a version-1 file, as builds before the data was recorded wrote it.
void write_version1(const std::filesystem::path& from, const std::filesystem::path& to) {
  const std::string bytes = file_bytes(from);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  testing_support::make_version1_metadata(header["__metadata__"]);
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
  std::ofstream(to, std::ios::binary) << prefix << text << bytes.substr(8 + n);
}

// A tiny data set A (96 training images: 6 batches of 16) and a run of one epoch on it, with its
// checkpoint also moved to batch 3 of epoch 2, as an interrupted run leaves it; and variants of A.
class ResumeOnData : public testing::Test {
 protected:
  void SetUp() override {
    testing_support::write_tiny_mnist(a_, 96, 16);
    const auto r = cli("--train " + a_.string() + " --device cpu --epochs 1 " + kModel + " --out " + run_.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    Checkpoint c = read_checkpoint(boundary_);
    c.position = DataPosition{2, 3, 1234.5, 67.25};
    write_checkpoint(mid_, c);
  }
  // A copy of A with one byte of the training images (or labels) changed.
  std::filesystem::path changed_copy(const std::string& name, const std::string& file, size_t byte) {
    const auto dir = dir_.path() / name;
    std::filesystem::create_directories(dir);
    for (const auto& entry : std::filesystem::directory_iterator(a_))
      std::filesystem::copy_file(entry.path(), dir / entry.path().filename());
    std::string bytes = file_bytes(dir / file);
    bytes[byte] = static_cast<char>(bytes[byte] ^ 1);
    std::ofstream(dir / file, std::ios::binary) << bytes;
    return dir;
  }
  testing_support::ProcessResult resume(const std::filesystem::path& data, const std::filesystem::path& checkpoint,
                                        const std::string& extra = "") {
    return cli("--train " + data.string() + " --device cpu --epochs 2 --out " + (dir_.path() / "resumed").string() +
               " --resume " + checkpoint.string() + " " + extra);
  }
  void expect_refused(const testing_support::ProcessResult& r, const std::filesystem::path& data,
                      const std::filesystem::path& checkpoint, const std::string& difference) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("vae_cuda: error: " + checkpoint.string() + ": was trained on other data than " +
                                    data.string() + " (" + difference));
    EXPECT_THAT(r.output, HasSubstr("--allow-data-change"));
    EXPECT_FALSE(std::filesystem::exists(dir_.path() / "resumed" / "checkpoint.safetensors"));
  }

  static constexpr const char* kModel = "--batch 16 --hidden 24 --latent 3";
  TempDir dir_;
  std::filesystem::path a_ = dir_.path() / "a", run_ = dir_.path() / "run";
  std::filesystem::path boundary_ = run_ / "checkpoint.safetensors", mid_ = dir_.path() / "mid.safetensors";
};

TEST_F(ResumeOnData, FewerImagesIsAnErrorNamingCheckpointDataAndCount) {
  const auto fewer = dir_.path() / "fewer";
  testing_support::write_tiny_mnist(fewer, 64, 16);  // 4 batches: batch 3 would still fit
  expect_refused(resume(fewer, mid_), fewer, mid_, "96 training images recorded, 64 found");
  expect_refused(resume(fewer, boundary_), fewer, boundary_, "96 training images recorded, 64 found");
  const auto tiny = dir_.path() / "tiny";
  testing_support::write_tiny_mnist(tiny, 16, 16);  // 1 batch: batch 3 is past its end
  expect_refused(resume(tiny, mid_), tiny, mid_, "96 training images recorded, 16 found");
}

TEST_F(ResumeOnData, SameCountOtherPixelsIsAnError) {
  const auto other = changed_copy("pixels", "train-images-idx3-ubyte", 16 + 95 * 784 + 783);  // the last pixel
  expect_refused(resume(other, mid_), other, mid_, "the same number of training images but different pixels");
}

TEST_F(ResumeOnData, SameImagesOtherLabelsIsAnError) {
  const auto other = changed_copy("labels", "train-labels-idx1-ubyte", 8 + 50);
  expect_refused(resume(other, mid_), other, mid_, "different training labels");
}

TEST_F(ResumeOnData, SamePixelCountOtherShapeIsAnError) {
  const auto other = dir_.path() / "16x49";
  testing_support::write_tiny_mnist(other, 96, 16, 16, 49);
  expect_refused(resume(other, mid_), other, mid_, "images of 28x28 recorded, 16x49 found");
  const auto r = resume(other, mid_, "--allow-data-change");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(mid_.string() + ": its model was trained on 28x28 images, " + other.string() +
                                  " holds 16x49; --allow-data-change takes other images of the same shape only"));
}

// The override keeps the weights and Adam's state and trains the interrupted epoch afresh on the
// new data: from batch 3 of epoch 2 or from its start, the same bits.
TEST_F(ResumeOnData, AllowDataChangeStartsTheEpochAfresh) {
  const auto fewer = dir_.path() / "fewer";
  testing_support::write_tiny_mnist(fewer, 64, 16, 28, 28, 5);
  const auto r = resume(fewer, mid_, "--allow-data-change");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("data changed since " + mid_.string() + " (96 training images recorded, 64 found)"));
  EXPECT_THAT(r.output, HasSubstr("epoch 2 starts afresh on " + fewer.string()));
  EXPECT_THAT(r.output, HasSubstr("at epoch 2, batch 0 (step 6)"));
  const Checkpoint from_mid = read_checkpoint(dir_.path() / "resumed" / "checkpoint.safetensors");
  EXPECT_EQ(from_mid.state.step, 6 + 4);  // epoch 2 whole: 64 images, 4 batches
  ASSERT_TRUE(from_mid.data.has_value());
  EXPECT_EQ(from_mid.data->count, 64);  // the new checkpoint records the data it now stands on
  const std::string metrics = file_bytes(dir_.path() / "resumed" / "metrics.csv");

  const auto r2 = resume(fewer, boundary_, "--allow-data-change");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_EQ(read_checkpoint(dir_.path() / "resumed" / "checkpoint.safetensors").state.params, from_mid.state.params);
  // Epoch 2's row up to its test loss (the timings differ).
  const auto losses = [](const std::string& csv) {
    const size_t row = csv.find("\n2,");
    size_t end = row;
    for (int field = 0; field < 6 && end != std::string::npos; ++field) end = csv.find(',', end + 1);
    return row == std::string::npos || end == std::string::npos ? std::string() : csv.substr(row, end - row);
  };
  EXPECT_NE(losses(metrics), "");
  EXPECT_EQ(losses(file_bytes(dir_.path() / "resumed" / "metrics.csv")), losses(metrics));
}

TEST_F(ResumeOnData, AllowDataChangeOnTheSameDataResumesExactly) {
  const auto r = resume(a_, mid_, "--allow-data-change");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("at epoch 2, batch 3 (step 6)"));
  EXPECT_THAT(r.output, testing::Not(HasSubstr("afresh")));
}

TEST_F(ResumeOnData, AllowDataChangeWithoutResumeIsAUsageError) {
  const auto r = cli("--train " + a_.string() + " --allow-data-change");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("vae_cuda: --allow-data-change goes with --resume"));
}

// Version-1 checkpoints record no data: they resume with a note, are refused when their position
// cannot exist in the data at hand, and the checkpoint the resumed run writes records its data.
TEST_F(ResumeOnData, VersionOneCheckpointResumesWithANote) {
  const auto old = dir_.path() / "old.safetensors";
  write_version1(boundary_, old);
  ASSERT_FALSE(read_checkpoint(old).data.has_value());
  const auto r = resume(a_, old);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("note: " + old.string() + " is a version-1 checkpoint, which does not record its "
                                  "training data: whether " + a_.string() + " holds it is not checked"));
  const Checkpoint now = read_checkpoint(dir_.path() / "resumed" / "checkpoint.safetensors");
  ASSERT_TRUE(now.data.has_value());
  EXPECT_EQ(now.data->count, 96);
}

TEST_F(ResumeOnData, VersionOneCheckpointPastTheEndOfTheEpochIsAnErrorNamingBoth) {
  const auto old = dir_.path() / "old.safetensors", tiny = dir_.path() / "tiny";
  write_version1(mid_, old);
  testing_support::write_tiny_mnist(tiny, 16, 16);
  auto r = resume(tiny, old);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("vae_cuda: error: " + old.string() + ": stands at batch 3 of epoch 2, past the end "
                                  "of an epoch of 1 batches of the 16 training images in " + tiny.string()));
  r = resume(tiny, old, "--allow-data-change");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epoch 2 starts afresh on " + tiny.string()));
}

TEST_F(ResumeOnData, VersionOneCheckpointsSampleAsSquareImages) {
  const auto old = dir_.path() / "old.safetensors";
  write_version1(boundary_, old);
  const auto png = dir_.path() / "old.png";
  const auto r = cli("--sample " + old.string() + " --out " + png.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(png_size(png), grid_size(8, 8, 28, 28));
}

// A model trained by vae_cuda on non-square images is drawn at that shape by every command.
class TrainedShape : public testing::TestWithParam<std::pair<int, int>> {};

TEST_P(TrainedShape, EveryDrawingCommandUsesIt) {
  const auto [rows, cols] = GetParam();
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 32, 8, rows, cols);
  const auto out = dir.path() / "out";
  const auto trained = cli("--train " + dir.path().string() + " --device cpu --epochs 1 --batch 16 --hidden 16 "
                           "--latent 2 --out " + out.string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_EQ(png_size(out / "samples_epoch_001.png"), grid_size(8, 8, rows, cols));
  EXPECT_EQ(png_size(out / "reconstruction_epoch_001.png"), grid_size(8, 2, rows, cols));
  const std::string checkpoint = (out / "checkpoint.safetensors").string();

  auto r = cli("--sample " + checkpoint + " --out " + (dir.path() / "s.png").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(png_size(dir.path() / "s.png"), grid_size(8, 8, rows, cols));
  r = cli("--latent-map " + checkpoint + " --out " + (dir.path() / "m.png").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(png_size(dir.path() / "m.png"), grid_size(8, 8, rows, cols));
  r = cli("--interpolate " + checkpoint + " --pair 0,1 --data-dir " + dir.path().string() + " --out " +
          (dir.path() / "i.png").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(png_size(dir.path() / "i.png"), grid_size(12, 1, rows, cols));  // 10 steps and the two ends

  // The same model as a version-1 file: 16x49 would pass for 28x28, 20x28 has no square shape.
  const auto old = dir.path() / "old.safetensors";
  write_version1(checkpoint, old);
  r = cli("--sample " + old.string() + " --out " + (dir.path() / "old.png").string());
  if (rows * cols == 784) {
    EXPECT_EQ(r.exit_code, 0) << r.output;
  } else {
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.output, HasSubstr(old.string() + ": a version-1 checkpoint, which does not record its image shape, "
                                    "and a model of 560 pixels has no square image shape to draw"));
  }
}

INSTANTIATE_TEST_SUITE_P(NonSquare, TrainedShape, testing::Values(std::pair{16, 49}, std::pair{20, 28}),
                         [](const auto& info) {
                           return std::to_string(info.param.first) + "x" + std::to_string(info.param.second);
                         });

// Non-finite weights used to be read and drawn as an all-black grid, exit 0.
TEST(Cli, SampleRefusesACheckpointWithNonFiniteWeights) {
  TempDir dir;
  Checkpoint c;
  c.config.model.hidden = {24};
  c.config.model.latent = 3;
  const size_t total = static_cast<size_t>(make_layout(c.config.model).total);
  c.state.params.assign(total, 0.01f);
  c.state.adam_m.assign(total, 0.0f);
  c.state.adam_v.assign(total, 0.0f);
  c.data = DataIdentity{28, 28, 96, 0, 0};
  // The writer refuses NaN too, so a marker value is written and then turned into NaN in the file.
  const float marker = 1234.5f, nan = std::numeric_limits<float>::quiet_NaN();
  c.state.params[parameter_tensors(c.config.model)[6].offset + 40] = marker;
  const auto file = dir.path() / "nan.safetensors", png = dir.path() / "grid.png";
  write_checkpoint(file, c);
  std::string bytes = file_bytes(file);
  const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(&marker), sizeof marker));
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, sizeof nan, reinterpret_cast<const char*>(&nan), sizeof nan);
  std::ofstream(file, std::ios::binary) << bytes;
  const auto r = cli("--sample " + file.string() + " --out " + png.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("nan.safetensors: tensor fc3.weight: value nan at index 40 is not finite"));
  EXPECT_FALSE(std::filesystem::exists(png));
}

// With no checkpoint in --out, the run says so instead of promising one, and names the checkpoint
// it was resumed from.
TEST(Cli, NonFiniteLossWithNoCheckpointInOutSaysSo) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 40, 10);
  const std::string base = "--train " + dir.path().string() + " --device cpu --batch 16 --hidden 24 --latent 3 ";
  ASSERT_EQ(cli(base + "--epochs 1 --out " + dir.path().string()).exit_code, 0);
  Checkpoint poisoned = read_checkpoint(dir.path() / "checkpoint.safetensors");
  // Finite (the reader refuses non-finite weights) but overflowing in the first step.
  const NamedTensor fc1 = parameter_tensors(poisoned.config.model).front();
  std::fill_n(poisoned.state.params.begin() + fc1.offset, fc1.shape[1], std::numeric_limits<float>::max());
  const auto poisoned_file = dir.path() / "poisoned.safetensors";
  write_checkpoint(poisoned_file, poisoned);
  const auto fresh = dir.path() / "fresh";
  const auto r = cli("--train " + dir.path().string() + " --epochs 3 --out " + fresh.string() + " --resume " +
                     poisoned_file.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("non-finite loss at step 4 (epoch 2); training stopped; no checkpoint was written; " +
                                  poisoned_file.string() + " is left as it was\n"));
  EXPECT_THAT(r.output, testing::Not(HasSubstr("the last checkpoint")));
  EXPECT_FALSE(std::filesystem::exists(fresh / "checkpoint.safetensors"));
}

TEST(ParseWidths, AcceptsListsRejectsJunk) {
  EXPECT_EQ(parse_widths("400"), std::vector<int>{400});
  EXPECT_EQ(parse_widths("512,256,128"), (std::vector<int>{512, 256, 128}));
  for (const char* junk : {"", ",", "400,", ",400", "4 00", "-3", "0", "99999999999", "1e3"})
    EXPECT_THROW(parse_widths(junk), UsageError) << junk;
}

}  // namespace
}  // namespace vae
