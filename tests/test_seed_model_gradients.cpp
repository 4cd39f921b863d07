// Finite-difference checks, in double, of the seed VAE's ops (BatchNorm1d in training mode,
// LeakyReLU, the Tanh + alpha * MSE loss) and of its whole loss; and BatchNorm's running statistics
// and evaluation mode against their definitions. The tolerance is finite_differences.hpp's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "finite_differences.hpp"
#include "vae/config.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/reference_model.hpp"
#include "vae/reference_ops.hpp"

namespace vae {
namespace {

using testing_support::dot;
using testing_support::expect_gradient_matches;
using testing_support::random_vec;
using testing_support::Vec;

// ---- BatchNorm1d ----

struct BatchNormCase {
  int rows = 6, features = 5;
  Vec x, gamma, beta, running_mean, running_var;
  explicit BatchNormCase(uint64_t seed) {
    std::mt19937_64 rng(seed);
    x = random_vec(rows * features, rng, -2, 3);
    gamma = random_vec(features, rng, 0.5, 1.5);
    beta = random_vec(features, rng);
    running_mean = random_vec(features, rng);
    running_var = random_vec(features, rng, 0.5, 2);
  }
};

TEST(BatchNormGradient, TrainingModeMatchesFiniteDifferences) {
  BatchNormCase c(3);
  std::mt19937_64 rng(4);
  const Vec probe = random_vec(c.rows * c.features, rng);  // L = <probe, y>
  Vec y(c.x.size()), mean(c.features), invstd(c.features), rm = c.running_mean, rv = c.running_var;
  auto loss = [&] {
    ref::batch_norm_forward_training(c.rows, c.features, 0.1, 1e-5, c.x.data(), c.gamma.data(), c.beta.data(), y.data(),
                                     mean.data(), invstd.data(), rm.data(), rv.data());
    return dot(probe, y);
  };
  loss();
  Vec dx(c.x.size()), dgamma(c.features), dbeta(c.features);
  ref::batch_norm_backward(c.rows, c.features, c.x.data(), c.gamma.data(), mean.data(), invstd.data(), probe.data(),
                           dx.data(), dgamma.data(), dbeta.data());
  // Every input moves the batch's statistics, so dx is far from gamma * invstd * dy: the check bites.
  expect_gradient_matches("dx", c.x, dx, loss);
  expect_gradient_matches("dgamma", c.gamma, dgamma, loss);
  expect_gradient_matches("dbeta", c.beta, dbeta, loss);
}

TEST(BatchNorm, TrainingNormalisesByTheBatchAndMovesTheRunningStatistics) {
  BatchNormCase c(5);
  Vec y(c.x.size()), mean(c.features), invstd(c.features), rm = c.running_mean, rv = c.running_var;
  const double momentum = 0.1, eps = 1e-5;
  ref::batch_norm_forward_training(c.rows, c.features, momentum, eps, c.x.data(), c.gamma.data(), c.beta.data(),
                                   y.data(), mean.data(), invstd.data(), rm.data(), rv.data());
  for (int f = 0; f < c.features; ++f) {
    double m = 0, v = 0;
    for (int r = 0; r < c.rows; ++r) m += c.x[r * c.features + f] / c.rows;
    for (int r = 0; r < c.rows; ++r) v += std::pow(c.x[r * c.features + f] - m, 2);
    const double biased = v / c.rows, unbiased = v / (c.rows - 1);
    EXPECT_NEAR(mean[f], m, 1e-14);
    EXPECT_NEAR(invstd[f], 1 / std::sqrt(biased + eps), 1e-12);
    EXPECT_NEAR(rm[f], (1 - momentum) * c.running_mean[f] + momentum * m, 1e-14);
    EXPECT_NEAR(rv[f], (1 - momentum) * c.running_var[f] + momentum * unbiased, 1e-14);
    // The output has the batch mean beta and the biased standard deviation |gamma| (up to eps).
    double out_mean = 0, out_var = 0;
    for (int r = 0; r < c.rows; ++r) out_mean += y[r * c.features + f] / c.rows;
    for (int r = 0; r < c.rows; ++r) out_var += std::pow(y[r * c.features + f] - out_mean, 2) / c.rows;
    EXPECT_NEAR(out_mean, c.beta[f], 1e-12);
    EXPECT_NEAR(out_var, c.gamma[f] * c.gamma[f] * biased / (biased + eps), 1e-12);
  }
}

TEST(BatchNorm, EvaluationUsesTheRunningStatisticsAndChangesNothing) {
  BatchNormCase c(6);
  Vec y(c.x.size());
  const Vec rm = c.running_mean, rv = c.running_var;
  ref::batch_norm_forward_eval(c.rows, c.features, 1e-5, c.x.data(), c.gamma.data(), c.beta.data(), rm.data(), rv.data(),
                               y.data());
  for (int r = 0; r < c.rows; ++r)
    for (int f = 0; f < c.features; ++f) {
      const int i = r * c.features + f;
      EXPECT_NEAR(y[i], (c.x[i] - rm[f]) / std::sqrt(rv[f] + 1e-5) * c.gamma[f] + c.beta[f], 1e-14);
    }
  // Row by row gives the same rows: no statistic of the batch is involved.
  Vec one(c.features);
  ref::batch_norm_forward_eval(1, c.features, 1e-5, c.x.data() + 2 * c.features, c.gamma.data(), c.beta.data(),
                               rm.data(), rv.data(), one.data());
  for (int f = 0; f < c.features; ++f) EXPECT_EQ(one[f], y[2 * c.features + f]);
}

TEST(BatchNorm, TrainingOnOneRowIsAnError) {
  BatchNormCase c(7);
  Vec y(c.features), mean(c.features), invstd(c.features), rm = c.running_mean, rv = c.running_var;
  EXPECT_THROW(ref::batch_norm_forward_training(1, c.features, 0.1, 1e-5, c.x.data(), c.gamma.data(), c.beta.data(),
                                                y.data(), mean.data(), invstd.data(), rm.data(), rv.data()),
               Error);
}

// ---- LeakyReLU ----

TEST(LeakyReluGradient, MatchesFiniteDifferencesOnBothSides) {
  std::mt19937_64 rng(8);
  Vec x = random_vec(40, rng);
  for (double& v : x)  // keep away from the kink, where the difference quotient straddles it
    if (std::fabs(v) < 1e-3) v = 0.5;
  const Vec probe = random_vec(x.size(), rng);
  const double slope = 0.1;
  Vec y(x.size());
  auto loss = [&] {
    y = x;
    ref::activation_forward<double>(static_cast<int64_t>(y.size()), Activation::kLeakyReLU, slope, y.data());
    return dot(probe, y);
  };
  loss();
  int negative = 0;
  for (double v : x) negative += v < 0;
  ASSERT_GT(negative, 5);
  Vec dx = probe;
  ref::activation_backward<double>(static_cast<int64_t>(dx.size()), Activation::kLeakyReLU, slope, y.data(), dx.data());
  expect_gradient_matches("dx", x, dx, loss);
  EXPECT_DOUBLE_EQ(leaky_relu(-2.0, 0.1), -0.2);
  EXPECT_EQ(leaky_relu(3.0, 0.1), 3.0);
  EXPECT_TRUE(std::isnan(leaky_relu(std::nan(""), 0.1)));  // NaN reaches the NaN guard
}

// ---- Tanh + alpha * MSE, and the KL term ----

TEST(GaussianLoss, IsAlphaTimesThePixelMeanSquaredErrorAndGradientMatches) {
  const int rows = 3, pixels = 11, latent = 4;
  const double alpha = 7.5, scale = 1.0 / rows;
  std::mt19937_64 rng(9);
  Vec pre = random_vec(rows * pixels, rng, -2, 2), target = random_vec(rows * pixels, rng, -1, 1);
  const Vec mu_logvar = random_vec(rows * 2 * latent, rng);
  Vec dpre(pre.size()), scratch(2 * rows);
  const LossSums sums = ref::gaussian_kl_loss(rows, pixels, latent, alpha, scale, pre.data(), target.data(),
                                              mu_logvar.data(), dpre.data(), scratch.data());
  double reconstruction = 0, kl = 0;
  for (int r = 0; r < rows; ++r) {
    double squares = 0;
    for (int p = 0; p < pixels; ++p) squares += std::pow(std::tanh(pre[r * pixels + p]) - target[r * pixels + p], 2);
    reconstruction += alpha * squares / pixels;
    for (int j = 0; j < latent; ++j) {
      const double mu = mu_logvar[r * 2 * latent + j], lv = mu_logvar[r * 2 * latent + latent + j];
      kl += -0.5 * (1 + lv - mu * mu - std::exp(lv));
    }
  }
  EXPECT_NEAR(sums.reconstruction, reconstruction, 1e-12 * reconstruction);
  EXPECT_NEAR(sums.kl, kl, 1e-12 * std::fabs(kl));
  auto loss = [&] {
    return scale * ref::gaussian_kl_loss(rows, pixels, latent, alpha, scale, pre.data(), target.data(),
                                         mu_logvar.data(), static_cast<double*>(nullptr), scratch.data())
                       .reconstruction;
  };
  expect_gradient_matches("dpre", pre, dpre, loss);
}

// ---- the whole loss ----

// The seed's architecture in miniature: BatchNorm and LeakyReLU in every hidden layer, the encoder's
// extra linear layer, and either likelihood. The loss differentiated is the one trained on: the
// batch mean for the Gaussian likelihood, the batch sum for the Bernoulli one.
class SeedModelGradient : public testing::TestWithParam<Likelihood> {};

TEST_P(SeedModelGradient, WholeLossMatchesFiniteDifferencesForEveryParameter) {
  ModelConfig model;
  model.input = 12;
  model.hidden = {9, 6};
  model.encoder_output = 5;
  model.latent = 3;
  model.beta = 1.3f;
  model.activation = Activation::kLeakyReLU;
  model.negative_slope = 0.1f;
  model.batch_norm = true;
  model.likelihood = GetParam();
  model.alpha = 4.0f;
  const int rows = 5;
  ReferenceVae<double> vae(model, rows);
  const ParamLayout& layout = vae.layout();
  Vec params(layout.total, 0.0), running(layout.running_total);
  init_params(layout, 17, params.data());
  // BatchNorm's own parameters away from their identity start, so their gradients mean something.
  std::mt19937_64 rng(2);
  for (const LinearSlot& l : layout.layers)
    if (l.batch_norm)
      for (int f = 0; f < l.out; ++f) {
        params[l.bn_weight_offset + f] = std::uniform_real_distribution<double>(0.5, 1.5)(rng);
        params[l.bn_bias_offset + f] = std::uniform_real_distribution<double>(-0.5, 0.5)(rng);
      }
  const bool gaussian = model.likelihood == Likelihood::kGaussian;
  const Vec x = random_vec(rows * model.input, rng, gaussian ? -1 : 0, 1);
  Vec scratch_grads(layout.total);
  // Training mode needs grads; the running statistics it moves do not enter the loss.
  auto loss = [&] {
    init_running_stats(layout, running.data());
    const LossSums s = vae.run(rows, x.data(), 99, 5, params.data(), scratch_grads.data(), running.data());
    const double per_batch = s.reconstruction + model.beta * s.kl;
    return gaussian ? per_batch / rows : per_batch;  // the seed averages over the batch
  };
  Vec grads(layout.total, 0.0);
  init_running_stats(layout, running.data());
  vae.run(rows, x.data(), 99, 5, params.data(), grads.data(), running.data());
  expect_gradient_matches("dparams", params, grads, loss);
}

INSTANTIATE_TEST_SUITE_P(BothLikelihoods, SeedModelGradient,
                         testing::Values(Likelihood::kGaussian, Likelihood::kBernoulli),
                         [](const auto& info) { return std::string(likelihood_name(info.param)); });

// Evaluation (no grads) normalises by the running statistics, so each image's loss is its own:
// one batch and the same images one at a time agree. In training mode they would not.
TEST(SeedModel, EvaluationModeIsPerImage) {
  ModelConfig model;
  model.input = 10;
  model.hidden = {8};
  model.latent = 2;
  model.batch_norm = true;
  model.likelihood = Likelihood::kGaussian;
  const int rows = 4;
  ReferenceVae<double> vae(model, rows);
  const ParamLayout& layout = vae.layout();
  Vec params(layout.total), running(layout.running_total), grads(layout.total);
  init_params(layout, 3, params.data());
  init_running_stats(layout, running.data());
  std::mt19937_64 rng(12);
  const Vec x = random_vec(rows * model.input, rng, -1, 1);
  vae.run(rows, x.data(), 1, 1, params.data(), grads.data(), running.data());  // moves the running statistics
  vae.encode(rows, x.data(), params.data(), running.data());
  const Vec together(vae.mu_logvar(), vae.mu_logvar() + rows * 2 * model.latent);
  for (int r = 0; r < rows; ++r) {
    vae.encode(1, x.data() + r * model.input, params.data(), running.data());
    for (int j = 0; j < 2 * model.latent; ++j) EXPECT_EQ(vae.mu_logvar()[j], together[r * 2 * model.latent + j]);
  }
  EXPECT_THROW(vae.encode(rows, x.data(), params.data(), nullptr), Error);  // BatchNorm without its statistics
}

}  // namespace
}  // namespace vae
