// Summary statistics of a benchmark's per-repetition timings. A median is what every report
// shows, since one preempted repetition must not move it; min and percentiles show the spread.
#pragma once

#include <vector>

namespace vae::bench {

// The middle sample, or the mean of the two middle ones for an even count. Throws on no samples.
double median(std::vector<double> samples);
double minimum(const std::vector<double>& samples);
// The p-th percentile (p in [0, 100]), interpolating linearly between the order statistics as
// numpy's default does, so that percentile(s, 50) == median(s).
double percentile(std::vector<double> samples, double p);

// How many times slower `other` is than `ours`: other / ours. Above 1, ours is faster.
double slowdown_vs_ours(double other_seconds, double ours_seconds);

}  // namespace vae::bench
