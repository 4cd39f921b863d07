// Measurements to JSON and to markdown. The tables are built from the rows alone, so a report
// merged from several runs (ours, PyTorch's) renders the same way as a single run's.
#include "report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <tuple>

#include "bench_stats.hpp"
#include "vae/error.hpp"

namespace vae::bench {
namespace {

using RowKey = std::tuple<std::string, std::string, std::string>;  // op, shape, precision

RowKey row_key(const Measurement& m) { return {m.op, m.shape, m.precision}; }

nlohmann::json optional_json(const std::optional<double>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

std::optional<double> optional_from(const nlohmann::json& row, const char* key) {
  if (!row.contains(key) || row[key].is_null()) return std::nullopt;
  return row[key].get<double>();
}

// Microseconds for ops, milliseconds for steps, seconds for epochs: three significant-ish digits.
std::string format_time(double us) {
  if (us < 1e3) return fmt::format("{:.1f} µs", us);
  if (us < 1e6) return fmt::format("{:.2f} ms", us / 1e3);
  return fmt::format("{:.3f} s", us / 1e6);
}

template <typename T>
void append_unique(std::vector<T>& list, const T& value) {
  if (std::find(list.begin(), list.end(), value) == list.end()) list.push_back(value);
}

std::string table_for_group(const std::string& group, const std::vector<Measurement>& results) {
  std::vector<RowKey> rows;
  std::vector<std::string> impls;
  for (const Measurement& m : results) {
    if (m.group != group) continue;
    append_unique(rows, row_key(m));
    append_unique(impls, m.impl);
  }
  // "ours" leads whatever order the rows came in: it is what every ratio refers to.
  std::stable_partition(impls.begin(), impls.end(), [](const std::string& impl) { return impl == "ours"; });

  // The share column only where ours has shares (per-op rows; epochs have none).
  const bool shares = std::any_of(results.begin(), results.end(), [&](const Measurement& m) {
    return m.group == group && m.impl == "ours" && m.roofline_share.has_value();
  });

  std::string text = fmt::format("### {}\n\n| op | shape | precision |", group);
  for (const std::string& impl : impls) text += fmt::format(" {} |", impl);
  text += shares ? " ours' roofline share |\n|---|---|---|" : "\n|---|---|---|";
  for (size_t i = 0; i < impls.size(); ++i) text += "---|";
  text += shares ? "---|\n" : "\n";
  for (const RowKey& key : rows) {
    const auto& [op, shape, precision] = key;
    text += fmt::format("| {} | {} | {} |", op, shape, precision);
    std::string share = "–";
    for (const std::string& impl : impls) {
      const auto found = std::find_if(results.begin(), results.end(), [&](const Measurement& m) {
        return m.group == group && m.impl == impl && row_key(m) == key;
      });
      if (found == results.end()) {
        text += " – |";
        continue;
      }
      text += fmt::format(" {}", format_time(found->median_us));
      if (impl != "ours" && found->ratio_to_ours) text += fmt::format(" ({:.2f}×)", *found->ratio_to_ours);
      text += " |";
      if (impl == "ours" && found->roofline_share) share = fmt::format("{:.0f}%", 100.0 * *found->roofline_share);
    }
    text += shares ? fmt::format(" {} |\n", share) : std::string("\n");
  }
  return text;
}

}  // namespace

void fill_ratios(std::vector<Measurement>& results) {
  for (Measurement& m : results) {
    const auto ours = std::find_if(results.begin(), results.end(), [&](const Measurement& o) {
      return o.impl == "ours" && o.group == m.group && row_key(o) == row_key(m);
    });
    if (ours != results.end() && ours->median_us > 0) m.ratio_to_ours = slowdown_vs_ours(m.median_us, ours->median_us);
  }
}

nlohmann::json to_json(const DeviceInfo& device, const std::string& commit, const std::vector<Measurement>& results) {
  nlohmann::json report = {
      {"device", device.name},
      {"driver", device.driver},
      {"clocks",
       {{"sm_count", device.sm_count},
        {"sm_clock_khz", device.sm_clock_khz},
        {"memory_clock_khz", device.memory_clock_khz},
        {"bus_width_bits", device.bus_width_bits},
        {"l2_bytes", device.l2_bytes}}},
      {"commit", commit},
      {"results", nlohmann::json::array()}};
  for (const Measurement& m : results) {
    nlohmann::json row = {{"group", m.group},
                          {"op", m.op},
                          {"shape", m.shape},
                          {"impl", m.impl},
                          {"precision", m.precision},
                          {"median_us", m.median_us},
                          {"ratio_to_ours", optional_json(m.ratio_to_ours)},
                          {"roofline_share", optional_json(m.roofline_share)}};
    for (const auto& [key, value] : m.extra) row[key] = value;
    report["results"].push_back(std::move(row));
  }
  return report;
}

std::vector<Measurement> measurements_from_json(const nlohmann::json& report) {
  static const char* const kTextKeys[] = {"group", "op", "shape", "impl", "precision"};
  if (!report.contains("results") || !report["results"].is_array()) throw Error("report has no \"results\" array");
  std::vector<Measurement> results;
  for (const nlohmann::json& row : report["results"]) {
    for (const char* key : kTextKeys)
      if (!row.contains(key) || !row[key].is_string()) throw Error(fmt::format("report row lacks \"{}\"", key));
    if (!row.contains("median_us") || !row["median_us"].is_number()) throw Error("report row lacks \"median_us\"");
    Measurement m;
    m.group = row["group"];
    m.op = row["op"];
    m.shape = row["shape"];
    m.impl = row["impl"];
    m.precision = row["precision"];
    m.median_us = row["median_us"];
    m.ratio_to_ours = optional_from(row, "ratio_to_ours");
    m.roofline_share = optional_from(row, "roofline_share");
    for (const auto& [key, value] : row.items())
      if (value.is_number() && key != "median_us" && key != "ratio_to_ours" && key != "roofline_share")
        m.extra[key] = value.get<double>();
    results.push_back(std::move(m));
  }
  return results;
}

std::string to_markdown(const std::vector<Measurement>& results) {
  std::vector<std::string> groups;
  for (const Measurement& m : results) append_unique(groups, m.group);
  std::string text =
      "Medians; in brackets, each implementation's time over ours on the same row (above 1×: ours is faster).\n";
  for (const std::string& group : groups) text += fmt::format("\n{}", table_for_group(group, results));
  return text;
}

}  // namespace vae::bench
