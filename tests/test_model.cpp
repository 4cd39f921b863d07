// The pieces around the ops: the flat-buffer layout, initialisation, seeded shuffling, the blocked
// GEMMs against naive loops, and the reference step's independence from the thread count.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gemm.hpp"
#include "vae/layout.hpp"
#include "vae/reference_model.hpp"
#include "vae/shuffle.hpp"

namespace vae {
namespace {

TEST(Layout, DefaultModelIsPyTorchsExample) {
  const ParamLayout layout = make_layout(ModelConfig{});
  ASSERT_EQ(layout.layers.size(), 4u);
  const int expected[][2] = {{784, 400}, {400, 40}, {20, 400}, {400, 784}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(layout.layers[i].in, expected[i][0]);
    EXPECT_EQ(layout.layers[i].out, expected[i][1]);
  }
  EXPECT_EQ(layout.layers[0].name, "encoder.0");
  EXPECT_EQ(layout.layers[layout.head()].name, "head");
  EXPECT_EQ(layout.layers[layout.first_decoder()].name, "decoder.0");
  EXPECT_EQ(layout.layers[layout.output()].name, "output");
  EXPECT_TRUE(layout.layers[0].relu && layout.layers[2].relu);
  EXPECT_FALSE(layout.layers[1].relu || layout.layers[3].relu);
}

TEST(Layout, TensorsAreAlignedDisjointAndInsideTheBuffer) {
  ModelConfig model;
  model.hidden = {300, 77, 5};
  model.latent = 9;
  const ParamLayout layout = make_layout(model);
  ASSERT_EQ(layout.layers.size(), 8u);
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (const LinearSlot& l : layout.layers) {
    spans.emplace_back(l.weight_offset, l.weight_offset + static_cast<int64_t>(l.in) * l.out);
    spans.emplace_back(l.bias_offset, l.bias_offset + l.out);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 0; i < spans.size(); ++i) {
    EXPECT_EQ(spans[i].first % kTensorAlignment, 0);
    if (i > 0) EXPECT_LE(spans[i - 1].second, spans[i].first);
  }
  EXPECT_LE(spans.back().second, layout.total);
  // Decoder mirrors the encoder.
  EXPECT_EQ(layout.layers[4].in, 9);
  EXPECT_EQ(layout.layers[4].out, 5);
  EXPECT_EQ(layout.layers[6].out, 300);
  EXPECT_EQ(layout.layers[7].out, 784);
}

TEST(Init, UniformWithinPyTorchsBoundAndSeeded) {
  const ParamLayout layout = make_layout(ModelConfig{});
  std::vector<float> a(layout.total, 0.0f), b(layout.total, 0.0f), c(layout.total, 0.0f);
  init_params(layout, 1, a.data());
  init_params(layout, 1, b.data());
  init_params(layout, 2, c.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (const LinearSlot& l : layout.layers) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(l.in));
    const int64_t n = static_cast<int64_t>(l.in) * l.out;
    double sum = 0, sum_sq = 0;
    float largest = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float w = a[l.weight_offset + i];
      ASSERT_LE(std::fabs(w), bound) << l.name;
      sum += w;
      sum_sq += static_cast<double>(w) * w;
      largest = std::max(largest, std::fabs(w));
    }
    // Uniform(-B, B): mean 0, variance B²/3, and draws reach close to the bound.
    EXPECT_NEAR(sum / n, 0.0, 5 * bound / std::sqrt(3.0 * n)) << l.name;
    EXPECT_NEAR(sum_sq / n, bound * bound / 3, 0.05 * bound * bound) << l.name;
    EXPECT_GT(largest, 0.99f * bound) << l.name;
    for (int j = 0; j < l.out; ++j) ASSERT_LE(std::fabs(a[l.bias_offset + j]), bound) << l.name;
  }
}

TEST(Shuffle, IsAPermutationFixedBySeedAndEpoch) {
  const uint32_t n = 60000;
  const std::vector<uint32_t> a = shuffled_indices(n, 1, 1);
  std::vector<uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < n; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(a, shuffled_indices(n, 1, 1));
  EXPECT_NE(a, shuffled_indices(n, 1, 2));
  EXPECT_NE(a, shuffled_indices(n, 2, 1));
  int fixed_points = 0;
  for (uint32_t i = 0; i < n; ++i) fixed_points += a[i] == i;
  EXPECT_LT(fixed_points, 10);  // a random permutation has one on average
}

TEST(Shuffle, EveryPositionIsEquallyLikely) {
  // Element 0 of a 5-permutation lands in each slot with probability 1/5: over 20,000 epochs each
  // count is 4,000 ± 57 (one sd); 300 is over five.
  const uint32_t n = 5;
  std::vector<int> where(n, 0);
  for (uint64_t epoch = 0; epoch < 20000; ++epoch) {
    const std::vector<uint32_t> p = shuffled_indices(n, 3, epoch);
    where[std::find(p.begin(), p.end(), 0u) - p.begin()]++;
  }
  for (int count : where) EXPECT_NEAR(count, 4000, 300);
}

TEST(Shuffle, BoundedDrawsStayInRange) {
  PhiloxBitStream bits(7, 0);
  for (uint32_t range : {1u, 2u, 3u, 1000u, 0x80000001u, 0xffffffffu})
    for (int i = 0; i < 1000; ++i) ASSERT_LT(bits.below(range), range);
}

// Naive triple loops in double: the plain statement of what each GEMM computes.
TEST(Gemm, BlockedProductsMatchNaiveLoopsOnEveryTail) {
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (int m : {1, 3, 4, 7, 20, 33})
    for (int n : {1, 5, 16, 31, 32, 33, 40, 70})
      for (int k : {1, 4, 17, 20, 64}) {
        std::vector<float> a(m * k), b(k * n), bt(n * k), c(m * n), d(m * n);
        for (float& x : a) x = dist(rng);
        for (float& x : b) x = dist(rng);
        for (int i = 0; i < k; ++i)
          for (int j = 0; j < n; ++j) bt[j * k + i] = b[i * n + j];
        ref::gemm_nn(m, n, k, a.data(), k, 1, b.data(), n, c.data(), n);
        ref::gemm_nt(m, n, k, a.data(), k, bt.data(), k, d.data(), n);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) {
            double expected = 0;
            for (int kk = 0; kk < k; ++kk) expected += static_cast<double>(a[i * k + kk]) * b[kk * n + j];
            ASSERT_NEAR(c[i * n + j], expected, 1e-5 * k) << "nn " << m << "x" << n << "x" << k;
            ASSERT_NEAR(d[i * n + j], expected, 1e-5 * k) << "nt " << m << "x" << n << "x" << k;
          }
      }
}

TEST(Gemm, TransposedViewOfA) {
  // gemm_nn with A given column-major through its strides, as the weight gradient uses it.
  const int m = 6, n = 35, k = 9;
  std::vector<float> at(k * m), b(k * n), c(m * n);
  for (int i = 0; i < k * m; ++i) at[i] = 0.01f * static_cast<float>(i % 37) - 0.2f;
  for (int i = 0; i < k * n; ++i) b[i] = 0.02f * static_cast<float>(i % 23) - 0.3f;
  ref::gemm_nn(m, n, k, at.data(), 1, m, b.data(), n, c.data(), n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double expected = 0;
      for (int kk = 0; kk < k; ++kk) expected += static_cast<double>(at[kk * m + i]) * b[kk * n + j];
      ASSERT_NEAR(c[i * n + j], expected, 1e-5);
    }
}

TEST(ReferenceVae, StepIsBitwiseIndependentOfThreadCount) {
  ModelConfig model;
  const int rows = 37;
  ReferenceVae<float> vae(model, rows);
  std::vector<float> params(vae.layout().total, 0.0f);
  init_params(vae.layout(), 5, params.data());
  std::vector<float> x(rows * model.input);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u) % 256) / 255.0f;
  auto run_with = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> grads(params.size(), 0.0f);
    const LossSums loss = vae.run(rows, x.data(), 1, 1, params.data(), grads.data());
    omp_set_num_threads(saved);
    return std::make_pair(loss.reconstruction + loss.kl, grads);
  };
  const auto one = run_with(1), two = run_with(2), three = run_with(3);
  EXPECT_EQ(one.first, two.first);
  EXPECT_EQ(one.second, two.second);
  EXPECT_EQ(one.second, three.second);
  EXPECT_TRUE(std::isfinite(one.first));
}

}  // namespace
}  // namespace vae
