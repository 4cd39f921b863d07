// Writes the fuzzers' seed corpora: a few small valid IDX files (raw and gzip) and valid checkpoints
// of tiny models. Generated at fuzz time rather than committed, so no binary lives in the tree and
// the seeds follow the formats if the writers change. Usage: make_seeds IDX_DIR CHECKPOINT_DIR
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "vae/checkpoint.hpp"
#include "vae/error.hpp"
#include "vae/layout.hpp"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// An unsigned-byte IDX file: magic 00 00 08 rank, big-endian dimensions, then the payload.
Bytes idx_file(const std::vector<uint32_t>& dims) {
  Bytes bytes = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  size_t payload = 1;
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(d >> shift));
    payload *= d;
  }
  for (size_t i = 0; i < payload; ++i) bytes.push_back(static_cast<uint8_t>(i * 37 % 256));
  return bytes;
}

void write_raw(const fs::path& file, const Bytes& bytes) {
  std::FILE* out = std::fopen(file.c_str(), "wb");
  if (!out || std::fwrite(bytes.data(), 1, bytes.size(), out) != bytes.size() || std::fclose(out) != 0)
    throw vae::Error(file.string() + ": cannot write");
}

void write_gzip(const fs::path& file, const Bytes& bytes) {
  gzFile out = gzopen(file.c_str(), "wb9");
  if (!out) throw vae::Error(file.string() + ": cannot create");
  const int written = gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size()));
  if (gzclose(out) != Z_OK || written != static_cast<int>(bytes.size()))
    throw vae::Error(file.string() + ": gzip write failed");
}

// A model on 4 pixels with latent 1 and these hidden widths.
vae::ModelConfig tiny_model(const std::vector<int>& hidden) {
  vae::ModelConfig model;
  model.input = 4;
  model.hidden = hidden;
  model.latent = 1;
  return model;
}

// A checkpoint of `model` whose every value differs, so the fuzzer sees realistic float bytes.
vae::Checkpoint tiny_checkpoint(const vae::ModelConfig& model) {
  vae::Checkpoint c;
  c.config.model = model;
  c.config.batch = 2;
  const vae::ParamLayout layout = vae::make_layout(model);
  float value = 0.0f;
  for (auto* buffer : {&c.state.params, &c.state.adam_m, &c.state.adam_v}) {
    buffer->resize(static_cast<size_t>(layout.total));
    for (float& v : *buffer) v = (value += 0.125f);
  }
  c.state.running_stats.resize(static_cast<size_t>(layout.running_total));
  for (float& v : c.state.running_stats) v = (value += 0.125f);
  c.state.step = 3;
  c.position = vae::DataPosition{2, 1, 10.5, 0.25};
  c.data = vae::DataIdentity{2, 2, 5, 0x0123456789abcdefull, 0xfedcba9876543210ull};
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds IDX_DIR CHECKPOINT_DIR\n");
    return 2;
  }
  try {
    const fs::path idx_dir = argv[1], checkpoint_dir = argv[2];
    fs::create_directories(idx_dir);
    fs::create_directories(checkpoint_dir);

    const Bytes images = idx_file({2, 3, 3}), labels = idx_file({2});
    write_raw(idx_dir / "images-2x3x3", images);
    write_raw(idx_dir / "labels-2", labels);
    write_raw(idx_dir / "images-1x28x28", idx_file({1, 28, 28}));
    write_gzip(idx_dir / "images-2x3x3.gz", images);
    write_gzip(idx_dir / "labels-2.gz", labels);

    // One hidden layer uses PyTorch's tensor names (fc1, fc21, ...), two use encoder.{i}, mu, ...
    vae::write_checkpoint(checkpoint_dir / "tiny-4-3-1.safetensors", tiny_checkpoint(tiny_model({3})));
    vae::write_checkpoint(checkpoint_dir / "tiny-4-3-2-1.safetensors", tiny_checkpoint(tiny_model({3, 2})));
    // The seed's options: nn.Sequential names, BatchNorm's running statistics and its I64
    // num_batches_tracked, and the plateau schedule's state in the metadata.
    vae::ModelConfig seed_model = tiny_model({3});
    seed_model.batch_norm = true;
    seed_model.encoder_output = 2;
    seed_model.activation = vae::Activation::kLeakyReLU;
    seed_model.likelihood = vae::Likelihood::kGaussian;
    vae::Checkpoint seed = tiny_checkpoint(seed_model);
    seed.config.lr_schedule = vae::LrSchedule::kPlateau;
    seed.plateau = vae::PlateauState{1.5, 1, 0, 1, 1e-3};
    vae::write_checkpoint(checkpoint_dir / "tiny-seed-options.safetensors", seed);
  } catch (const vae::Error& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
