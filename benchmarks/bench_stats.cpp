// Order statistics by sorting a copy: a few hundred samples per figure, so clarity beats
// selection algorithms here.
#include "bench_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "vae/error.hpp"

namespace vae::bench {

double percentile(std::vector<double> samples, double p) {
  if (samples.empty()) throw Error("percentile of no samples");
  if (!(p >= 0.0 && p <= 100.0)) throw Error("percentile outside [0, 100]");
  std::sort(samples.begin(), samples.end());
  const double position = p / 100.0 * static_cast<double>(samples.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, samples.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return samples[below] + fraction * (samples[above] - samples[below]);
}

double median(std::vector<double> samples) { return percentile(std::move(samples), 50.0); }

double minimum(const std::vector<double>& samples) {
  if (samples.empty()) throw Error("minimum of no samples");
  return *std::min_element(samples.begin(), samples.end());
}

double slowdown_vs_ours(double other_seconds, double ours_seconds) {
  if (!(ours_seconds > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  return other_seconds / ours_seconds;
}

}  // namespace vae::bench
