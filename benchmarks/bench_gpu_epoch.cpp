// Seconds per 60,000-image epoch of the GPU runtime on the default model, across batch size (128,
// 1024), data placement (streamed, device-resident), graph replay vs plain launches, FP32 vs TF32.
// Each configuration warms up one epoch, then the median of the timed epochs is reported with its
// ratio to the first configuration measured in this same process. --json FILE writes it all.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "epoch_timing.hpp"
#include "vae/cuda_device.hpp"
#include "vae/version.hpp"

namespace {

struct Result {
  std::string name;
  int batch;
  bool resident, graphs, tf32;
  vae::bench::EpochTiming timing;
};

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir, json_path;
  int epochs = 3;
  CLI::App app{"bench_gpu_epoch: GPU epochs across batch, data placement, graphs and precision"};
  app.add_option("--data", data_dir, "MNIST-format data (default: synthetic)")->capture_default_str();
  app.add_option("--epochs", epochs, "Timed epochs")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--json", json_path, "Write the figures as JSON");
  CLI11_PARSE(app, argc, argv);
  const vae::CudaDevices devices = vae::query_cuda_devices();
  if (devices.count == 0) {
    fmt::print("bench_gpu_epoch: no CUDA device ({}); nothing to measure\n", devices.why_none);
    return 0;
  }
  try {
    const vae::MnistData data = vae::bench::load_or_synthesise(data_dir);
    std::vector<Result> results;
    for (int batch : {128, 1024})
      for (bool resident : {false, true})
        for (bool graphs : {true, false})
          for (bool tf32 : {false, true}) {
            vae::TrainConfig config;
            config.batch = batch;
            config.data = resident ? vae::DataPlacement::kResident : vae::DataPlacement::kStreamed;
            config.cuda_graphs = graphs;
            config.precision = tf32 ? vae::Precision::kTf32 : vae::Precision::kFp32;
            Result r{fmt::format("batch {:4} {:8} {:6} {}", batch, resident ? "resident" : "streamed",
                                 graphs ? "graph" : "plain", tf32 ? "tf32" : "fp32"),
                     batch, resident, graphs, tf32, vae::bench::time_gpu_epochs(config, data, epochs)};
            const double median = r.timing.median_seconds;
            fmt::print("{}  {:8.2f} ms/epoch  {:10.0f} img/s  x{:.2f} vs first\n", r.name, 1e3 * median,
                       r.timing.images_per_second,
                       results.empty() ? 1.0 : results.front().timing.median_seconds / median);
            results.push_back(r);
          }
    if (!json_path.empty()) {
      nlohmann::json report = {{"device", devices.first_name}, {"version", vae::kVersion}, {"epochs_timed", epochs}};
      for (const Result& r : results)
        report["results"].push_back({{"batch", r.batch},
                                     {"data", r.resident ? "resident" : "streamed"},
                                     {"graphs", r.graphs},
                                     {"precision", r.tf32 ? "tf32" : "fp32"},
                                     {"seconds_per_epoch", r.timing.median_seconds},
                                     {"images_per_second", r.timing.images_per_second},
                                     {"ratio_to_first", results.front().timing.median_seconds / r.timing.median_seconds},
                                     {"test_loss", r.timing.final_test_loss}});
      std::ofstream(json_path) << report.dump(1) << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_gpu_epoch: {}\n", e.what());
    return 1;
  }
}
