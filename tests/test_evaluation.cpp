// evaluate_model and `vae_cuda --evaluate`: the importance-weighted bound against a per-image
// computation written out here from the reference encoder and decoder, its rise with K, log-sum-exp
// on huge log-weights, the Gaussian likelihood's normalising constant against the density itself,
// active units and KL per dimension on hand-made posteriors, and the command's output and errors.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_support.hpp"
#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/cuda_device.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/evaluation.hpp"
#include "vae/images.hpp"
#include "vae/layout.hpp"
#include "vae/reference_backend.hpp"
#include "vae/reference_model.hpp"

namespace vae {
namespace {

using nlohmann::json;
using testing_support::initial_params;
using testing_support::odd_running_stats;
using testing_support::small_seed_model;
using testing_support::TempDir;

ModelConfig small_model(Likelihood likelihood = Likelihood::kBernoulli) {
  ModelConfig m;
  m.hidden = {32};
  m.latent = 4;
  m.likelihood = likelihood;
  m.alpha = 64.0f;
  return m;
}


// Per image, written out from the reference model: one importance sample's reconstruction term
// (the training loss's) and log p(z) - log q(z | x), for image i's sample k.
struct Sample {
  double reconstruction = 0, log_ratio = 0;
};

Sample sample_by_hand(const ModelConfig& model, const std::vector<float>& params, const MnistSplit& split, int image,
                      int k, uint64_t seed, const std::vector<float>& running_stats = {}) {
  ReferenceVae<float> vae(model, 1);
  const std::vector<float> x = split_images(split, image, 1);
  const std::vector<float> posterior = encode_posteriors(vae, 1, x.data(), params, running_stats);
  const int latent = model.latent;
  std::vector<float> z(latent);
  Sample s;
  for (int j = 0; j < latent; ++j) {
    const double eps = importance_eps(seed, image, k, j, latent);
    z[j] = reparam_sample(posterior[j], posterior[latent + j], static_cast<float>(eps));
    // log N(z; 0, 1) - log N(z; mu, sigma^2) with z - mu = sigma eps, from the densities' definitions.
    const double log_prior = -0.5 * std::log(2 * std::numbers::pi) - 0.5 * double(z[j]) * z[j];
    const double log_posterior =
        -0.5 * std::log(2 * std::numbers::pi) - 0.5 * double(posterior[latent + j]) - 0.5 * eps * eps;
    s.log_ratio += log_prior - log_posterior;
  }
  vae.decode(1, z.data(), params.data(), running_stats.empty() ? nullptr : running_stats.data());
  for (int p = 0; p < model.input; ++p) {
    const float unit = x[p];
    if (model.likelihood == Likelihood::kGaussian)
      s.reconstruction += tanh_squared_error<double>(vae.logits()[p], unit_to_signed(unit));
    else
      s.reconstruction += bce_with_logits<double>(vae.logits()[p], unit);
  }
  if (model.likelihood == Likelihood::kGaussian) s.reconstruction *= double(model.alpha) / model.input;
  return s;
}

void expect_close(double actual, double expected, const std::string& what) {
  EXPECT_NEAR(actual, expected, 1e-6 * std::max(1.0, std::abs(expected))) << what;
}

TEST(Evaluation, OneSampleIsTheElboWithItsKlEstimatedAtThatSample) {
  // The seed's options too: BatchNorm (with running statistics far from their initial values),
  // LeakyReLU and the extra encoder layer.
  for (const ModelConfig& model : {small_model(), small_model(Likelihood::kGaussian), small_seed_model(4)}) {
    const std::vector<float> params = initial_params(model, 3);
    const std::vector<float> running = model.batch_norm ? odd_running_stats(model, 5) : std::vector<float>{};
    const MnistSplit split = testing_support::disc_split(30, 4);
    const Evaluation ev = evaluate_model(model, params, running, split, 1, 7);
    ASSERT_EQ(ev.iwae.size(), 30u);
    for (int i = 0; i < 30; ++i) {
      const Sample s = sample_by_hand(model, params, split, i, 0, 7, running);
      const std::string what = fmt::format("{}{} image {}", likelihood_name(model.likelihood),
                                           model.batch_norm ? " BatchNorm" : "", i);
      expect_close(ev.reconstruction[i], s.reconstruction, what);
      expect_close(ev.iwae[i], ev.log_likelihood_constant - s.reconstruction + s.log_ratio, what);
    }
  }
}

TEST(Evaluation, EveryImportanceSampleCountsInTheLogMeanExp) {
  // K = 3 by hand: log((w0 + w1 + w2) / 3) from three samples written out, for a few images.
  const ModelConfig model = small_model();
  const std::vector<float> params = initial_params(model, 5);
  const MnistSplit split = testing_support::disc_split(5, 6);
  const Evaluation ev = evaluate_model(model, params, {}, split, 3, 11);
  for (int i = 0; i < 5; ++i) {
    double sum = 0, top = -INFINITY;
    std::vector<double> log_weights;
    for (int k = 0; k < 3; ++k) {
      const Sample s = sample_by_hand(model, params, split, i, k, 11);
      log_weights.push_back(-s.reconstruction + s.log_ratio);
      top = std::max(top, log_weights.back());
    }
    for (double w : log_weights) sum += std::exp(w - top);
    expect_close(ev.iwae[i], top + std::log(sum / 3), fmt::format("image {}", i));
  }
}

TEST(Evaluation, TheBoundRisesWithK) {
  const ModelConfig model = small_model();
  const std::vector<float> params = initial_params(model, 8);
  const MnistSplit split = testing_support::disc_split(64, 9);
  const double k1 = evaluate_model(model, params, {}, split, 1, 2).mean_iwae();
  const double k10 = evaluate_model(model, params, {}, split, 10, 2).mean_iwae();
  const Evaluation e100 = evaluate_model(model, params, {}, split, 100, 2);
  EXPECT_LT(k1, k10);
  EXPECT_LT(k10, e100.mean_iwae());
  EXPECT_LE(e100.mean_elbo(), e100.mean_iwae());
}

TEST(Evaluation, HugeLogWeightsStayFinite) {
  // Weights scaled so the logits reach thousands: each log-weight is far below what exp can hold.
  const ModelConfig model = small_model();
  std::vector<float> params = initial_params(model, 10);
  for (float& p : params) p *= 40.0f;
  const MnistSplit split = testing_support::disc_split(3, 12);
  const Evaluation ev = evaluate_model(model, params, {}, split, 50, 3);
  for (int i = 0; i < 3; ++i) {
    std::vector<double> log_weights;
    for (int k = 0; k < 50; ++k) {
      const Sample s = sample_by_hand(model, params, split, i, k, 3);
      log_weights.push_back(-s.reconstruction + s.log_ratio);
    }
    const double top = *std::max_element(log_weights.begin(), log_weights.end());
    ASSERT_LT(top, -800) << "the test needs log-weights whose exp is 0 in double";
    double shifted = 0;
    for (double w : log_weights) shifted += std::exp(w - top);
    ASSERT_TRUE(std::isfinite(ev.iwae[i])) << i;
    expect_close(ev.iwae[i], top + std::log(shifted / 50), fmt::format("image {}", i));
  }
}

TEST(Evaluation, TheGaussianConstantMakesTheDensityOfTheScaledPixels) {
  const ModelConfig model = small_model(Likelihood::kGaussian);
  const std::vector<float> params = initial_params(model, 13);
  const MnistSplit split = testing_support::disc_split(3, 14);
  const Evaluation ev = evaluate_model(model, params, {}, split, 1, 5);
  // log N(x'; tanh(a), sigma^2 I) summed pixel by pixel with sigma^2 = D / (2 alpha).
  ReferenceVae<float> vae(model, 1);
  const std::vector<float> x = split_images(split, 0, 1);
  const std::vector<float> posterior = encode_posteriors(vae, 1, x.data(), params);
  std::vector<float> z(model.latent);
  for (int j = 0; j < model.latent; ++j)
    z[j] = reparam_sample(posterior[j], posterior[model.latent + j], importance_eps(5, 0, 0, j, model.latent));
  vae.decode(1, z.data(), params.data());
  const double variance = double(model.input) / (2.0 * model.alpha);
  double log_density = 0;
  for (int p = 0; p < model.input; ++p) {
    const double d = std::tanh(double(vae.logits()[p])) - unit_to_signed(x[p]);
    log_density += -d * d / (2 * variance) - 0.5 * std::log(2 * std::numbers::pi * variance);
  }
  expect_close(ev.log_likelihood_constant - ev.reconstruction[0], log_density, "log p(x | z)");
  EXPECT_EQ(log_likelihood_constant(small_model()), 0.0);
}

TEST(Evaluation, ActiveUnitsAndKlPerDimensionOfHandMadePosteriors) {
  // Dimensions 1 and 3 ignore the input: their rows of the head are zero, so mu and logvar are the
  // biases. Dimensions 0 and 2 are driven hard by the input.
  const ModelConfig model = small_model();
  const ParamLayout layout = make_layout(model);
  std::vector<float> params = initial_params(model, 15);
  const LinearSlot& head = layout.layers[layout.head()];
  const int latent = model.latent;
  const float fixed_mu[] = {0, 0.5f, 0, -1.25f}, fixed_logvar[] = {0, -0.3f, 0, 0.2f};
  for (int row = 0; row < 2 * latent; ++row) {
    const int j = row % latent;
    for (int c = 0; c < head.in; ++c) params[head.weight_offset + static_cast<int64_t>(row) * head.in + c] *= (j % 2) ? 0.0f : 8.0f;
    if (j % 2) params[head.bias_offset + row] = row < latent ? fixed_mu[j] : fixed_logvar[j];
  }
  const MnistSplit split = testing_support::disc_split(50, 16);
  const Evaluation ev = evaluate_model(model, params, {}, split, 2, 1);

  ReferenceVae<float> vae(model, 50);
  const std::vector<float> x = split_images(split, 0, 50);
  const std::vector<float> posteriors = encode_posteriors(vae, 50, x.data(), params);
  for (int j = 0; j < latent; ++j) {
    double kl = 0, sum = 0, squares = 0;
    for (int i = 0; i < 50; ++i) {
      const float mu = posteriors[i * 2 * latent + j], logvar = posteriors[i * 2 * latent + latent + j];
      kl += kl_term<double>(mu, logvar);
      sum += mu;
    }
    for (int i = 0; i < 50; ++i) squares += std::pow(posteriors[i * 2 * latent + j] - sum / 50, 2);
    expect_close(ev.kl_per_dim[j], kl / 50, fmt::format("KL of z{}", j));
    expect_close(ev.mu_variance[j], squares / 50, fmt::format("variance of z{}", j));
  }
  for (int j : {1, 3}) {
    EXPECT_EQ(ev.mu_variance[j], 0.0) << j;
    expect_close(ev.kl_per_dim[j], kl_term<double>(fixed_mu[j], fixed_logvar[j]), fmt::format("fixed z{}", j));
  }
  EXPECT_GT(ev.mu_variance[0], 0.1);
  EXPECT_GT(ev.mu_variance[2], 0.1);
  EXPECT_EQ(ev.active_units(), 2);

  // The training log's test pass counts the same two, gathering the means batch by batch (a row it
  // missed would leave a zero among the fixed dimensions' nonzero means and count them too).
  TrainConfig config;
  config.model = model;
  config.batch = 16;  // 3 batches and a partial one
  ReferenceBackend backend(config);
  TrainingState state = backend.state();
  state.params = params;
  backend.restore(state);
  EXPECT_EQ(backend.evaluate(split, 1).active_units, 2);
}

TEST(Evaluation, RefusesImagesOfAnotherSizeAndKOutOfRange) {
  const ModelConfig model = small_model();
  const std::vector<float> params = initial_params(model, 1);
  const MnistSplit split = testing_support::disc_split(2, 1);
  EXPECT_THROW(evaluate_model(model, params, {}, split, 0, 1), Error);
  EXPECT_THROW(evaluate_model(model, params, {}, split, kMaxImportanceSamples + 1, 1), Error);
  MnistSplit small = split;
  small.rows = small.cols = 14;
  small.pixels.resize(2 * 196);
  EXPECT_THROW(evaluate_model(model, params, {}, small, 1, 1), Error);
  // The backend's own calls: images outside the split, and samples of images not encoded last.
  ReferenceEvaluation backend(model, params, {}, split);
  std::vector<float> posteriors(static_cast<size_t>(2) * 2 * model.latent);
  std::vector<double> reconstruction(4), log_ratio(4);
  EXPECT_THROW(backend.weigh(0, 2, 2, 1, reconstruction.data(), log_ratio.data()), Error);
  EXPECT_THROW(backend.encode(1, 2, posteriors.data()), Error);
  backend.encode(0, 2, posteriors.data());
  EXPECT_THROW(backend.weigh(0, 1, 2, 1, reconstruction.data(), log_ratio.data()), Error);
  EXPECT_NO_THROW(backend.weigh(0, 2, 2, 1, reconstruction.data(), log_ratio.data()));
  EXPECT_THROW(ReferenceEvaluation(model, std::vector<float>(params.begin(), params.end() - 1), {}, split), Error);
}

// --- the command ---

// A PNG's width and height, from its IHDR chunk (bytes 16 to 23, big-endian).
std::pair<int, int> png_size(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  unsigned char header[24] = {};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  const auto be32 = [&](int at) { return (header[at] << 24) | (header[at + 1] << 16) | (header[at + 2] << 8) | header[at + 3]; };
  return {be32(16), be32(20)};
}

class EvaluateCommand : public testing::Test {
 protected:
  void SetUp() override {
    testing_support::write_tiny_mnist(dir_.path() / "data", 3, 40, 28, 28, 2);
    testing_support::write_tiny_mnist(dir_.path() / "small", 3, 5, 14, 14, 2);
    Checkpoint c;
    c.config.model = small_model();
    c.data = DataIdentity{28, 28, 3, 1, 2};
    c.position = DataPosition{2, 0};
    c.state.params = initial_params(c.config.model, 4);
    // Dimensions 0 and 2 driven hard by the input, so the traversal has rows.
    const ParamLayout layout = make_layout(c.config.model);
    const LinearSlot& head = layout.layers[layout.head()];
    for (int j : {0, 2})
      for (int col = 0; col < head.in; ++col) c.state.params[head.weight_offset + int64_t{j} * head.in + col] *= 8.0f;
    c.state.adam_m.assign(c.state.params.size(), 0.0f);
    c.state.adam_v.assign(c.state.params.size(), 0.0f);
    checkpoint_ = (dir_.path() / "model.safetensors").string();
    write_checkpoint(checkpoint_, c);
  }

  testing_support::ProcessResult evaluate(const std::string& flags) {
    return testing_support::run_process(VAE_CLI_PATH, "--evaluate '" + checkpoint_ + "' --no-progress " + flags);
  }

  TempDir dir_;
  std::string checkpoint_;
};

TEST_F(EvaluateCommand, PrintsTheSummaryWritesEveryFigureAndTheTraversal) {
  const std::string data = (dir_.path() / "data").string(), json_file = (dir_.path() / "report" / "e.json").string(),
                    png = (dir_.path() / "traversal.png").string();
  const auto r = evaluate("--data-dir '" + data + "' --importance-samples 7 --seed 3 --device cpu --json '" + json_file +
                          "' --out '" + png + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* line : {"device: CPU reference backend\n", "ELBO", "IWAE", "K = 7", "active units", "KL per dimension"})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  std::ifstream in(json_file);
  const json report = json::parse(in);
  EXPECT_EQ(report["images"], 40);
  EXPECT_EQ(report["importance_samples"], 7);
  EXPECT_EQ(report["split"], "test");
  EXPECT_EQ(report["device"], "CPU reference backend");
  EXPECT_EQ(report["per_image"]["iwae"].size(), 40u);
  EXPECT_EQ(report["per_dimension"]["kl"].size(), 4u);
  // The command's figures are the library's on the same checkpoint, images, K and seed.
  const Checkpoint checkpoint = read_checkpoint(checkpoint_);
  const Evaluation ev = evaluate_model(checkpoint.config.model, checkpoint.state.params, {},
                                       load_mnist_dir(data).test, 7, 3);
  EXPECT_EQ(report["per_image"]["iwae"].get<std::vector<double>>(), ev.iwae);
  EXPECT_EQ(report["mean"]["iwae"], ev.mean_iwae());
  EXPECT_EQ(report["mean"]["elbo"], ev.mean_elbo());
  EXPECT_EQ(report["active_units"], ev.active_units());
  EXPECT_NE(r.output.find(fmt::format("IWAE      {:10.3f}", ev.mean_iwae())), std::string::npos) << r.output;
  // One row of 11 tiles per active dimension, 28 x 28 with 2 pixels around and between them.
  ASSERT_GE(ev.active_units(), 2) << "the fixture drives dimensions 0 and 2";
  const auto [width, height] = png_size(png);
  EXPECT_EQ(width, 11 * 28 + 12 * 2);
  EXPECT_EQ(height, ev.active_units() * 28 + (ev.active_units() + 1) * 2);
}

// --device auto falls back to the CPU reference and says why; --device cuda insists on a GPU. (With a
// GPU present, tests/test_evaluation_gpu.cpp compares the two.)
TEST_F(EvaluateCommand, WithoutAGpuAutoSaysSoAndCudaIsAnError) {
  if (query_cuda_devices().count > 0) GTEST_SKIP() << "a CUDA device is present";
  const std::string flags = "--data-dir '" + (dir_.path() / "data").string() + "' --importance-samples 2 --out '" +
                            (dir_.path() / "d.png").string() + "'";
  const auto r = evaluate(flags);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("device: CPU reference backend (no CUDA device: "), std::string::npos) << r.output;
  testing_support::expect_one_line_error(evaluate(flags + " --device cuda"), 1, "--device cuda: no CUDA device available",
                                         "--device cuda");
}

TEST_F(EvaluateCommand, TheTrainingSplitIsEvaluatedWhenAsked) {
  const std::string json_file = (dir_.path() / "train.json").string();
  const auto r = evaluate("--data-dir '" + (dir_.path() / "data").string() + "' --split train --importance-samples 2 --json '" +
                          json_file + "' --out '" + (dir_.path() / "t.png").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("on 3 training images"), std::string::npos) << r.output;
  std::ifstream in(json_file);
  const json report = json::parse(in);
  EXPECT_EQ(report["split"], "train");
  EXPECT_EQ(report["images"], 3);
}

TEST_F(EvaluateCommand, OverflowingWeightsAreAnErrorAndWriteNothing) {
  Checkpoint c = read_checkpoint(checkpoint_);
  const ParamLayout layout = make_layout(c.config.model);
  c.state.params[layout.layers[layout.head()].bias_offset + c.config.model.latent] = 200.0f;  // logvar: exp overflows
  const std::string broken = (dir_.path() / "broken.safetensors").string(), json_file = (dir_.path() / "b.json").string();
  write_checkpoint(broken, c);
  const auto r = testing_support::run_process(
      VAE_CLI_PATH, "--evaluate '" + broken + "' --no-progress --data-dir '" + (dir_.path() / "data").string() +
                        "' --json '" + json_file + "' --out '" + (dir_.path() / "b.png").string() + "'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("test image 0 gives a non-finite bound"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(json_file));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "b.png"));
}

TEST_F(EvaluateCommand, BadInvocationsAreOneLineErrors) {
  const std::string data = "--data-dir '" + (dir_.path() / "data").string() + "'";
  const std::vector<testing_support::ExpectedFailure> cases = {
      {"", 2, "--evaluate needs --data-dir"},
      {data + " --importance-samples 0", 2, "--importance-samples"},
      {data + " --importance-samples 100001", 2, "--importance-samples"},
      {data + " --importance-samples 5x", 2, "--importance-samples"},
      {data + " --split validation", 2, "--split"},
      {data + " --traverse-image 40", 2, "--traverse-image: image 40 is outside the 40 test images"},
      {data + " --traverse-image -1", 2, "--traverse-image"},
      {"--data-dir '" + (dir_.path() / "small").string() + "'", 1, "test images are 14x14, the model in"},
      {"--data-dir '" + (dir_.path() / "absent").string() + "'", 1, "absent"},
      {data + " --json '" + dir_.path().string() + "'", 2, "--json " + dir_.path().string() + ": exists and is not a regular file"},
      {data + " --out '" + (dir_.path() / "taken.png").string() + "'", 2, "taken.png: exists and is not a regular file"},
  };
  std::filesystem::create_directories(dir_.path() / "taken.png");
  testing_support::expect_one_line_errors(VAE_CLI_PATH, "--evaluate '" + checkpoint_ + "' --no-progress", cases);
  std::ofstream(dir_.path() / "garbage.safetensors") << "not a checkpoint";
  const std::string sample = "--sample '" + checkpoint_ + "'";
  testing_support::expect_one_line_errors(
      VAE_CLI_PATH, "",
      {
          {"--evaluate '" + (dir_.path() / "none.safetensors").string() + "' " + data, 1, "none.safetensors"},
          {"--evaluate '" + (dir_.path() / "garbage.safetensors").string() + "' " + data, 1, "garbage.safetensors"},
          {sample + " --importance-samples 5", 2, "--importance-samples goes with --evaluate"},
          {sample + " --split train", 2, "--split goes with --evaluate"},
          {sample + " --json x.json", 2, "--json goes with --evaluate"},
          {sample + " --traverse-image 1", 2, "--traverse-image goes with --evaluate"},
      });
}

}  // namespace
}  // namespace vae
