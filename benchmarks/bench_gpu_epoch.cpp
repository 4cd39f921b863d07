// Seconds per 60,000-image epoch of the GPU runtime on the default model, across batch size (128,
// 1024), data placement (streamed, device-resident), graph replay vs plain launches, FP32 vs TF32.
// Each configuration warms up one epoch, then the median of the timed epochs is reported with its
// ratio to the first configuration measured in this same process. --json FILE writes it all.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "vae/cuda_backend.hpp"
#include "vae/cuda_device.hpp"
#include "vae/idx.hpp"
#include "vae/trainer.hpp"
#include "vae/version.hpp"

namespace {

// Real data when given; otherwise random images of MNIST's shape and count (speed does not depend
// on pixel values).
vae::MnistData load_or_synthesise(const std::string& dir) {
  if (!dir.empty()) return vae::load_mnist_dir(dir);
  vae::MnistData data;
  std::mt19937 rng(1);
  for (auto [split, count] : {std::pair{&data.train, 60000}, {&data.test, 10000}}) {
    split->count = count;
    split->rows = split->cols = 28;
    split->pixels.resize(static_cast<size_t>(count) * 784);
    for (uint8_t& p : split->pixels) p = static_cast<uint8_t>(rng() % 256);
    split->labels.assign(count, 0);
  }
  return data;
}

struct Result {
  std::string name;
  int batch;
  bool resident, graphs, tf32;
  double median_seconds, images_per_second, final_test_loss;
};

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir, json_path;
  int epochs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--data") data_dir = argv[i + 1];
    else if (flag == "--epochs") epochs = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--json") json_path = argv[i + 1];
    else {
      fmt::print(stderr, "usage: bench_gpu_epoch [--data DIR] [--epochs N] [--json FILE]\n");
      return 2;
    }
  }
  const vae::CudaDevices devices = vae::query_cuda_devices();
  if (devices.count == 0) {
    fmt::print("bench_gpu_epoch: no CUDA device ({}); nothing to measure\n", devices.why_none);
    return 0;
  }
  try {
    const vae::MnistData data = load_or_synthesise(data_dir);
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
            vae::Trainer trainer(config, data.train, data.test,
                                 std::make_unique<vae::CudaBackend>(config, data.train, data.test));
            trainer.train_epoch();  // warm-up: graph capture, caches, clocks
            std::vector<double> seconds;
            double test_loss = 0;
            for (int e = 0; e < epochs; ++e) {
              const vae::EpochStats s = trainer.train_epoch();
              seconds.push_back(s.seconds);
              test_loss = s.test_loss;
            }
            std::sort(seconds.begin(), seconds.end());
            const double median = seconds[seconds.size() / 2];
            Result r{fmt::format("batch {:4} {:8} {:6} {}", batch, resident ? "resident" : "streamed",
                                 graphs ? "graph" : "plain", tf32 ? "tf32" : "fp32"),
                     batch, resident, graphs, tf32, median, data.train.count / median, test_loss};
            fmt::print("{}  {:8.2f} ms/epoch  {:10.0f} img/s  x{:.2f} vs first\n", r.name, 1e3 * median,
                       r.images_per_second, results.empty() ? 1.0 : results.front().median_seconds / median);
            results.push_back(r);
          }
    if (!json_path.empty()) {
      nlohmann::json report = {{"device", devices.first_name}, {"version", vae::kVersion}, {"epochs_timed", epochs}};
      for (const Result& r : results)
        report["results"].push_back({{"batch", r.batch},
                                     {"data", r.resident ? "resident" : "streamed"},
                                     {"graphs", r.graphs},
                                     {"precision", r.tf32 ? "tf32" : "fp32"},
                                     {"seconds_per_epoch", r.median_seconds},
                                     {"images_per_second", r.images_per_second},
                                     {"ratio_to_first", results.front().median_seconds / r.median_seconds},
                                     {"test_loss", r.final_test_loss}});
      std::ofstream(json_path) << report.dump(1) << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_gpu_epoch: {}\n", e.what());
    return 1;
  }
}
