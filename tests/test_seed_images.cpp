// Pictures of a Gaussian BatchNorm model (the seed's options): decodes are (tanh(a) + 1) / 2 of the
// reference decoder in evaluation mode, with the checkpoint's running statistics; encodes see the
// [-1, 1] data the model trained on; --sample, --interpolate and --latent-map work from such a
// checkpoint; and --interpolate-z sampled starts and ends at mu + exp(logvar / 2) * eps, eps drawn by
// sample_latents(seed, ...), not at the means.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "model_support.hpp"
#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/images.hpp"
#include "vae/inspect.hpp"
#include "vae/layout.hpp"
#include "vae/reference_model.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using testing_support::initial_params;
using testing_support::odd_running_stats;
using testing_support::run_process;
using testing_support::small_seed_model;
using testing_support::TempDir;

std::vector<float> initial_running_stats(const ModelConfig& model) {
  std::vector<float> running(static_cast<size_t>(make_layout(model).running_total));
  init_running_stats(make_layout(model), running.data());
  return running;
}

TEST(GaussianImages, DecodeIsHalfTanhPlusOneOfTheEvaluationModeDecoder) {
  const ModelConfig model = small_seed_model(3);
  const std::vector<float> params = initial_params(model, 7), running = odd_running_stats(model, 8);
  const int count = 10;
  std::vector<float> z(count * 3);
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  for (float& v : z) v = normal(rng);

  ReferenceVae<float> chunked(model, 4);  // 10 latents in chunks of 4, 4 and 2
  const std::vector<float> images = decode_images(chunked, count, z.data(), params, running);
  ReferenceVae<float> whole(model, count);
  whole.decode(count, z.data(), params.data(), running.data());
  ASSERT_EQ(images.size(), static_cast<size_t>(count) * 784);
  for (size_t i = 0; i < images.size(); ++i) {
    const float a = whole.logits()[i];
    ASSERT_NEAR(images[i], (std::tanh(a) + 1.0f) / 2.0f, 1e-6f) << i;
  }
  // The running statistics are what evaluation normalises with: others give other images.
  EXPECT_NE(decode_images(chunked, count, z.data(), params, initial_running_stats(model)), images);
  // A BatchNorm model cannot decode without them.
  EXPECT_THROW(decode_images(chunked, count, z.data(), params), Error);
}

// Evaluation mode decodes each latent alone: one row at a time gives the same images (training mode
// would normalise by the batch, and a lone row could not be normalised at all).
TEST(GaussianImages, DecodesRowByRowAsInABatch) {
  const ModelConfig model = small_seed_model(3);
  const std::vector<float> params = initial_params(model, 7), running = odd_running_stats(model, 8);
  const std::vector<float> z = sample_latents(4, 6, 3);
  ReferenceVae<float> batch(model, 6), single(model, 1);
  const std::vector<float> together = decode_images(batch, 6, z.data(), params, running);
  const std::vector<float> alone = decode_images(single, 6, z.data(), params, running);
  ASSERT_EQ(alone.size(), together.size());
  for (size_t i = 0; i < alone.size(); ++i) ASSERT_NEAR(alone[i], together[i], 1e-5f) << i;
}

TEST(GaussianImages, EncodeSeesTheSignedDataTheModelTrainedOn) {
  for (const Likelihood likelihood : {Likelihood::kGaussian, Likelihood::kBernoulli}) {
    ModelConfig model = small_seed_model(3);
    model.likelihood = likelihood;
    const std::vector<float> params = initial_params(model, 3), running = odd_running_stats(model, 4);
    const MnistSplit split = testing_support::random_split(5, 6);
    std::vector<float> unit(split.pixels.size()), trained_on(split.pixels.size());
    for (size_t i = 0; i < split.pixels.size(); ++i) {
      unit[i] = pixel_to_unit(split.pixels[i]);
      trained_on[i] = likelihood == Likelihood::kGaussian ? pixel_to_signed(split.pixels[i]) : unit[i];
    }
    ReferenceVae<float> vae(model, 5), reference(model, 5);
    const std::vector<float> posteriors = encode_posteriors(vae, 5, unit.data(), params, running);
    reference.encode(5, trained_on.data(), params.data(), running.data());
    EXPECT_EQ(posteriors, std::vector<float>(reference.mu_logvar(), reference.mu_logvar() + 5 * 2 * 3))
        << likelihood_name(likelihood);
    EXPECT_EQ(split_images(split, 0, 5), unit);  // what the commands hand encode_posteriors
  }
}

// ---- the commands, from a checkpoint trained by vae_cuda ----

struct Png {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
};

Png read_png(const fs::path& file) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  Png png;
  if (png_image_begin_read_from_file(&image, file.c_str()) == 0) {
    ADD_FAILURE() << file << ": " << image.message;
    return png;
  }
  image.format = PNG_FORMAT_GRAY;
  png.width = static_cast<int>(image.width);
  png.height = static_cast<int>(image.height);
  png.pixels.resize(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, png.pixels.data(), 0, nullptr) == 0) ADD_FAILURE() << image.message;
  return png;
}

// Tile `index` of a one-row or square grid of 28x28 tiles with kTilePad between them.
std::vector<uint8_t> tile_of(const Png& png, int index, int grid_cols) {
  const int left = kTilePad + (index % grid_cols) * (28 + kTilePad);
  const int top = kTilePad + (index / grid_cols) * (28 + kTilePad);
  std::vector<uint8_t> tile;
  for (int r = 0; r < 28; ++r)
    for (int c = 0; c < 28; ++c) tile.push_back(png.pixels[static_cast<size_t>(top + r) * png.width + left + c]);
  return tile;
}

class GaussianInspect : public testing::Test {
 protected:
  static constexpr int kLatent = 2;  // so --latent-map applies too
  void SetUp() override {
    testing_support::write_tiny_mnist(dir_.path(), 64, 10);
    const auto r = run_process(VAE_CLI_PATH, "--train " + dir_.path().string() +
                                                 " --device cpu --no-progress --epochs 1 --batch 16 --hidden 24,12 "
                                                 "--encoder-output 5 --latent 2 --batch-norm --activation leaky_relu "
                                                 "--negative-slope 0.1 --likelihood gaussian --alpha 32 --out " +
                                                 (dir_.path() / "run").string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    checkpoint_ = read_checkpoint(checkpoint_file());
    ASSERT_TRUE(checkpoint_.config.model.batch_norm);
    // Trained running statistics, not the initial ones.
    ASSERT_NE(checkpoint_.state.running_stats, initial_running_stats(checkpoint_.config.model));
  }
  fs::path checkpoint_file() const { return dir_.path() / "run" / "checkpoint.safetensors"; }
  InspectOptions options(const std::string& png) const {
    InspectOptions o;
    o.checkpoint = checkpoint_file().string();
    o.data_dir = dir_.path().string();
    o.out_png = (dir_.path() / png).string();
    return o;
  }
  // The test image's posterior by the reference encoder on the [-1, 1] data, in evaluation mode.
  std::vector<float> posterior(int index) {
    const MnistSplit test = load_mnist_dir(dir_.path()).test;
    std::vector<float> x(784);
    for (int i = 0; i < 784; ++i) x[i] = pixel_to_signed(test.pixels[static_cast<size_t>(index) * 784 + i]);
    ReferenceVae<float> vae(checkpoint_.config.model, 1);
    vae.encode(1, x.data(), checkpoint_.state.params.data(), checkpoint_.state.running_stats.data());
    return std::vector<float>(vae.mu_logvar(), vae.mu_logvar() + 2 * kLatent);
  }
  // The pixels a decode of z shows: (tanh(a) + 1) / 2 of the evaluation-mode decoder, as 0..255.
  std::vector<int> drawn(const std::vector<float>& z) {
    ReferenceVae<float> vae(checkpoint_.config.model, 1);
    vae.decode(1, z.data(), checkpoint_.state.params.data(), checkpoint_.state.running_stats.data());
    std::vector<int> pixels(784);
    for (int i = 0; i < 784; ++i)
      pixels[i] = static_cast<int>(std::lround((std::tanh(vae.logits()[i]) + 1.0f) / 2.0f * 255.0f));
    return pixels;
  }
  static void expect_tile_near(const std::vector<uint8_t>& tile, const std::vector<int>& expected, const char* what) {
    ASSERT_EQ(tile.size(), expected.size());
    int worst = 0;
    for (size_t i = 0; i < tile.size(); ++i) worst = std::max(worst, std::abs(tile[i] - expected[i]));
    EXPECT_LE(worst, 1) << what;  // one step of 8-bit rounding
  }

  TempDir dir_;
  Checkpoint checkpoint_;
};

TEST_F(GaussianInspect, SampleDrawsThePriorsLatentsThroughTheEvaluationModeDecoder) {
  InspectOptions o = options("s.png");
  o.grid = 3;
  o.seed = 4;
  run_sample(o);
  const Png png = read_png(o.out_png);
  ASSERT_EQ(png.width, 3 * 28 + 4 * kTilePad);
  const std::vector<float> z = sample_latents(4, 9, kLatent);
  for (int t = 0; t < 9; ++t)
    expect_tile_near(tile_of(png, t, 3), drawn({z[2 * t], z[2 * t + 1]}), ("tile " + std::to_string(t)).c_str());
}

TEST_F(GaussianInspect, InterpolateSampledEndsAreDrawsFromEachPosterior) {
  InspectOptions o = options("sampled.png");
  o.pair_i = 2;
  o.pair_j = 5;
  o.steps = 3;
  o.seed = 6;
  o.sampled_ends = true;
  run_interpolate(o);
  const Png sampled = read_png(o.out_png);
  const int tiles = o.steps + 2;
  ASSERT_EQ(sampled.width, tiles * 28 + (tiles + 1) * kTilePad);

  const std::vector<float> eps = sample_latents(6, 2, kLatent);
  const std::vector<float> a = posterior(2), b = posterior(5);
  std::vector<float> za(kLatent), zb(kLatent), ma(a.begin(), a.begin() + kLatent), mb(b.begin(), b.begin() + kLatent);
  for (int k = 0; k < kLatent; ++k) {
    za[k] = a[k] + std::exp(a[kLatent + k] / 2.0f) * eps[k];
    zb[k] = b[k] + std::exp(b[kLatent + k] / 2.0f) * eps[kLatent + k];
  }
  expect_tile_near(tile_of(sampled, 1, tiles), drawn(za), "first end");
  expect_tile_near(tile_of(sampled, 3, tiles), drawn(zb), "last end");
  std::vector<float> middle(kLatent);
  for (int k = 0; k < kLatent; ++k) middle[k] = 0.5f * za[k] + 0.5f * zb[k];
  expect_tile_near(tile_of(sampled, 2, tiles), drawn(middle), "middle");

  // The default ends are the means: other pictures.
  o.sampled_ends = false;
  o.out_png = (dir_.path() / "mean.png").string();
  run_interpolate(o);
  const Png mean = read_png(o.out_png);
  expect_tile_near(tile_of(mean, 1, tiles), drawn(ma), "first mean");
  expect_tile_near(tile_of(mean, 3, tiles), drawn(mb), "last mean");
  EXPECT_NE(tile_of(mean, 1, tiles), tile_of(sampled, 1, tiles));
  EXPECT_EQ(tile_of(mean, 0, tiles), tile_of(sampled, 0, tiles));  // the test images themselves
}

// The CLI's --interpolate-z sampled and --seed reach the command: its picture is run_interpolate's.
TEST_F(GaussianInspect, TheCommandLineDrawsTheSameSampledEnds) {
  const std::string common = "--interpolate " + checkpoint_file().string() + " --pair 2,5 --data-dir " +
                             dir_.path().string() + " --interpolate-z sampled ";
  auto r = run_process(VAE_CLI_PATH, common + "--seed 6 --out " + (dir_.path() / "cli6.png").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_process(VAE_CLI_PATH, common + "--seed 7 --out " + (dir_.path() / "cli7.png").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  InspectOptions o = options("api6.png");
  o.pair_i = 2;
  o.pair_j = 5;
  o.seed = 6;
  o.sampled_ends = true;
  run_interpolate(o);
  EXPECT_EQ(read_png(dir_.path() / "cli6.png").pixels, read_png(o.out_png).pixels);
  EXPECT_NE(read_png(dir_.path() / "cli7.png").pixels, read_png(o.out_png).pixels);
}

TEST_F(GaussianInspect, EveryDrawingCommandWorksFromTheCheckpoint) {
  const std::string ckpt = checkpoint_file().string();
  for (const std::string& args :
       {"--sample " + ckpt + " --out " + (dir_.path() / "a.png").string(),
        "--latent-map " + ckpt + " --out " + (dir_.path() / "b.png").string(),
        "--interpolate " + ckpt + " --pair 0,1 --data-dir " + dir_.path().string() + " --out " +
            (dir_.path() / "c.png").string()}) {
    const auto r = run_process(VAE_CLI_PATH, args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
  }
  const Png map = read_png(dir_.path() / "b.png");
  EXPECT_EQ(map.width, 8 * 28 + 9 * kTilePad);
  // The latent map's corner at z = (-3, 3), the top left tile.
  expect_tile_near(tile_of(map, 0, 8), drawn({-3.0f, 3.0f}), "latent map corner");
  EXPECT_EQ(read_png(dir_.path() / "c.png").width, 12 * 28 + 13 * kTilePad);
}

}  // namespace
}  // namespace vae
