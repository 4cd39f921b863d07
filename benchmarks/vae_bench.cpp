// vae_bench: our kernels and training step against cuBLAS, cuBLASLt, cuDNN (and, merged from
// pytorch_baseline.py, PyTorch) on one GPU in one run. Per-op medians at batch 128, 1024 and 8192,
// whole epochs, each with its ratio to ours and its roofline share; writes JSON and markdown.
// Without a GPU it says so and exits 0, like bench_gpu_epoch.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "benches.hpp"
#include "epoch_timing.hpp"
#include "report.hpp"
#include "vae/cuda_device.hpp"
#include "vae/error.hpp"

namespace {

struct Options {
  std::string json_path, markdown_path, data_dir, commit;
  std::vector<std::string> merge;
  std::vector<std::string> groups = {"linear", "loss", "adam", "step", "epoch"};
  std::vector<int> batches = {128, 1024, 8192};
  int epochs = 3;
  vae::bench::TimingPlan plan;
};

bool wants(const Options& o, const std::string& group) {
  return std::find(o.groups.begin(), o.groups.end(), group) != o.groups.end();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw vae::Error(fmt::format("cannot write {}", path));
}

int run(const Options& o) {
  vae::bench::Harness harness(o.plan);
  const vae::bench::DeviceInfo& device = harness.device();
  fmt::print("{}: {} SMs, SM clock {} MHz, memory clock {} MHz x {} bits, L2 {} MB, driver {}\n", device.name,
             device.sm_count, device.sm_clock_khz / 1000, device.memory_clock_khz / 1000, device.bus_width_bits,
             device.l2_bytes >> 20, device.driver);
  for (int batch : o.batches) {
    if (wants(o, "linear")) vae::bench::bench_linear_layers(harness, batch);
    if (wants(o, "loss")) vae::bench::bench_loss(harness, batch);
    if (wants(o, "step")) vae::bench::bench_steps(harness, batch);
  }
  if (wants(o, "adam")) vae::bench::bench_adam(harness);
  if (wants(o, "epoch")) vae::bench::bench_epochs(harness, vae::bench::load_or_synthesise(o.data_dir), o.epochs);

  std::vector<vae::bench::Measurement>& results = harness.results();
  for (const std::string& path : o.merge) {
    std::ifstream in(path);
    if (!in) throw vae::Error(fmt::format("cannot read {}", path));
    try {
      for (auto& m : vae::bench::measurements_from_json(nlohmann::json::parse(in))) results.push_back(std::move(m));
    } catch (const nlohmann::json::exception& e) {
      throw vae::Error(fmt::format("{}: {}", path, e.what()));
    }
  }
  vae::bench::fill_ratios(results);

  nlohmann::json report = vae::bench::to_json(device, o.commit, results);
  report["peaks"] = {{"fp32_flops", harness.peaks().fp32_flops},
                     {"tf32_flops", harness.peaks().tf32_flops},
                     {"bytes_per_second", harness.peaks().bytes_per_second}};
  report["notes"] = harness.notes();
  std::string markdown = fmt::format("{} (driver {}, commit {})\n\n{}", device.name, device.driver, o.commit,
                                     vae::bench::to_markdown(results));
  for (const std::string& note : harness.notes()) markdown += fmt::format("\n- {}", note);
  if (!o.json_path.empty()) write_file(o.json_path, report.dump(1) + "\n");
  if (!o.markdown_path.empty()) write_file(o.markdown_path, markdown + "\n");
  if (o.json_path.empty() && o.markdown_path.empty()) fmt::print("\n{}\n", markdown);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const char* commit = std::getenv("VAE_COMMIT")) o.commit = commit;
  CLI::App app{"vae_bench: our kernels and step against cuBLAS, cuBLASLt, cuDNN and PyTorch"};
  app.add_option("--json", o.json_path, "Write the report as JSON");
  app.add_option("--markdown", o.markdown_path, "Write the report as markdown tables");
  app.add_option("--merge", o.merge, "Add another report's results (pytorch_baseline.py --json) before the ratios");
  app.add_option("--data", o.data_dir, "MNIST-format data for the epochs (default: synthetic)");
  app.add_option("--epochs", o.epochs, "Timed epochs per configuration")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--batches", o.batches, "Batch sizes for the per-op figures")->capture_default_str();
  app.add_option("--groups", o.groups, "What to measure")
      ->capture_default_str()
      ->check(CLI::IsMember({"linear", "loss", "adam", "step", "epoch"}));
  app.add_option("--warmups", o.plan.warmups, "Untimed repetitions first")->capture_default_str();
  app.add_option("--reps", o.plan.repetitions, "Timed repetitions per figure")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--commit", o.commit, "Commit measured (default: $VAE_COMMIT)");
  CLI11_PARSE(app, argc, argv);
  if (o.commit.empty()) o.commit = "unknown";

  const vae::CudaDevices devices = vae::query_cuda_devices();
  if (devices.count == 0) {
    fmt::print("vae_bench: no CUDA device ({}); nothing to measure\n", devices.why_none);
    return 0;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    fmt::print(stderr, "vae_bench: {}\n", e.what());
    return 1;
  }
}
