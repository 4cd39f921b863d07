// The tolerances and comparisons that hold a kernel to its reference op, shared by the GPU tests
// (tests/test_*_gpu.cpp) and their CI counterparts on the CPU emulator (tests/emulation), so that
// both suites apply one standard, written and justified once. Test inputs that several suites draw
// (uniform floats, pixels, encoder statistics) live here too.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <random>
#include <sstream>
#include <vector>

#include "vae/precision.hpp"

namespace vae::kernel_checks {

// ---- GEMM bounds ----------------------------------------------------------------------------------

// Error bound per element of a GEMM: the differences come only from rounding, which is at most a
// small multiple of the unit roundoff times S = Σ_k |a_k b_k| (+|bias|). FP32: the summation order
// differs from the reference, typically √K·2⁻²⁴·S; 1e-5·S holds to K = 4096 with margin. TF32: each
// input is rounded to 10 mantissa bits, a relative error up to 2⁻¹¹ per factor, so up to about
// 2⁻¹⁰·S; 2e-3·S.
inline double gemm_tolerance(Precision precision) { return precision == Precision::kTf32 ? 2e-3 : 1e-5; }

// S for C = A·B where A(m, k) = a[m * lda_m + k * lda_k] and B(k, n) = b[k * ldb_k + n * ldb_n].
inline std::vector<double> abs_products(int m, int n, int k, const std::vector<float>& a, int64_t lda_m,
                                        int64_t lda_k, const std::vector<float>& b, int64_t ldb_k, int64_t ldb_n) {
  std::vector<double> s(static_cast<size_t>(m) * n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int kk = 0; kk < k; ++kk) {
      const double av = std::fabs(a[i * lda_m + kk * lda_k]);
      if (av == 0) continue;
      for (int j = 0; j < n; ++j) s[static_cast<size_t>(i) * n + j] += av * std::fabs(b[kk * ldb_k + j * ldb_n]);
    }
  return s;
}

// |got - want| <= relative * scale[i] + 1e-30 everywhere, and NaN exactly where want is NaN (the
// kernels must keep a NaN as the reference does); names the first mismatches.
inline ::testing::AssertionResult within_scaled(const std::vector<float>& got, const std::vector<float>& want,
                                                const std::vector<double>& scale, double relative) {
  if (got.size() != want.size() || got.size() != scale.size())
    return ::testing::AssertionFailure() << "sizes differ: " << got.size() << ", " << want.size() << ", "
                                         << scale.size();
  size_t failures = 0;
  std::ostringstream first;
  first << std::setprecision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    const bool nan_wanted = std::isnan(want[i]);
    const double allowed = relative * scale[i] + 1e-30;
    const bool ok = nan_wanted ? std::isnan(got[i]) : std::fabs(static_cast<double>(got[i]) - want[i]) <= allowed;
    if (!ok && failures++ < 5)
      first << "\n  [" << i << "] got " << got[i] << ", want " << want[i] << " (allowed " << allowed << ")";
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failures << " of " << got.size() << " elements differ:" << first.str();
}

// ---- loss bounds ----------------------------------------------------------------------------------

// A loss sum's tolerance: each float term is computed with the same expression on both sides, so it
// differs by a few ulp (expf and log1pf are within 2 ulp on the device, fused multiply-adds round
// once) of the largest intermediate in it; the double sums add nothing measurable. So a sum agrees to
// kLossSumRelative of the sum of its terms' intermediate magnitudes (which for BCE and KL, both
// non-negative, is close to the sum itself unless terms cancel inside).
inline constexpr double kLossSumRelative = 1e-6;
inline double bce_magnitude(float logit, float target) { return std::fabs(logit) * (1.0 + target) + 1.0; }
inline double kl_magnitude(float mu, float logvar) {
  return 0.5 * (1.0 + std::fabs(logvar) + static_cast<double>(mu) * mu + std::exp(static_cast<double>(logvar)));
}
// dlogits = sigmoid(l) - t lies in [-1, 1]; sigmoid is within a few ulp of 1 on both sides.
inline constexpr double kDlogitsAbsolute = 1e-6;

// ---- element-wise comparisons ---------------------------------------------------------------------

// |got - want| <= absolute + relative * |want| everywhere (NaN fails); names the first mismatches.
inline ::testing::AssertionResult all_near(const std::vector<float>& got, const std::vector<float>& want,
                                           double relative, double absolute) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "sizes differ: " << got.size() << " vs " << want.size();
  size_t failures = 0;
  std::ostringstream first;
  first << std::setprecision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    const double tolerance = absolute + relative * std::fabs(w);
    if (!(std::fabs(g - w) <= tolerance)) {
      if (failures < 5) first << "\n  [" << i << "] got " << g << ", want " << w << " (tolerance " << tolerance << ")";
      ++failures;
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failures << " of " << got.size() << " elements differ:" << first.str();
}

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// ---- inputs ---------------------------------------------------------------------------------------

inline std::vector<float> uniform_floats(size_t count, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> values(count);
  for (float& x : values) x = dist(rng);
  return values;
}

// Pixels with the two extremes well represented: 0 and 255 are where BCE's target is exact.
inline std::vector<uint8_t> random_pixels(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> pixels(count);
  for (uint8_t& p : pixels) {
    const uint32_t draw = rng();
    p = draw % 4 == 0 ? 0 : draw % 4 == 1 ? 255 : static_cast<uint8_t>((draw >> 8) % 256);
  }
  return pixels;
}

// mu_logvar [rows, 2 * latent]: mu in [-2, 2], logvar in [-3, 2] (sigma up to e), the range a
// training run's encoder produces.
inline std::vector<float> random_mu_logvar(int rows, int latent, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mu(-2.0f, 2.0f), logvar(-3.0f, 2.0f);
  std::vector<float> stats(static_cast<size_t>(rows) * 2 * latent);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < latent; ++j) {
      stats[static_cast<size_t>(r) * 2 * latent + j] = mu(rng);
      stats[static_cast<size_t>(r) * 2 * latent + latent + j] = logvar(rng);
    }
  return stats;
}

}  // namespace vae::kernel_checks

namespace vae {
// Test names and failure messages say "fp32" / "tf32" instead of the enum's bytes.
inline void PrintTo(Precision precision, std::ostream* os) { *os << (precision == Precision::kTf32 ? "tf32" : "fp32"); }
}  // namespace vae
