// Checkpoints: every tensor and setting round-trips, each malformed file is a clear error naming the
// file (and the tensor), a writer killed mid-write never costs the previous checkpoint, and a resumed
// run, at an epoch boundary or mid-epoch, is bitwise the run that was never stopped.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <tuple>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "test_support.hpp"
#include "old_checkpoints.hpp"
#include "vae/checkpoint.hpp"
#include "vae/error.hpp"
#include "vae/reference_backend.hpp"
#include "vae/trainer.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;
using testing_support::random_split;
using testing_support::TempDir;

// Training data of the model's pixel count: rows x cols as near square as the count allows.
DataIdentity data_for(int input) {
  int rows = static_cast<int>(std::sqrt(static_cast<double>(input)));
  while (input % rows != 0) --rows;
  return DataIdentity{rows, input / rows, 6144, 0x0123456789abcdefull, 0xfedcba9876543210ull};
}

Checkpoint random_checkpoint(const ModelConfig& model, uint32_t seed) {
  Checkpoint c;
  c.data = data_for(model.input);
  c.config.model = model;
  c.config.seed = 1234567890123ull;
  c.config.batch = 64;
  c.config.adam.lr = 3e-4;
  c.config.adam.weight_decay = 0.01;
  c.config.adam.decoupled = true;
  const int64_t total = make_layout(model).total;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (auto* buffer : {&c.state.params, &c.state.adam_m, &c.state.adam_v}) {
    buffer->assign(static_cast<size_t>(total), 0.0f);
    const bool second_moment = buffer == &c.state.adam_v;  // a mean of squares: never negative
    for (const NamedTensor& t : parameter_tensors(model))
      for (int64_t i = 0; i < t.size(); ++i) {
        const float value = normal(rng);
        (*buffer)[t.offset + i] = second_moment ? std::abs(value) : value;
      }
  }
  c.state.step = 4242;
  c.position = DataPosition{3, 17, 12345.678901234567, 0.1};
  return c;
}

TEST(Checkpoint, RoundTripsEveryTensorAndSetting) {
  TempDir dir;
  for (const std::vector<int>& hidden : {std::vector<int>{400}, std::vector<int>{64, 32, 16}}) {
    ModelConfig model;
    model.hidden = hidden;
    model.latent = 5;
    model.beta = 0.25f;
    const Checkpoint c = random_checkpoint(model, 1);
    const fs::path file = dir.path() / "c.safetensors";
    write_checkpoint(file, c);
    EXPECT_FALSE(fs::exists(file.string() + ".tmp"));
    const Checkpoint r = read_checkpoint(file);
    EXPECT_EQ(r.state.params, c.state.params);
    EXPECT_EQ(r.state.adam_m, c.state.adam_m);
    EXPECT_EQ(r.state.adam_v, c.state.adam_v);
    EXPECT_EQ(r.state.step, c.state.step);
    EXPECT_EQ(r.config.model.hidden, hidden);
    EXPECT_EQ(r.config.model.latent, 5);
    EXPECT_EQ(r.config.model.beta, 0.25f);
    EXPECT_EQ(r.config.seed, c.config.seed);
    EXPECT_EQ(r.config.batch, 64);
    EXPECT_EQ(r.config.adam.lr, 3e-4);
    EXPECT_EQ(r.config.adam.weight_decay, 0.01);
    EXPECT_TRUE(r.config.adam.decoupled);
    EXPECT_EQ(r.position.epoch, 3);
    EXPECT_EQ(r.position.batch, 17);
    EXPECT_EQ(r.position.epoch_reconstruction, c.position.epoch_reconstruction);  // doubles survive exactly
    EXPECT_EQ(r.position.epoch_kl, c.position.epoch_kl);
    ASSERT_TRUE(r.data.has_value());
    EXPECT_EQ(*r.data, *c.data);  // 64-bit fingerprints survive exactly
  }
}

TEST(Checkpoint, RoundTripsANonSquareImageShape) {
  TempDir dir;
  ModelConfig model;
  model.input = 16 * 49;
  model.hidden = {8};
  Checkpoint c = random_checkpoint(model, 1);
  c.data = DataIdentity{16, 49, 3, ~0ull, 0};
  write_checkpoint(dir.path() / "c.safetensors", c);
  EXPECT_EQ(read_checkpoint(dir.path() / "c.safetensors").data, c.data);
}

// What the reader refuses is never written, and the checkpoint already there stays as it was.
TEST(CheckpointWrite, NonFiniteValuesOrNegativeSecondMomentsAreNotWritten) {
  TempDir dir;
  const fs::path file = dir.path() / "c.safetensors";
  const Checkpoint good = random_checkpoint(ModelConfig{}, 3);
  write_checkpoint(file, good);
  const NamedTensor fc3 = parameter_tensors(good.config.model)[6];
  for (auto [buffer, value, message] :
       {std::tuple{0, std::numeric_limits<float>::quiet_NaN(), "tensor fc3.weight: value nan at index 2 is not finite"},
        std::tuple{1, std::numeric_limits<float>::infinity(), "optimizer.exp_avg.fc3.weight: value inf at index 2"},
        std::tuple{2, -1.0f, "optimizer.exp_avg_sq.fc3.weight: value -1 at index 2 is negative"}}) {
    Checkpoint bad = random_checkpoint(ModelConfig{}, 4);
    std::vector<float>* buffers[] = {&bad.state.params, &bad.state.adam_m, &bad.state.adam_v};
    (*buffers[buffer])[fc3.offset + 2] = value;
    try {
      write_checkpoint(file, bad);
      ADD_FAILURE() << "no error for " << message;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(file.string()));
      EXPECT_THAT(e.what(), HasSubstr(message));
    }
    EXPECT_EQ(read_checkpoint(file).state.params, good.state.params);
  }
}

TEST(CheckpointWrite, WithoutItsTrainingDataIsAnErrorAndLeavesNothing) {
  TempDir dir;
  Checkpoint c = random_checkpoint(ModelConfig{}, 3);
  c.data.reset();
  const fs::path file = dir.path() / "c.safetensors";
  try {
    write_checkpoint(file, c);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(file.string()));
    EXPECT_THAT(e.what(), HasSubstr("what data it was trained on"));
  }
  EXPECT_FALSE(fs::exists(file));
}

TEST(Checkpoint, DefaultModelUsesPyTorchExampleNames) {
  const std::vector<NamedTensor> tensors = parameter_tensors(ModelConfig{});
  std::vector<std::string> names;
  for (const NamedTensor& t : tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight",
                                             "fc22.bias", "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias"}));
  EXPECT_EQ(tensors[0].shape, (std::vector<int64_t>{400, 784}));  // PyTorch's [out, in]
  EXPECT_EQ(tensors[2].shape, (std::vector<int64_t>{20, 400}));
  // fc22 is the second half of the head: right after fc21's rows.
  EXPECT_EQ(tensors[4].offset, tensors[2].offset + 20 * 400);
  EXPECT_EQ(tensors[5].offset, tensors[3].offset + 20);
}

TEST(Checkpoint, DeeperModelsFollowTheDocumentedScheme) {
  ModelConfig model;
  model.hidden = {32, 16};
  std::vector<std::string> names;
  for (const NamedTensor& t : parameter_tensors(model))
    if (t.name.ends_with(".weight")) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"encoder.0.weight", "encoder.1.weight", "mu.weight", "logvar.weight",
                                             "decoder.0.weight", "decoder.1.weight", "output.weight"}));
}

// Malformed files: a good checkpoint with one defect each.
class MalformedCheckpoint : public testing::Test {
 protected:
  void SetUp() override {
    ModelConfig model;
    model.hidden = {8};
    model.latent = 2;
    model.input = 12;
    write_checkpoint(file_, random_checkpoint(model, 2));
    std::ifstream in(file_, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes_[i]);
    header_ = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + 8 + static_cast<int64_t>(n));
    data_.assign(bytes_.begin() + 8 + static_cast<int64_t>(n), bytes_.end());
  }

  void write_bytes(const std::string& bytes) { std::ofstream(file_, std::ios::binary) << bytes; }
  // Writes a file of this header text (its length prefixed) and data, as given.
  void write_text(const std::string& text, const std::string& data) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
    write_bytes(out + text + data);
  }
  // Rewrites the file with a changed header (and optionally changed data).
  void write_with(const std::function<void(nlohmann::json&)>& change, const std::string& data_suffix = "") {
    nlohmann::json h = header_;
    change(h);
    write_text(h.dump(), data_ + data_suffix);
  }
  // The good header's text with `insert` placed right after `anchor`, which must occur once.
  std::string header_text_with(const std::string& anchor, const std::string& insert) const {
    std::string text = header_.dump();
    const size_t at = text.find(anchor);
    EXPECT_NE(at, std::string::npos) << anchor;
    EXPECT_EQ(text.find(anchor, at + 1), std::string::npos) << anchor;
    return text.insert(at + anchor.size(), insert);
  }
  // The good data with one float of a tensor (by its checkpoint name and flat index) replaced.
  std::string data_with(const std::string& tensor, int64_t index, float value) const {
    std::string data = data_;
    const uint64_t begin = header_.at(tensor).at("data_offsets")[0].get<uint64_t>();
    std::memcpy(data.data() + begin + index * sizeof(float), &value, sizeof(float));
    return data;
  }
  void expect_error(std::initializer_list<const char*> fragments) {
    try {
      read_checkpoint(file_);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(file_.string()));
      for (const char* f : fragments) EXPECT_THAT(e.what(), HasSubstr(f));
    }
  }

  TempDir dir_;
  fs::path file_ = dir_.path() / "bad.safetensors";
  std::string bytes_, data_;
  nlohmann::json header_;
};

TEST_F(MalformedCheckpoint, TheUntouchedFileReads) { EXPECT_NO_THROW(read_checkpoint(file_)); }

TEST_F(MalformedCheckpoint, ShortFilesAndImpossibleHeaderLengths) {
  write_bytes("");
  expect_error({"too short"});
  write_bytes("abc");
  expect_error({"too short"});
  write_bytes(std::string(8, '\0') + "{}");
  expect_error({"header length 0"});
  std::string huge = bytes_;
  huge[7] = 0x10;  // ~1e18 bytes
  write_bytes(huge);
  expect_error({"header length"});
  std::string longer = bytes_;
  longer[0] = static_cast<char>(static_cast<uint8_t>(longer[0]) + 1);
  longer.resize(8 + header_.dump().size());  // header now claims one byte past the file's end
  write_bytes(longer);
  expect_error({"header length"});
}

TEST_F(MalformedCheckpoint, HeaderThatIsNotJsonOrNotAnObject) {
  write_bytes(std::string("\x05\0\0\0\0\0\0\0", 8) + "{oops");
  expect_error({"not valid JSON"});
  write_bytes(std::string("\x02\0\0\0\0\0\0\0", 8) + "[]");
  expect_error({"not a JSON object"});
}

TEST_F(MalformedCheckpoint, MetadataProblems) {
  write_with([](auto& h) { h.erase("__metadata__"); });
  expect_error({"no __metadata__"});
  write_with([](auto& h) { h["__metadata__"]["format"] = "other"; });
  expect_error({"not a vae_cuda checkpoint"});
  write_with([](auto& h) { h["__metadata__"]["format_version"] = "99"; });
  expect_error({"format version 99", "reads versions 1 to 3"});
  write_with([](auto& h) { h["__metadata__"]["format_version"] = "0"; });
  expect_error({"format version 0"});
  write_with([](auto& h) { h["__metadata__"].erase("latent"); });
  expect_error({"no \"latent\""});
  write_with([](auto& h) { h["__metadata__"]["seed"] = 5; });
  expect_error({"\"seed\" is not a string"});
  write_with([](auto& h) { h["__metadata__"]["step"] = "12x"; });
  expect_error({"\"step\"", "not a number"});
  write_with([](auto& h) { h["__metadata__"]["hidden"] = "8,0"; });
  expect_error({"hidden"});
  write_with([](auto& h) { h["__metadata__"]["batch"] = "0"; });
  expect_error({"config is invalid", "--batch"});
  // A small file whose metadata declares a huge model: refused before any buffer is sized from it
  // (found by the checkpoint fuzzer as a 550 GB allocation).
  write_with([](auto& h) {
    h["__metadata__"]["input"] = "1048576";
    h["__metadata__"]["image_rows"] = "1024";
    h["__metadata__"]["image_cols"] = "1024";
    h["__metadata__"]["hidden"] = "65536";
  });
  expect_error({"tensor fc1.weight has shape [8, 12]; the model in __metadata__ needs [65536, 1048576]"});
}

TEST_F(MalformedCheckpoint, TrainingDataProblems) {
  for (const char* key : {"image_rows", "image_cols", "train_count", "train_images_xxh3", "train_labels_xxh3"}) {
    write_with([&](auto& h) { h["__metadata__"].erase(key); });
    expect_error({(std::string("no \"") + key + "\"").c_str()});
  }
  // The model reads 12 pixels, recorded as 3x4.
  write_with([](auto& h) { h["__metadata__"]["image_rows"] = "4"; });
  expect_error({"image_rows x image_cols = 4x4", "model's 12 input pixels"});
  write_with([](auto& h) {
    h["__metadata__"]["image_rows"] = "-3";
    h["__metadata__"]["image_cols"] = "-4";
  });
  expect_error({"-3x-4"});
  write_with([](auto& h) { h["__metadata__"]["image_cols"] = "4x"; });
  expect_error({"\"image_cols\"", "not a number"});
  write_with([](auto& h) { h["__metadata__"]["train_count"] = "0"; });
  expect_error({"train_count 0"});
  write_with([](auto& h) { h["__metadata__"]["train_count"] = "-5"; });
  expect_error({"train_count -5"});
  for (const char* bad : {"", "123", "0123456789abcdeg", "0123456789abcdef0", "-123456789abcdef", "0x23456789abcdef"}) {
    write_with([&](auto& h) { h["__metadata__"]["train_images_xxh3"] = bad; });
    expect_error({"\"train_images_xxh3\"", "not 16 hex digits"});
  }
  write_with([](auto& h) { h["__metadata__"]["train_labels_xxh3"] = 7; });
  expect_error({"\"train_labels_xxh3\" is not a string"});
}

// Version-1 files, written before the training data was recorded, read without it, whatever
// stray keys they hold.
TEST_F(MalformedCheckpoint, VersionOneReadsWithoutTrainingData) {
  write_with([](auto& h) { testing_support::make_version1_metadata(h["__metadata__"]); });
  const Checkpoint old = read_checkpoint(file_);
  EXPECT_FALSE(old.data.has_value());
  EXPECT_EQ(old.config.model.input, 12);
  EXPECT_EQ(old.position.batch, 17);
  write_with([](auto& h) {
    testing_support::make_version1_metadata(h["__metadata__"]);
    h["__metadata__"]["image_rows"] = "junk";
  });
  EXPECT_FALSE(read_checkpoint(file_).data.has_value());
}

TEST_F(MalformedCheckpoint, TensorProblemsNameTheTensor) {
  write_with([](auto& h) { h["fc1.weight"]["dtype"] = "F16"; });
  expect_error({"tensor fc1.weight has dtype F16; vae_cuda reads F32"});
  write_with([](auto& h) { h["fc1.weight"]["dtype"] = 32; });
  expect_error({"tensor fc1.weight: dtype is missing or not a string"});
  write_with([](auto& h) { h["fc21.bias"]["shape"] = {3}; });
  expect_error({"tensor fc21.bias", "shape [3]"});
  write_with([](auto& h) { h["fc21.bias"]["shape"] = {-2}; });
  expect_error({"tensor fc21.bias", "shape"});
  write_with([](auto& h) { h.erase("optimizer.exp_avg_sq.fc4.bias"); });
  expect_error({"tensor optimizer.exp_avg_sq.fc4.bias", "missing"});
  write_with([](auto& h) { h["extra.weight"] = h["fc1.bias"]; });
  expect_error({"tensor extra.weight", "not part of this model"});
  write_with([](auto& h) { h["fc3.bias"]["data_offsets"] = {0}; });
  expect_error({"tensor fc3.bias", "data_offsets"});
  write_with([](auto& h) { h["fc3.bias"]["data_offsets"] = {"a", "b"}; });
  expect_error({"tensor fc3.bias", "data_offsets"});
  write_with([&](auto& h) {
    const uint64_t end = data_.size();
    h["fc4.bias"]["data_offsets"] = {end, end + 48};
  });
  expect_error({"tensor fc4.bias", "reach past the end"});
  write_with([](auto& h) { h["fc3.bias"]["data_offsets"] = {8, 4}; });
  expect_error({"tensor fc3.bias", "run backwards"});
  write_with([](auto& h) {  // same size, but on top of fc1.weight's bytes
    h["fc1.bias"]["data_offsets"] = {0, h["fc1.bias"]["data_offsets"][1].template get<uint64_t>() -
                                            h["fc1.bias"]["data_offsets"][0].template get<uint64_t>()};
  });
  expect_error({"fc1.bias", "fc1.weight", "data_offsets overlap"});
  // The last tensor moved 4 bytes on, over 4 extra bytes: the data has a hole the format forbids.
  write_with(
      [](auto& h) {
        auto& offsets = h["optimizer.exp_avg_sq.fc4.bias"]["data_offsets"];
        offsets = {offsets[0].template get<uint64_t>() + 4, offsets[1].template get<uint64_t>() + 4};
      },
      "pad!");
  expect_error({"belong to no tensor", "no holes"});
}

TEST_F(MalformedCheckpoint, TruncatedOrPaddedData) {
  write_bytes(bytes_.substr(0, bytes_.size() - 4));
  expect_error({"tensor optimizer.exp_avg_sq.fc4.bias", "reach past the end", "truncated"});
  write_with([](auto&) {}, "trailing");
  expect_error({"file size"});
}

// safetensors forbids a key twice; a JSON parser keeps the last one, so without this check a second
// __metadata__ would silently set the run's learning rate and seed.
TEST_F(MalformedCheckpoint, RepeatedKeysAnywhereAreAnError) {
  const std::string good = header_.dump();
  const std::string open = good.substr(0, good.size() - 1);  // without the closing brace
  nlohmann::json other_metadata = header_["__metadata__"];
  other_metadata["lr"] = "0.5";
  other_metadata["seed"] = "99";
  write_text(open + ",\"__metadata__\":" + other_metadata.dump() + "}", data_);
  expect_error({"header repeats the key __metadata__: safetensors forbids duplicate keys"});
  write_text(open + ",\"fc1.bias\":" + header_["fc1.bias"].dump() + "}", data_);
  expect_error({"header repeats the key fc1.bias:"});
  write_text(header_text_with("\"__metadata__\":{", "\"lr\":\"0.5\","), data_);
  expect_error({"header repeats the key lr in __metadata__:"});
  write_text(header_text_with("\"fc3.bias\":{", "\"dtype\":\"F16\","), data_);
  expect_error({"header repeats the key dtype in fc3.bias:"});
  // Deeper, and the objects around it go on being checked after it closes.
  write_text(header_text_with("\"fc3.bias\":{", "\"extra\":{\"k\":1,\"k\":2},"), data_);
  expect_error({"header repeats the key k in fc3.bias > extra:"});
  write_text(header_text_with("\"fc3.bias\":{", "\"extra\":{\"k\":1,\"dtype\":2},"), data_);
  EXPECT_NO_THROW(read_checkpoint(file_));  // the same key in two objects is no repeat
}

// A valid safetensors file of another dtype has other data sizes too; the dtype is the cause to name.
TEST_F(MalformedCheckpoint, OtherDtypesAreNamedBeforeAnySize) {
  for (const auto& [dtype, bytes] : {std::pair<const char*, int>{"F16", 2}, {"BF16", 2}, {"F64", 8}}) {
    nlohmann::json h = header_;
    for (auto& [name, entry] : h.items()) {
      if (name == "__metadata__") continue;
      entry["dtype"] = dtype;
      for (auto& offset : entry["data_offsets"]) offset = offset.get<uint64_t>() / sizeof(float) * bytes;
    }
    write_text(h.dump(), std::string(data_.size() / sizeof(float) * bytes, '\0'));
    expect_error({fmt::format("tensor fc1.weight has dtype {}; vae_cuda reads F32", dtype).c_str()});
  }
}

// Metadata declaring another model than the tensors hold: the shape is named, not the data size.
TEST_F(MalformedCheckpoint, ShapesAreCheckedBeforeSizes) {
  write_with([](auto& h) { h["__metadata__"]["latent"] = "3"; });
  expect_error({"tensor fc21.weight has shape [2, 8]; the model in __metadata__ needs [3, 8]"});
}

TEST_F(MalformedCheckpoint, NonFiniteValuesAndNegativeSecondMomentsNameTensorAndIndex) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::string header = header_.dump();
  write_text(header, data_with("fc1.weight", 5, nan));
  expect_error({"tensor fc1.weight: value nan at index 5 is not finite"});
  write_text(header, data_with("fc4.bias", 11, inf));
  expect_error({"tensor fc4.bias: value inf at index 11 is not finite"});
  write_text(header, data_with("optimizer.exp_avg.fc3.weight", 7, -inf));
  expect_error({"tensor optimizer.exp_avg.fc3.weight: value -inf at index 7 is not finite"});
  write_text(header, data_with("optimizer.exp_avg_sq.fc22.weight", 3, nan));
  expect_error({"tensor optimizer.exp_avg_sq.fc22.weight: value nan at index 3 is not finite"});
  write_text(header, data_with("optimizer.exp_avg_sq.fc21.bias", 1, -0.5f));
  expect_error({"tensor optimizer.exp_avg_sq.fc21.bias: value -0.5 at index 1 is negative"});
  // The first bad index is the one named.
  data_ = data_with("fc3.weight", 9, nan);
  write_text(header, data_with("fc3.weight", 4, -inf));
  expect_error({"tensor fc3.weight: value -inf at index 4 is not finite"});
}

TEST_F(MalformedCheckpoint, SecondMomentsMayBeZeroOrTiny) {
  data_ = data_with("optimizer.exp_avg_sq.fc1.bias", 0, -0.0f);
  data_ = data_with("optimizer.exp_avg_sq.fc1.bias", 1, 0.0f);
  data_ = data_with("optimizer.exp_avg_sq.fc1.bias", 2, std::numeric_limits<float>::denorm_min());
  write_text(header_.dump(), data_);
  EXPECT_NO_THROW(read_checkpoint(file_));
}

// The header is one JSON object, padded at the end with spaces (0x20) and nothing else.
TEST_F(MalformedCheckpoint, HeaderIsItsObjectThenOnlySpaces) {
  const std::string header = header_.dump();
  write_text(header + "       ", data_);
  EXPECT_NO_THROW(read_checkpoint(file_));
  write_text(header + "\n", data_);
  expect_error(
      {fmt::format("header byte {} after its JSON object is 0x0a; only spaces (0x20) may pad", header.size()).c_str()});
  write_text(header + " \t ", data_);
  expect_error({"is 0x09; only spaces"});
  write_text(header + std::string("\0\0\0", 3), data_);
  expect_error({fmt::format("header byte {} is NUL", header.size()).c_str()});
  write_text(header + std::string(" \0{\"lr\":\"0.5\"}", 14), data_);  // a NUL would end nlohmann's input
  expect_error({"is NUL"});
  write_text(header + "junk", data_);
  expect_error({"header has more after its JSON object", "only spaces may follow it"});
  write_text(header + "{}", data_);
  expect_error({"header has more after its JSON object"});
  write_text(" " + header, data_);
  expect_error({"not a JSON object", "starts with '{'"});
  write_with([](auto& h) { h["__metadata__"] = "lr=1"; });
  expect_error({"__metadata__ is not a JSON object"});
  write_with([](auto& h) { h["__metadata__"]["note"] = 1; });  // a key vae_cuda does not read: still the format's rule
  expect_error({"__metadata__ \"note\" is not a string"});
}

// Missing folders are created; a file where a folder must go is an error that leaves nothing.
TEST(CheckpointWrite, CreatesMissingFoldersAndAFileInTheWayLeavesNothing) {
  TempDir dir;
  const fs::path file = dir.path() / "missing" / "c.safetensors";
  write_checkpoint(file, random_checkpoint(ModelConfig{}, 3));
  EXPECT_TRUE(fs::is_regular_file(file));
  std::ofstream(dir.path() / "plain_file") << "not a folder";
  const fs::path blocked = dir.path() / "plain_file" / "c.safetensors";
  EXPECT_THROW(write_checkpoint(blocked, random_checkpoint(ModelConfig{}, 3)), Error);
  EXPECT_FALSE(fs::exists(blocked));
}

// A child rewrites a large checkpoint in a loop and is killed with SIGKILL at varying moments; the
// file must always read as one of the complete checkpoints.
TEST(CheckpointWrite, KillNineMidWriteLeavesALoadableCheckpoint) {
  TempDir dir;
  const fs::path file = dir.path() / "c.safetensors";
  ModelConfig big;
  big.hidden = {1500};  // about 28 MB per file: writes take long enough to be interrupted
  const Checkpoint first = random_checkpoint(big, 4), second = random_checkpoint(big, 5);
  write_checkpoint(file, first);
  for (int delay_ms : {1, 7, 20, 45, 90}) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      for (;;) write_checkpoint(file, second);
    }
    usleep(static_cast<useconds_t>(delay_ms) * 1000);
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    const Checkpoint now = read_checkpoint(file);
    EXPECT_TRUE(now.state.params == first.state.params || now.state.params == second.state.params) << delay_ms;
  }
}

// ---- exact resume on the reference backend ---------------------------------------------------

class Resume : public testing::TestWithParam<DataPlacement> {
 protected:
  TrainConfig config() const {
    TrainConfig c;
    c.batch = 16;
    c.model.hidden = {20};
    c.model.latent = 3;
    c.data = GetParam();
    return c;
  }
  std::unique_ptr<Trainer> trainer() {
    const TrainConfig c = config();
    return std::make_unique<Trainer>(c, train_, test_, std::make_unique<ReferenceBackend>(c));
  }
  // Through a file, as a real resume goes.
  Checkpoint save_and_load(Trainer& t) {
    write_checkpoint(dir_.path() / "c.safetensors", t.checkpoint());
    return read_checkpoint(dir_.path() / "c.safetensors");
  }

  TempDir dir_;
  MnistSplit train_ = random_split(150, 1), test_ = random_split(40, 2);  // 10 batches, the last of 6
};

TEST_P(Resume, OneEpochPlusResumePlusOneEqualsTwoStraight) {
  auto straight = trainer();
  straight->train_epoch();
  const EpochStats second = straight->train_epoch();

  auto first_half = trainer();
  first_half->train_epoch();
  const Checkpoint saved = save_and_load(*first_half);
  EXPECT_EQ(saved.position.epoch, 2);
  EXPECT_EQ(saved.position.batch, 0);
  auto resumed = trainer();
  resumed->resume(saved);
  const EpochStats again = resumed->train_epoch();
  EXPECT_EQ(resumed->backend().parameters(), straight->backend().parameters());
  EXPECT_EQ(again.train_loss, second.train_loss);
  EXPECT_EQ(again.test_loss, second.test_loss);
  EXPECT_EQ(again.step, second.step);
}

TEST_P(Resume, InterruptedMidEpochResumesExactly) {
  auto straight = trainer();
  straight->train_epoch();
  const EpochStats second = straight->train_epoch();

  auto stopped = trainer();
  stopped->train_epoch();
  int steps = 0;
  stopped->set_stop_request([&] { return ++steps == 4; });
  const EpochStats part = stopped->train_epoch();
  ASSERT_TRUE(part.interrupted);
  EXPECT_THROW(stopped->train_epoch(), Error);
  const Checkpoint saved = save_and_load(*stopped);
  EXPECT_EQ(saved.position.epoch, 2);
  EXPECT_EQ(saved.position.batch, 4);

  auto resumed = trainer();
  resumed->resume(saved);
  const EpochStats rest = resumed->train_epoch();
  EXPECT_FALSE(rest.interrupted);
  EXPECT_EQ(resumed->backend().parameters(), straight->backend().parameters());
  EXPECT_EQ(rest.train_loss, second.train_loss);  // the epoch's sums carried across the stop
  EXPECT_EQ(rest.test_loss, second.test_loss);
}

TEST_P(Resume, NonFiniteLossStopsTheEpochNamingTheStep) {
  auto t = trainer();
  t->train_epoch();
  Checkpoint poisoned = t->checkpoint();
  poisoned.state.params[0] = std::nanf("");
  auto resumed = trainer();
  resumed->resume(poisoned);
  try {
    resumed->train_epoch();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("non-finite loss at step 11"));  // the first step after the 10 of epoch 1
  }
}

TEST_P(Resume, CheckpointRecordsTheTrainingData) {
  auto t = trainer();
  t->train_epoch();
  const Checkpoint saved = save_and_load(*t);
  ASSERT_TRUE(saved.data.has_value());
  EXPECT_EQ(*saved.data, identify_training_data(train_));
  EXPECT_EQ(saved.data->count, 150);
}

// The trainer itself refuses a position inside an epoch of other data, whatever its caller checked;
// at an epoch's start (where --allow-data-change puts it) other data is the caller's decision.
TEST_P(Resume, MidEpochPositionOnOtherDataIsRefused) {
  auto stopped = trainer();
  stopped->train_epoch();
  int steps = 0;
  stopped->set_stop_request([&] { return ++steps == 4; });
  ASSERT_TRUE(stopped->train_epoch().interrupted);
  Checkpoint saved = save_and_load(*stopped);

  const TrainConfig c = config();
  const MnistSplit other = random_split(150, 7);  // same count and shape, other pixels
  Trainer on_other(c, other, test_, std::make_unique<ReferenceBackend>(c));
  try {
    on_other.resume(saved);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("batch 4 of epoch 2 of other training data"));
    EXPECT_THAT(e.what(), HasSubstr("different pixels"));
  }
  saved.position = DataPosition{2, 0, 0, 0};
  EXPECT_NO_THROW(on_other.resume(saved));
  EXPECT_FALSE(on_other.train_epoch().interrupted);
}

TEST_P(Resume, PositionPastTheEndOfTheEpochIsRefused) {
  auto t = trainer();
  t->train_epoch();
  Checkpoint saved = save_and_load(*t);
  saved.data.reset();  // as from a version-1 file
  saved.position = DataPosition{2, 10, 0, 0};  // the epoch has 10 batches: 0..9
  auto resumed = trainer();
  try {
    resumed->resume(saved);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("batch 10 of epoch 2, past the end of an epoch of 10 batches"));
  }
}

INSTANTIATE_TEST_SUITE_P(StreamedAndResident, Resume,
                         testing::Values(DataPlacement::kStreamed, DataPlacement::kResident),
                         [](const auto& info) {
                           return std::string(info.param == DataPlacement::kStreamed ? "streamed" : "resident");
                         });

}  // namespace
}  // namespace vae
