// The benchmark harness's CPU-side arithmetic, which decides what its reports claim: medians, the
// FLOP and byte counts of each op, Hopper's peaks from its runtime-reported clocks, roofline
// shares, and the JSON and markdown a report is written as.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "bench_stats.hpp"
#include "report.hpp"
#include "roofline.hpp"
#include "vae/error.hpp"

namespace vae::bench {
namespace {

TEST(BenchStats, MedianOfOddAndEvenCounts) {
  EXPECT_DOUBLE_EQ(median({5, 1, 3}), 3);
  EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_DOUBLE_EQ(median({7}), 7);
  EXPECT_THROW(median({}), Error);
}

TEST(BenchStats, MinimumAndPercentiles) {
  const std::vector<double> samples = {10, 20, 30, 40, 50};
  EXPECT_DOUBLE_EQ(minimum(samples), 10);
  EXPECT_DOUBLE_EQ(percentile(samples, 0), 10);
  EXPECT_DOUBLE_EQ(percentile(samples, 100), 50);
  EXPECT_DOUBLE_EQ(percentile(samples, 25), 20);
  EXPECT_DOUBLE_EQ(percentile(samples, 90), 46);  // between 40 and 50, as numpy interpolates
  EXPECT_THROW(percentile(samples, 101), Error);
}

TEST(BenchStats, SlowdownIsOtherOverOurs) {
  EXPECT_DOUBLE_EQ(slowdown_vs_ours(30, 10), 3);
  EXPECT_TRUE(std::isnan(slowdown_vs_ours(30, 0)));
}

// The first layer, 784 -> 400 at batch 128, counted by hand.
TEST(Roofline, FirstLayerForwardCounts) {
  const OpCost c = linear_forward_cost(128, 784, 400, /*pixel_input=*/true);
  EXPECT_DOUBLE_EQ(c.flops, 2.0 * 128 * 784 * 400);  // 80,281,600
  // pixels 100,352 + weights 1,254,400 + bias 1,600 + outputs 204,800
  EXPECT_DOUBLE_EQ(c.bytes, 1'561'152);
  const OpCost f = linear_forward_cost(128, 784, 400, /*pixel_input=*/false);
  EXPECT_DOUBLE_EQ(f.bytes, 1'561'152 + 3 * 100'352);  // the same input as floats
}

TEST(Roofline, FirstLayerBackwardCounts) {
  // No dx for pixels: dW GEMM plus the bias sums.
  const OpCost c = linear_backward_cost(128, 784, 400, /*relu=*/true, /*pixel_input=*/true);
  EXPECT_DOUBLE_EQ(c.flops, 80'281'600.0 + 51'200);
  // pixels 100,352 + dy 204,800 + y 204,800 + dW 1,254,400 + db 1,600
  EXPECT_DOUBLE_EQ(c.bytes, 1'765'952);
  // A hidden layer adds the dx GEMM, reading W and writing dx.
  const OpCost h = linear_backward_cost(128, 784, 400, /*relu=*/true, /*pixel_input=*/false);
  EXPECT_DOUBLE_EQ(h.flops, 2 * 80'281'600.0 + 51'200);
  EXPECT_DOUBLE_EQ(h.bytes, 1'765'952 + 3 * 100'352 + 1'254'400 + 401'408);
}

TEST(Roofline, LossAndAdamCounts) {
  const OpCost loss = bce_kl_cost(128, 784, 20);
  EXPECT_DOUBLE_EQ(loss.flops, 128 * 784 * kBceFlopsPerPixel + 128 * 20 * kKlFlopsPerLatent);
  EXPECT_DOUBLE_EQ(loss.bytes, 128 * 784 * 9.0 + 128 * 40 * 4.0);
  const OpCost adam = adam_cost(1000);
  EXPECT_DOUBLE_EQ(adam.bytes, 28'000);  // 16 read + 12 written per parameter
  EXPECT_DOUBLE_EQ(adam.flops, 1000 * kAdamFlopsPerParameter);
}

// NVIDIA's H100 SXM figures: FP32 66.9 TFLOPS at the 1.98 GHz maximum boost, dense TF32 494.7
// TFLOPS at 1.83 GHz, HBM3 3.35 TB/s; the runtime reports 132 SMs, a 2,619,000 kHz memory clock
// and a 5120-bit bus. The H200 we are lent has the same SMs and clocks, hence the same FLOP rates;
// only its memory is larger and faster.
TEST(Roofline, H100SxmPeaks) {
  const DevicePeaks at_max_boost = device_peaks(132, 1'980'000, 2'619'000, 5120);
  EXPECT_NEAR(at_max_boost.fp32_flops, 66.9e12, 0.01 * 66.9e12);
  EXPECT_NEAR(at_max_boost.bytes_per_second, 3.35e12, 0.01 * 3.35e12);
  const DevicePeaks at_tensor_boost = device_peaks(132, 1'830'000, 2'619'000, 5120);
  EXPECT_NEAR(at_tensor_boost.tf32_flops, 494.7e12, 0.01 * 494.7e12);
  EXPECT_NEAR(at_tensor_boost.fp32_flops, 61.8e12, 0.01 * 61.8e12);  // the same lanes at the lower clock
}

TEST(Roofline, ShareIsBoundOverMeasuredTime) {
  const DevicePeaks peaks{1e12, 8e12, 1e9};
  // Memory-bound: 1e6 bytes at 1 GB/s is 1 ms; measured 4 ms -> 25%.
  EXPECT_DOUBLE_EQ(roofline_share(OpCost{1e6, 1e6}, 4e-3, peaks, Precision::kFp32), 0.25);
  // Compute-bound: 4e9 FLOPs at 1 TFLOP/s is 4 ms (bytes take 1 ms); at TF32's 8 TFLOP/s it is 0.5 ms
  // and the bytes' 1 ms bounds instead.
  EXPECT_DOUBLE_EQ(roofline_share(OpCost{4e9, 1e6}, 8e-3, peaks, Precision::kFp32), 0.5);
  EXPECT_DOUBLE_EQ(roofline_share(OpCost{4e9, 1e6}, 8e-3, peaks, Precision::kTf32), 0.125);
  EXPECT_DOUBLE_EQ(roofline_share(OpCost{1, 1}, 0, peaks, Precision::kFp32), 0);
}

std::vector<Measurement> sample_results() {
  std::vector<Measurement> r = {
      {"op", "linear forward", "784->400 relu, batch 128", "ours", "fp32", 10, {}, 0.4, {}},
      {"op", "linear forward", "784->400 relu, batch 128", "cublas", "fp32", 15, {}, {}, {}},
      {"op", "linear forward", "784->400 relu, batch 128", "cublaslt", "fp32", 12, {}, {}, {}},
      {"op", "linear forward", "400->40, batch 128", "cublas", "fp32", 8, {}, {}, {}},
      {"op", "linear forward", "400->40, batch 128", "ours", "fp32", 4, {}, {}, {}},
      {"epoch", "train epoch", "batch 128, resident", "pytorch eager", "fp32", 2.5e6, {}, {}, {{"test_loss", 250}}},
  };
  fill_ratios(r);
  return r;
}

TEST(Report, RatiosReferToOursOnTheSameRow) {
  const std::vector<Measurement> r = sample_results();
  EXPECT_DOUBLE_EQ(*r[0].ratio_to_ours, 1.0);
  EXPECT_DOUBLE_EQ(*r[1].ratio_to_ours, 1.5);
  EXPECT_DOUBLE_EQ(*r[3].ratio_to_ours, 2.0);
  EXPECT_FALSE(r[5].ratio_to_ours.has_value());  // no "ours" row for it in this set
}

TEST(Report, JsonHasTheSchemaKeysAndRoundTrips) {
  const DeviceInfo device{"NVIDIA H100 80GB HBM3", "13.0", 132, 1'980'000, 2'619'000, 5120, 50 << 20};
  const nlohmann::json j = to_json(device, "abc123", sample_results());
  for (const char* key : {"device", "driver", "clocks", "commit", "results"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["clocks"]["sm_clock_khz"], 1'980'000);
  ASSERT_EQ(j["results"].size(), 6u);
  for (const nlohmann::json& row : j["results"])
    for (const char* key :
         {"group", "op", "shape", "impl", "precision", "median_us", "ratio_to_ours", "roofline_share"})
      EXPECT_TRUE(row.contains(key)) << key;
  EXPECT_TRUE(j["results"][1]["roofline_share"].is_null());
  EXPECT_EQ(j["results"][5]["test_loss"], 250);

  const std::vector<Measurement> back = measurements_from_json(nlohmann::json::parse(j.dump()));
  ASSERT_EQ(back.size(), 6u);
  EXPECT_EQ(back[1].impl, "cublas");
  EXPECT_DOUBLE_EQ(*back[1].ratio_to_ours, 1.5);
  EXPECT_DOUBLE_EQ(*back[0].roofline_share, 0.4);
  EXPECT_DOUBLE_EQ(back[5].extra.at("test_loss"), 250);
  EXPECT_THROW(measurements_from_json(nlohmann::json::parse(R"({"results": [{"group": "op"}]})")), Error);
}

std::vector<std::string> lines_starting_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) lines.push_back(line);
  return lines;
}

TEST(Report, MarkdownHasARowPerOpAndShapeAndAColumnPerImplementation) {
  const std::string md = to_markdown(sample_results());
  EXPECT_EQ(lines_starting_with(md, "### ").size(), 2u);  // the op and epoch groups
  const std::vector<std::string> rows = lines_starting_with(md, "| ");
  // op table: header + 2 rows; epoch table: header + 1 row
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], "| op | shape | precision | ours | cublas | cublaslt | ours' roofline share |");
  EXPECT_EQ(rows[1], "| linear forward | 784->400 relu, batch 128 | fp32 | 10.0 µs | 15.0 µs (1.50×) | 12.0 µs (1.20×) | 40% |");
  EXPECT_EQ(rows[2], "| linear forward | 400->40, batch 128 | fp32 | 4.0 µs | 8.0 µs (2.00×) | – | – |");
  EXPECT_EQ(rows[4], "| train epoch | batch 128, resident | fp32 | 2.500 s |");
  for (const std::string& row : rows)  // every row as wide as its header
    EXPECT_TRUE(std::count(row.begin(), row.end(), '|') == 8 || std::count(row.begin(), row.end(), '|') == 5) << row;
}

}  // namespace
}  // namespace vae::bench
