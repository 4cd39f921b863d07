// Finite-difference checks, in double, of every reference op's gradient and of the whole VAE loss
// (the tolerance and its reason: finite_differences.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "finite_differences.hpp"
#include "vae/element_math.hpp"
#include "vae/reference_model.hpp"
#include "vae/reference_ops.hpp"

namespace vae {
namespace {

using testing_support::dot;
using testing_support::expect_gradient_matches;
using testing_support::random_vec;
using testing_support::Vec;

class LinearGradient : public testing::TestWithParam<bool> {};

TEST_P(LinearGradient, MatchesFiniteDifferences) {
  const bool relu = GetParam();
  const int rows = 5, in = 19, out = 37;  // tails in every blocked loop
  std::mt19937_64 rng(11);
  Vec x = random_vec(rows * in, rng), w = random_vec(out * in, rng), b = random_vec(out, rng);
  const Vec probe = random_vec(rows * out, rng);  // L = <probe, y>, so dL/dy = probe
  Vec y(rows * out);
  auto loss = [&] {
    ref::linear_forward(rows, in, out, relu, x.data(), w.data(), b.data(), y.data());
    return dot(probe, y);
  };
  loss();
  Vec dy = probe, dx(rows * in), dw(out * in), db(out);
  ref::linear_backward(rows, in, out, relu, x.data(), w.data(), y.data(), dy.data(), dx.data(), dw.data(), db.data());
  if (relu) {
    int inactive = 0;
    for (double v : y) inactive += v == 0.0;
    ASSERT_GT(inactive, 0) << "the ReLU mask must be exercised";
  }
  expect_gradient_matches("dx", x, dx, loss);
  expect_gradient_matches("dW", w, dw, loss);
  expect_gradient_matches("db", b, db, loss);
}

INSTANTIATE_TEST_SUITE_P(WithAndWithoutRelu, LinearGradient, testing::Bool());

TEST(ReparamGradient, MatchesFiniteDifferencesWithKl) {
  const int rows = 3, latent = 7;
  const double beta = 0.7;
  std::mt19937_64 rng(5);
  Vec mu_logvar = random_vec(rows * 2 * latent, rng);
  const Vec probe = random_vec(rows * latent, rng);
  Vec eps(rows * latent), z(rows * latent);
  // L = <probe, z> + beta * KL: exercises the reparameterisation and the fused KL gradient.
  auto loss = [&] {
    ref::reparam_forward(rows, latent, 3, 4, mu_logvar.data(), eps.data(), z.data());
    double kl = 0;
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < latent; ++j)
        kl += kl_term(mu_logvar[r * 2 * latent + j], mu_logvar[r * 2 * latent + latent + j]);
    return dot(probe, z) + beta * kl;
  };
  loss();
  Vec grad(mu_logvar.size());
  ref::reparam_backward(rows, latent, beta, mu_logvar.data(), eps.data(), probe.data(), grad.data());
  expect_gradient_matches("dmu_logvar", mu_logvar, grad, loss);
}

TEST(BceKl, LossIsTheTextbookFormulaAndGradientMatches) {
  const int rows = 4, pixels = 23, latent = 5;
  std::mt19937_64 rng(8);
  Vec logits = random_vec(rows * pixels, rng, -6, 6), target = random_vec(rows * pixels, rng, 0, 1);
  const Vec mu_logvar = random_vec(rows * 2 * latent, rng);
  Vec dlogits(logits.size()), scratch(2 * rows);
  const LossSums sums =
      ref::bce_kl_loss(rows, pixels, latent, logits.data(), target.data(), mu_logvar.data(), dlogits.data(),
                       scratch.data());

  double bce = 0, kl = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double p = 1 / (1 + std::exp(-logits[i]));
    bce -= target[i] * std::log(p) + (1 - target[i]) * std::log(1 - p);
  }
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < latent; ++j) {
      const double mu = mu_logvar[r * 2 * latent + j], lv = mu_logvar[r * 2 * latent + latent + j];
      kl += -0.5 * (1 + lv - mu * mu - std::exp(lv));
    }
  EXPECT_NEAR(sums.reconstruction, bce, 1e-10 * bce);
  EXPECT_NEAR(sums.kl, kl, 1e-10 * std::fabs(kl));

  auto loss = [&] {
    return ref::bce_kl_loss(rows, pixels, latent, logits.data(), target.data(), mu_logvar.data(),
                            static_cast<double*>(nullptr), scratch.data())
        .reconstruction;
  };
  expect_gradient_matches("dlogits", logits, dlogits, loss);
}

TEST(BceKl, StableForSaturatedLogits) {
  const float logits[] = {-200.0f, 200.0f, -90.0f, 90.0f};
  const float target[] = {0.0f, 1.0f, 1.0f, 0.0f};
  const float mu_logvar[] = {0.0f, 0.0f};
  float dlogits[4];
  double scratch[2];
  const LossSums sums = ref::bce_kl_loss(1, 4, 1, logits, target, mu_logvar, dlogits, scratch);
  // Two perfect predictions cost nothing; two confident mistakes cost |logit| each.
  EXPECT_NEAR(sums.reconstruction, 180.0, 1e-3);
  EXPECT_EQ(sums.kl, 0.0);
  EXPECT_FLOAT_EQ(dlogits[0], 0.0f);
  EXPECT_FLOAT_EQ(dlogits[2], -1.0f);
  EXPECT_FLOAT_EQ(dlogits[3], 1.0f);
}

// PyTorch's VAE example computes sigmoid, then binary_cross_entropy, which clamps each log at -100
// (in float32, sigmoid(-200) is 0 and log(0) would be -inf). The engine's BCE-with-logits never takes
// log of a probability, so a confident mistake costs exactly |logit|: for saturated outputs, as in a
// diverging run, the two report different losses, and the engine's is the true one. The README says so.
float pytorch_example_bce(float logit, float target) {
  const float p = 1.0f / (1.0f + std::exp(-logit));
  return -(target * std::max(std::log(p), -100.0f) + (1.0f - target) * std::max(std::log(1.0f - p), -100.0f));
}

TEST(BceKl, ExactWherePyTorchsExampleClampsItsLogAtMinus100) {
  const float logits[] = {-200.0f, 200.0f, -200.0f};
  const float target[] = {1.0f, 0.0f, 0.5f};
  const float mu_logvar[] = {0.0f, 0.0f};
  double scratch[2];
  for (int i = 0; i < 3; ++i) {
    const double l = logits[i], t = target[i];
    const double exact = std::max(l, 0.0) - l * t + std::log1p(std::exp(-std::fabs(l)));  // 200, 200, 100
    const LossSums sums = ref::bce_kl_loss(1, 1, 1, &logits[i], &target[i], mu_logvar, static_cast<float*>(nullptr),
                                           scratch);
    EXPECT_DOUBLE_EQ(sums.reconstruction, exact) << "logit " << l << ", target " << t;
    EXPECT_DOUBLE_EQ(bce_with_logits(logits[i], target[i]), exact);  // the element formula both backends run
  }
  EXPECT_DOUBLE_EQ(200.0 + std::log1p(std::exp(-200.0)), 200.0);
  // What PyTorch's example reports for the same pixels: the clamp halves the first two.
  EXPECT_FLOAT_EQ(pytorch_example_bce(-200.0f, 1.0f), 100.0f);
  EXPECT_FLOAT_EQ(pytorch_example_bce(200.0f, 0.0f), 100.0f);
  EXPECT_FLOAT_EQ(pytorch_example_bce(-200.0f, 0.5f), 50.0f);
  // Below the clamp the two agree.
  EXPECT_NEAR(pytorch_example_bce(-20.0f, 1.0f), bce_with_logits(-20.0f, 1.0f), 1e-4);
}

// The whole step: two hidden layers, every parameter perturbed, ε held fixed by its Philox key.
TEST(VaeGradient, WholeLossMatchesFiniteDifferencesForEveryParameter) {
  ModelConfig model;
  model.input = 13;
  model.hidden = {9, 6};
  model.latent = 3;
  model.beta = 1.3f;
  const int rows = 4;
  ReferenceVae<double> vae(model, rows);
  const ParamLayout& layout = vae.layout();
  Vec params(layout.total, 0.0);
  init_params(layout, 17, params.data());
  std::mt19937_64 rng(2);
  const Vec x = random_vec(rows * model.input, rng, 0, 1);
  auto loss = [&] {
    const LossSums s = vae.run(rows, x.data(), 99, 5, params.data(), nullptr);
    return s.reconstruction + model.beta * s.kl;
  };
  Vec grads(layout.total, 0.0);
  vae.run(rows, x.data(), 99, 5, params.data(), grads.data());
  expect_gradient_matches("dparams", params, grads, loss);
}

}  // namespace
}  // namespace vae
