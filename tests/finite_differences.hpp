// Finite-difference gradient checks in double, shared by the gradient tests. Central differences
// with h = 1e-6 have truncation error ~h² and rounding error ~1e-16/h, so a correct gradient agrees
// to about 1e-8 and a wrong one is off by order one: the bar is 1e-6 relative (absolute below 1).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace vae::testing_support {

using Vec = std::vector<double>;

inline Vec random_vec(size_t n, std::mt19937_64& rng, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Compares analytic[i] with the central difference of loss() in values[i], for every i.
inline void expect_gradient_matches(const char* what, Vec& values, const Vec& analytic,
                                    const std::function<double()>& loss) {
  ASSERT_EQ(values.size(), analytic.size());
  constexpr double h = 1e-6;
  for (size_t i = 0; i < values.size(); ++i) {
    const double saved = values[i];
    values[i] = saved + h;
    const double up = loss();
    values[i] = saved - h;
    const double down = loss();
    values[i] = saved;
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(analytic[i], numeric, 1e-6 * std::max(1.0, std::fabs(numeric))) << what << "[" << i << "]";
  }
}

}  // namespace vae::testing_support
