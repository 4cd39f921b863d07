// Adam against steps worked out by hand from torch.optim.Adam's update rule:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;  p -= lr/(1-b1^t) · m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Computed in double (as here) the engine follows these formulas to double rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "vae/reference_ops.hpp"

namespace vae {
namespace {

const double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;

TEST(Adam, TwoStepsWorkedByHand) {
  AdamHyper hyper;
  hyper.lr = 0.1;
  const double lr = 0.1;
  double p = 1.0, m = 0.0, v = 0.0;
  // Step 1, g = 0.5: m = (1-b1) g, v = (1-b2) g²; the bias-corrected ratio is g/|g| = 1, so p moves by lr.
  double g = 0.5;
  ref::adam_step<double>(1, hyper, 1, &g, &p, &m, &v);
  const double m1 = (1 - kBeta1) * 0.5, v1 = (1 - kBeta2) * 0.25;
  const double p1 = 1.0 - lr / (1 - kBeta1) * m1 / (std::sqrt(v1) / std::sqrt(1 - kBeta2) + kEps);
  EXPECT_NEAR(m, m1, 1e-15);
  EXPECT_NEAR(v, v1, 1e-15);
  EXPECT_NEAR(p, p1, 1e-12);
  EXPECT_NEAR(p, 0.9, 1e-7);
  // Step 2, g = -0.25, with 1 - b1² and 1 - b2² as the bias corrections.
  g = -0.25;
  ref::adam_step<double>(1, hyper, 2, &g, &p, &m, &v);
  const double m2 = kBeta1 * m1 + (1 - kBeta1) * -0.25, v2 = kBeta2 * v1 + (1 - kBeta2) * 0.0625;
  const double p2 = p1 - lr / (1 - kBeta1 * kBeta1) * m2 /
                             (std::sqrt(v2) / std::sqrt(1 - kBeta2 * kBeta2) + kEps);
  EXPECT_NEAR(m, m2, 1e-15);
  EXPECT_NEAR(v, v2, 1e-15);
  EXPECT_NEAR(p, p2, 1e-12);
  // In decimals: m2 = 0.02, v2 = 0.00031225, p2 = 0.9 - (0.1/0.19)(0.02)/(0.0176706/0.0447102) = 0.873366.
  EXPECT_NEAR(p, 0.873366, 1e-6);
}

TEST(Adam, L2WeightDecayIsAddedToTheGradient) {
  AdamHyper hyper;
  hyper.lr = 0.01;
  hyper.weight_decay = 0.5;
  double p = 2.0, m = 0, v = 0, g = 0.0;
  // g_eff = 0 + 0.5 * 2 = 1, first step moves p by lr * 1 / (1 + eps).
  ref::adam_step<double>(1, hyper, 1, &g, &p, &m, &v);
  EXPECT_NEAR(m, 1 - kBeta1, 1e-15);
  EXPECT_NEAR(p, 2.0 - 0.01 / (1 + kEps), 1e-12);
}

TEST(Adam, DecoupledWeightDecayShrinksTheParameterFirst) {
  AdamHyper hyper;
  hyper.lr = 0.01;
  hyper.weight_decay = 0.5;
  hyper.decoupled = true;
  double p = 2.0, m = 0, v = 0, g = -3.0;
  // AdamW: p = 2 (1 - 0.01 * 0.5) = 1.99, then the plain step with g = -3 moves it up by lr.
  ref::adam_step<double>(1, hyper, 1, &g, &p, &m, &v);
  const double lr = 0.01, decay = 1 - lr * 0.5;
  EXPECT_NEAR(p, 2.0 * decay + lr * 3 / (3 + kEps), 1e-12);
}

TEST(Adam, ZeroGradientLeavesPaddingUntouched) {
  // The flat buffers hold padding between tensors; its gradient is zero and must stay inert.
  AdamHyper hyper;
  std::vector<float> p(64, 0.0f), g(64, 0.0f), m(64, 0.0f), v(64, 0.0f);
  for (long long step = 1; step <= 3; ++step) ref::adam_step<float>(64, hyper, step, g.data(), p.data(), m.data(), v.data());
  for (float x : p) EXPECT_EQ(x, 0.0f);
}

TEST(Adam, FlatBufferUpdateEqualsPerElementUpdates) {
  AdamHyper hyper;
  const int n = 1000;
  std::vector<float> p(n), g(n), m(n, 0.0f), v(n, 0.0f);
  for (int i = 0; i < n; ++i) {
    p[i] = std::sin(0.1f * i);
    g[i] = std::cos(0.37f * i);
  }
  std::vector<float> p1 = p, m1 = m, v1 = v;
  ref::adam_step<float>(n, hyper, 1, g.data(), p.data(), m.data(), v.data());
  for (int i = 0; i < n; ++i) ref::adam_step<float>(1, hyper, 1, &g[i], &p1[i], &m1[i], &v1[i]);
  EXPECT_EQ(p, p1);
  EXPECT_EQ(m, m1);
  EXPECT_EQ(v, v1);
}

}  // namespace
}  // namespace vae
