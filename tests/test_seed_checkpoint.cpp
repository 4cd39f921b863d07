// Checkpoints of the seed's model options (format 3): a BatchNorm, LeakyReLU, encoder_output,
// Gaussian model with the plateau schedule round-trips every tensor, running statistic, setting and
// the schedule's state; the preset's model is named as the seed's nn.Sequential modules, so PyTorch
// loads the file into the seed's VAE; every malformed BatchNorm tensor or option is a vae::Error naming
// the file and the tensor or key; and version-2 files still read, as the default model.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "model_support.hpp"
#include "old_checkpoints.hpp"
#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/cli.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;
using testing_support::TempDir;

// The seed's options in miniature, every value off its default so a round trip shows it.
ModelConfig seed_like_model() {
  ModelConfig m = testing_support::small_seed_model(3);
  m.input = 12;
  m.hidden = {8, 6};
  m.beta = 0.5f;
  m.negative_slope = 0.2f;
  m.alpha = 16.0f;
  return m;
}

// Random values in every tensor (moments and variances non-negative), the plateau schedule with
// non-default settings, and its state as a fresh schedule has it: best = +inf before the first epoch.
Checkpoint seed_like_checkpoint(uint32_t seed) {
  Checkpoint c;
  c.config.model = seed_like_model();
  c.data = DataIdentity{3, 4, 6144, 0x0123456789abcdefull, 0xfedcba9876543210ull};
  c.config.seed = 99;
  c.config.batch = 48;
  c.config.adam.lr = 3e-4;
  c.config.lr_schedule = LrSchedule::kPlateau;
  c.config.plateau.factor = 0.5;
  c.config.plateau.patience = 0;
  c.config.plateau.threshold = 0.01;
  c.config.plateau.cooldown = 1;
  c.config.plateau.min_lr = 1e-6;
  PlateauState fresh;
  fresh.lr = 3e-4;
  c.plateau = fresh;
  const ParamLayout layout = make_layout(c.config.model);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (auto* buffer : {&c.state.params, &c.state.adam_m, &c.state.adam_v}) {
    buffer->assign(static_cast<size_t>(layout.total), 0.0f);
    for (const NamedTensor& t : parameter_tensors(c.config.model))
      for (int64_t i = 0; i < t.size(); ++i)
        (*buffer)[t.offset + i] = buffer == &c.state.adam_v ? std::abs(normal(rng)) : normal(rng);
  }
  c.state.running_stats.assign(static_cast<size_t>(layout.running_total), 0.0f);
  for (const NamedTensor& t : running_stat_tensors(c.config.model)) {
    const bool variance = t.name.ends_with(".running_var");
    for (int64_t i = 0; i < t.size(); ++i)
      c.state.running_stats[t.offset + i] = variance ? 0.5f + std::abs(normal(rng)) : normal(rng);
  }
  c.state.step = 321;
  c.position = DataPosition{4, 2, 987.25, 12.5};
  return c;
}

TEST(SeedCheckpoint, RoundTripsEveryTensorRunningStatisticSettingAndThePlateauState) {
  TempDir dir;
  const Checkpoint c = seed_like_checkpoint(1);
  ASSERT_TRUE(std::isinf(c.plateau->best) && c.plateau->best > 0);
  write_checkpoint(dir.path() / "c.safetensors", c);
  const Checkpoint r = read_checkpoint(dir.path() / "c.safetensors");
  EXPECT_EQ(r.state.params, c.state.params);
  EXPECT_EQ(r.state.adam_m, c.state.adam_m);
  EXPECT_EQ(r.state.adam_v, c.state.adam_v);
  EXPECT_EQ(r.state.running_stats, c.state.running_stats);
  EXPECT_EQ(r.state.step, 321);
  EXPECT_EQ(r.config.model, c.config.model);  // activation, slope, batch_norm, encoder_output, likelihood, alpha
  EXPECT_EQ(r.config.seed, 99u);
  EXPECT_EQ(r.config.batch, 48);
  EXPECT_EQ(r.config.adam.lr, 3e-4);
  EXPECT_EQ(r.config.lr_schedule, LrSchedule::kPlateau);
  EXPECT_EQ(r.config.plateau.factor, 0.5);
  EXPECT_EQ(r.config.plateau.patience, 0);
  EXPECT_EQ(r.config.plateau.threshold, 0.01);
  EXPECT_EQ(r.config.plateau.cooldown, 1);
  EXPECT_EQ(r.config.plateau.min_lr, 1e-6);
  EXPECT_EQ(r.config.plateau.eps, 1e-8);
  ASSERT_TRUE(r.plateau.has_value());
  EXPECT_EQ(r.plateau->best, std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.plateau->num_bad_epochs, 0);
  EXPECT_EQ(r.plateau->cooldown_counter, 0);
  EXPECT_EQ(r.plateau->last_epoch, 0);
  EXPECT_EQ(r.plateau->lr, 3e-4);
  EXPECT_EQ(r.position.epoch, 4);
  EXPECT_EQ(r.position.batch, 2);
  EXPECT_EQ(r.position.epoch_reconstruction, 987.25);
  EXPECT_EQ(r.position.epoch_kl, 12.5);
  ASSERT_TRUE(r.data.has_value());
  EXPECT_EQ(*r.data, *c.data);

  // A state some epochs in, with values that need all 17 digits.
  Checkpoint later = c;
  later.plateau = PlateauState{0.1 + 0.2, 3, 1, 7, 3e-4 * 0.5 * 0.5};
  write_checkpoint(dir.path() / "c.safetensors", later);
  const Checkpoint r2 = read_checkpoint(dir.path() / "c.safetensors");
  ASSERT_TRUE(r2.plateau.has_value());
  EXPECT_EQ(r2.plateau->best, 0.1 + 0.2);
  EXPECT_EQ(r2.plateau->num_bad_epochs, 3);
  EXPECT_EQ(r2.plateau->cooldown_counter, 1);
  EXPECT_EQ(r2.plateau->last_epoch, 7);
  EXPECT_EQ(r2.plateau->lr, 3e-4 * 0.5 * 0.5);
}

TEST(SeedCheckpoint, AConstantScheduleHasNoPlateauState) {
  TempDir dir;
  Checkpoint c = seed_like_checkpoint(2);
  c.config.lr_schedule = LrSchedule::kConstant;
  c.plateau.reset();
  write_checkpoint(dir.path() / "c.safetensors", c);
  const Checkpoint r = read_checkpoint(dir.path() / "c.safetensors");
  EXPECT_EQ(r.config.lr_schedule, LrSchedule::kConstant);
  EXPECT_FALSE(r.plateau.has_value());
  EXPECT_EQ(r.state.running_stats, c.state.running_stats);
}

// The header of a checkpoint file: tensor name -> (dtype, shape), and the metadata.
nlohmann::json header_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  return nlohmann::json::parse(bytes.substr(8, n));
}

// The seed's VAE, module by module (models/vae.py): the encoder nn.Sequential is Flatten (0), then
// Linear, BatchNorm1d, LeakyReLU for 392, 196 and 128 (1-9), and Linear(128, 128) (10); hidden2mu and
// hidden2log_var are Linear(128, 128); the decoder nn.Sequential is Linear, BatchNorm1d, LeakyReLU for
// 128, 196 and 392 (0-8), Linear(392, 784) (9) and Tanh (10). Its state_dict, by name and shape.
std::map<std::string, std::vector<int64_t>> seed_state_dict() {
  std::map<std::string, std::vector<int64_t>> sd;
  auto linear = [&](const std::string& name, int64_t in, int64_t out) {
    sd[name + ".weight"] = {out, in};
    sd[name + ".bias"] = {out};
  };
  auto batch_norm = [&](const std::string& name, int64_t features) {
    for (const char* part : {".weight", ".bias", ".running_mean", ".running_var"}) sd[name + part] = {features};
    sd[name + ".num_batches_tracked"] = {};
  };
  linear("encoder.1", 784, 392);
  batch_norm("encoder.2", 392);
  linear("encoder.4", 392, 196);
  batch_norm("encoder.5", 196);
  linear("encoder.7", 196, 128);
  batch_norm("encoder.8", 128);
  linear("encoder.10", 128, 128);
  linear("hidden2mu", 128, 128);
  linear("hidden2log_var", 128, 128);
  linear("decoder.0", 128, 128);
  batch_norm("decoder.1", 128);
  linear("decoder.3", 128, 196);
  batch_norm("decoder.4", 196);
  linear("decoder.6", 196, 392);
  batch_norm("decoder.7", 392);
  linear("decoder.9", 392, 784);
  return sd;
}

TEST(SeedCheckpoint, ThePresetsModelIsNamedAsTheSeedsModules) {
  const char* argv[] = {"vae_cuda", "--train", "d", "--preset", "vae-playground"};
  const CommandLine cl = parse_command_line(5, argv);
  ASSERT_FALSE(cl.exit_code.has_value());
  Checkpoint c;
  c.config = cl.config;
  c.data = DataIdentity{28, 28, 60000, 1, 2};
  const ParamLayout layout = make_layout(c.config.model);
  c.state.params.assign(static_cast<size_t>(layout.total), 0.0f);
  c.state.adam_m = c.state.adam_v = c.state.params;
  c.state.running_stats.assign(static_cast<size_t>(layout.running_total), 1.0f);
  c.state.step = 417;  // one epoch of 60000 images in batches of 144
  c.plateau = PlateauState{};
  c.plateau->lr = 0.005;
  TempDir dir;
  write_checkpoint(dir.path() / "seed.safetensors", c);
  const nlohmann::json header = header_of(dir.path() / "seed.safetensors");

  const auto expected = seed_state_dict();
  std::map<std::string, std::vector<int64_t>> model_tensors;  // the file's, less Adam's state
  std::map<std::string, std::string> dtypes;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (name.starts_with("optimizer.")) {
      const std::string param = name.substr(name.find('.', std::string("optimizer.exp_avg").size()) + 1);
      EXPECT_TRUE(expected.count(param) && !param.ends_with("running_mean") && !param.ends_with("running_var") &&
                  !param.ends_with("num_batches_tracked"))
          << name << ": Adam state of no parameter";
      continue;
    }
    model_tensors[name] = entry.at("shape").get<std::vector<int64_t>>();
    dtypes[name] = entry.at("dtype").get<std::string>();
  }
  EXPECT_EQ(model_tensors, expected);
  for (const auto& [name, dtype] : dtypes) EXPECT_EQ(dtype, name.ends_with(".num_batches_tracked") ? "I64" : "F32") << name;
  EXPECT_EQ(header.size(), 1 + expected.size() + 2 * 32);  // metadata, state_dict, exp_avg and exp_avg_sq of 32 parameters

  // num_batches_tracked holds the step count, as PyTorch's BatchNorm1d counts batches.
  const Checkpoint back = read_checkpoint(dir.path() / "seed.safetensors");
  EXPECT_EQ(back.state.step, 417);
  EXPECT_EQ(batch_norm_modules(c.config.model),
            (std::vector<std::string>{"encoder.2", "encoder.5", "encoder.8", "decoder.1", "decoder.4", "decoder.7"}));
}

TEST(SeedCheckpoint, RunningStatisticsOfTheWrongSizeAreNotWritten) {
  TempDir dir;
  const fs::path file = dir.path() / "c.safetensors";
  Checkpoint c = seed_like_checkpoint(3);
  c.state.running_stats.pop_back();
  try {
    write_checkpoint(file, c);
    ADD_FAILURE() << "written";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(file.string()));
    EXPECT_THAT(e.what(), HasSubstr("running statistics"));
  }
  c = seed_like_checkpoint(3);
  c.config.model.batch_norm = false;  // a model without BatchNorm has none to write
  EXPECT_THROW(write_checkpoint(file, c), Error);
  c = seed_like_checkpoint(3);
  c.state.running_stats.clear();
  EXPECT_THROW(write_checkpoint(file, c), Error);
  // Nor values the reader refuses: a negative variance, a NaN mean.
  c = seed_like_checkpoint(3);
  c.state.running_stats[running_stat_tensors(c.config.model)[1].offset] = -1.0f;
  EXPECT_THROW(write_checkpoint(file, c), Error);
  c = seed_like_checkpoint(3);
  c.state.running_stats[running_stat_tensors(c.config.model)[0].offset] = std::nanf("");
  EXPECT_THROW(write_checkpoint(file, c), Error);
  EXPECT_FALSE(fs::exists(file));
}

// A good checkpoint of the seed-like model, then broken one way at a time.
class MalformedSeedCheckpoint : public testing::Test {
 protected:
  void SetUp() override {
    write_checkpoint(file_, seed_like_checkpoint(4));
    std::ifstream in(file_, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    header_ = nlohmann::json::parse(bytes.substr(8, n));
    data_ = bytes.substr(8 + n);
  }
  void write(const nlohmann::json& header, const std::string& data) {
    const std::string text = header.dump();
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
    std::ofstream(file_, std::ios::binary) << out << text << data;
  }
  void write_with(const std::function<void(nlohmann::json&)>& change) {
    nlohmann::json h = header_;
    change(h);
    write(h, data_);
  }
  // The good data with a tensor's element `index` (of the tensor's own type) replaced.
  template <typename T>
  std::string data_with(const std::string& tensor, int64_t index, T value) const {
    std::string data = data_;
    const uint64_t begin = header_.at(tensor).at("data_offsets")[0].get<uint64_t>();
    std::memcpy(data.data() + begin + index * sizeof(T), &value, sizeof(T));
    return data;
  }
  void expect_error(std::initializer_list<std::string> fragments) {
    try {
      read_checkpoint(file_);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(file_.string()));
      for (const std::string& f : fragments) EXPECT_THAT(e.what(), HasSubstr(f));
    }
  }

  TempDir dir_;
  fs::path file_ = dir_.path() / "seed.safetensors";
  nlohmann::json header_;
  std::string data_;
};

TEST_F(MalformedSeedCheckpoint, TheUntouchedFileReads) { EXPECT_NO_THROW(read_checkpoint(file_)); }

TEST_F(MalformedSeedCheckpoint, NumBatchesTrackedMustBeTheStepAsI64) {
  // seed_like_model: encoder Flatten, Linear, BatchNorm1d, LeakyReLU, Linear, BatchNorm1d, ...: the
  // first BatchNorm1d is encoder.2.
  write(header_, data_with<int64_t>("encoder.2.num_batches_tracked", 0, 320));
  expect_error({"tensor encoder.2.num_batches_tracked", "320", "321"});
  write(header_, data_with<int64_t>("decoder.1.num_batches_tracked", 0, -1));
  expect_error({"tensor decoder.1.num_batches_tracked"});
  write_with([](auto& h) { h["encoder.5.num_batches_tracked"]["dtype"] = "F32"; });
  expect_error({"tensor encoder.5.num_batches_tracked", "dtype F32", "I64"});
  write_with([](auto& h) { h["encoder.5.num_batches_tracked"]["shape"] = {1}; });
  expect_error({"tensor encoder.5.num_batches_tracked", "shape [1]"});
  write_with([](auto& h) { h.erase("decoder.4.num_batches_tracked"); });
  expect_error({"tensor decoder.4.num_batches_tracked", "missing"});
}

TEST_F(MalformedSeedCheckpoint, RunningStatisticsMustBeFiniteAndVariancesNonNegative) {
  write(header_, data_with<float>("encoder.5.running_var", 3, -0.5f));
  expect_error({"tensor encoder.5.running_var", "index 3", "negative"});
  write(header_, data_with<float>("decoder.4.running_mean", 2, std::nanf("")));
  expect_error({"tensor decoder.4.running_mean", "index 2", "not finite"});
  write(header_, data_with<float>("encoder.2.running_var", 0, std::numeric_limits<float>::infinity()));
  expect_error({"tensor encoder.2.running_var", "index 0", "not finite"});
  write(header_, data_with<float>("encoder.2.running_var", 0, 0.0f));  // a constant feature's variance
  EXPECT_NO_THROW(read_checkpoint(file_));
  write(header_, data_with<float>("decoder.1.running_mean", 0, -3.0f));  // means may be negative
  EXPECT_NO_THROW(read_checkpoint(file_));
  write_with([](auto& h) { h["encoder.2.running_var"]["shape"] = {7}; });
  expect_error({"tensor encoder.2.running_var", "shape [7]", "[8]"});
  write_with([](auto& h) { h["encoder.2.weight"]["dtype"] = "F64"; });
  expect_error({"tensor encoder.2.weight", "dtype F64"});
}

TEST_F(MalformedSeedCheckpoint, BadOptionStringsNameTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"activation", "tanh"},        {"activation", "RELU"},      {"activation", ""},
      {"likelihood", "poisson"},     {"likelihood", "Gaussian"},  {"lr_schedule", "cosine"},
      {"lr_schedule", ""},           {"batch_norm", "yes"},       {"batch_norm", "2"},
      {"negative_slope", "0.1x"},    {"alpha", "big"},            {"encoder_output", "1.5"},
      {"plateau_best", "low"},       {"plateau_patience", "-"},   {"adamw", "2"},
      {"adamw", "true"},
  };
  for (const auto& [key, value] : cases) {
    write_with([&](auto& h) { h["__metadata__"][key] = value; });
    expect_error({key, value});
  }
  for (const char* key : {"activation", "likelihood", "lr_schedule", "negative_slope", "batch_norm", "encoder_output",
                          "alpha", "plateau_factor", "plateau_best", "plateau_lr"}) {
    write_with([&](auto& h) { h["__metadata__"].erase(key); });
    expect_error({key});
  }
}

TEST_F(MalformedSeedCheckpoint, OptionValuesOutsideTheirRangesNameTheSetting) {
  const std::tuple<const char*, const char*, const char*> cases[] = {
      {"negative_slope", "-0.5", "--negative-slope"},
      {"negative_slope", "2", "--negative-slope"},
      {"alpha", "0", "--alpha"},
      {"encoder_output", "-1", "--encoder-output"},
      {"plateau_factor", "1.5", "--plateau-factor"},
      {"plateau_factor", "0", "--plateau-factor"},
      {"plateau_threshold", "1", "--plateau-threshold"},
      {"plateau_patience", "-1", "--plateau-patience"},
      {"batch", "1", "--batch"},  // BatchNorm1d needs two images a batch
  };
  for (const auto& [key, value, setting] : cases) {
    write_with([&](auto& h) { h["__metadata__"][key] = value; });
    expect_error({setting});
  }
}

TEST_F(MalformedSeedCheckpoint, AnImpossiblePlateauStateNamesTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"plateau_num_bad_epochs", "-1"}, {"plateau_cooldown_counter", "-2"}, {"plateau_last_epoch", "-3"},
      {"plateau_lr", "0"},              {"plateau_lr", "-0.001"},           {"plateau_lr", "inf"},
      {"plateau_best", "nan"},          {"plateau_eps", "-1"},
  };
  for (const auto& [key, value] : cases) {
    write_with([&](auto& h) { h["__metadata__"][key] = value; });
    expect_error({key, value});
  }
  // +inf is best before the first epoch, and any finite number after it.
  for (const char* best : {"inf", "-12.5", "0"}) {
    write_with([&](auto& h) { h["__metadata__"]["plateau_best"] = best; });
    EXPECT_NO_THROW(read_checkpoint(file_)) << best;
  }
}

TEST_F(MalformedSeedCheckpoint, TensorsOfAnotherArchitectureAreNamed) {
  // Without BatchNorm the model has no encoder.2: the file's BatchNorm tensors are not part of it.
  write_with([](auto& h) { h["__metadata__"]["batch_norm"] = "0"; });
  expect_error({"not part of this model"});
  // Without encoder_output the names are the same scheme but one layer fewer: decoder.9 is then missing
  // or extra; the message names a tensor.
  write_with([](auto& h) { h["__metadata__"]["encoder_output"] = "0"; });
  expect_error({"tensor "});
}

// Version-2 files predate the model options: they read as the default model (ReLU, no BatchNorm,
// Bernoulli, constant lr), whatever option keys they hold.
TEST(SeedCheckpoint, VersionTwoFilesReadAsTheDefaultModel) {
  TempDir dir;
  Checkpoint c;
  c.config.model.input = 12;
  c.config.model.hidden = {8, 6};
  c.config.model.latent = 3;
  c.data = DataIdentity{3, 4, 100, 5, 6};
  const ParamLayout layout = make_layout(c.config.model);
  c.state.params.assign(static_cast<size_t>(layout.total), 0.0f);  // padding stays 0, as the reader leaves it
  for (const NamedTensor& t : parameter_tensors(c.config.model)) std::fill_n(c.state.params.begin() + t.offset, t.size(), 0.25f);
  c.state.adam_m.assign(static_cast<size_t>(layout.total), 0.0f);
  c.state.adam_v = c.state.adam_m;
  c.state.step = 9;
  c.position = DataPosition{2, 1, 77.5, 3.25};
  const fs::path file = dir.path() / "v2.safetensors";
  write_checkpoint(file, c);
  nlohmann::json header = header_of(file);
  testing_support::make_version2_metadata(header["__metadata__"]);
  header["__metadata__"]["likelihood"] = "gaussian";  // a stray key a version-2 reader never looked at
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  const std::string text = header.dump();
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
  std::ofstream(file, std::ios::binary) << prefix << text << bytes.substr(8 + n);

  const Checkpoint old = read_checkpoint(file);
  EXPECT_EQ(old.config.model, c.config.model);
  EXPECT_EQ(old.config.model.activation, Activation::kReLU);
  EXPECT_FALSE(old.config.model.batch_norm);
  EXPECT_EQ(old.config.model.likelihood, Likelihood::kBernoulli);
  EXPECT_EQ(old.config.lr_schedule, LrSchedule::kConstant);
  EXPECT_FALSE(old.plateau.has_value());
  EXPECT_TRUE(old.state.running_stats.empty());
  EXPECT_EQ(old.state.params, c.state.params);
  EXPECT_EQ(old.position.epoch_reconstruction, 77.5);  // from epoch_bce, version 2's name
  ASSERT_TRUE(old.data.has_value());
  EXPECT_EQ(*old.data, *c.data);
}

}  // namespace
}  // namespace vae
