// A benchmark run's results as data: one Measurement per (op, shape, implementation, precision),
// written as JSON for the record (benchmarks/results/) and as markdown tables for the README. The
// PyTorch script writes the same schema, so its rows merge into the same tables.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace vae::bench {

struct Measurement {
  std::string group;      // "op", "step" or "epoch": one markdown table each
  std::string op;         // "linear forward", "bce+kl", "adam", "train epoch", ...
  std::string shape;      // "784->400 relu, batch 128", "batch 128, resident", ...
  std::string impl;       // "ours" is the reference; others: "cublas", "cublaslt", "pytorch eager", ...
  std::string precision;  // "fp32" or "tf32"
  double median_us = 0;
  std::optional<double> ratio_to_ours;   // this median / ours' median on the same row: above 1, ours is faster
  std::optional<double> roofline_share;  // roofline time bound / median (roofline.hpp)
  std::map<std::string, double> extra;   // e.g. images_per_second, test_loss, max_abs_error
};

// What the figures were measured on: the runtime's own readings, as roofline.hpp takes them.
struct DeviceInfo {
  std::string name;
  std::string driver;  // "13.0", from cudaDriverGetVersion
  int sm_count = 0;
  int sm_clock_khz = 0, memory_clock_khz = 0, bus_width_bits = 0;
  int l2_bytes = 0;
};

// Sets ratio_to_ours on every row that has an "ours" row with the same group, op, shape and precision.
void fill_ratios(std::vector<Measurement>& results);

// {"device", "driver", "clocks", "commit", "results": [...]}; absent optionals are null.
nlohmann::json to_json(const DeviceInfo& device, const std::string& commit, const std::vector<Measurement>& results);
// The "results" of such a report (another run's, or pytorch_baseline.py's); throws vae::Error on
// rows that lack a schema key.
std::vector<Measurement> measurements_from_json(const nlohmann::json& report);

// One table per group: a row per (op, shape, precision) in first-seen order, a column per
// implementation with its median and its ratio to ours, and ours' roofline share.
std::string to_markdown(const std::vector<Measurement>& results);

}  // namespace vae::bench
