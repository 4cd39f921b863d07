// Seconds per epoch of the CPU reference backend on the default model (784-400-20, batch 128).
// Prints the figures and, with --json FILE, writes them for benchmarks/compare_cpu.py, which sets
// them beside PyTorch's example timed on the same cores.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <omp.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "vae/idx.hpp"
#include "vae/omp_wait_policy.hpp"
#include "vae/reference_backend.hpp"
#include "vae/trainer.hpp"
#include "vae/version.hpp"

int main(int argc, char** argv) {
  vae::prefer_passive_omp_waits(argv);
  std::string data_dir = "data/fashion-mnist", json_path;
  int epochs = 2;
  CLI::App app{"bench_reference_epoch: Seconds per epoch of the CPU reference backend"};
  app.add_option("--data", data_dir, "MNIST-format data")->capture_default_str();
  app.add_option("--epochs", epochs, "Timed epochs")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--json", json_path, "Write the figures as JSON");
  CLI11_PARSE(app, argc, argv);
  try {
    const vae::MnistData data = vae::load_mnist_dir(data_dir);
    vae::TrainConfig config;
    vae::Trainer trainer(config, data.train, data.test, std::make_unique<vae::ReferenceBackend>(config));
    std::vector<double> seconds;
    double last_test_loss = 0;
    for (int e = 0; e < epochs; ++e) {
      const vae::EpochStats s = trainer.train_epoch();
      seconds.push_back(s.seconds);
      last_test_loss = s.test_loss;
      fmt::print("epoch {}: {:.2f} s  {:.0f} img/s  train {:.3f}  test {:.3f}\n", s.epoch, s.seconds,
                 s.images_per_second, s.train_loss, s.test_loss);
    }
    std::vector<double> sorted = seconds;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    const int threads = omp_get_max_threads();
    fmt::print("reference backend: median {:.2f} s per epoch ({:.0f} img/s) on {} threads\n", median,
               static_cast<double>(data.train.count) / median, threads);
    if (!json_path.empty()) {
      const nlohmann::json report = {{"engine", "vae_cuda reference"},     {"version", vae::kVersion},
                                     {"threads", threads},                  {"epochs", epochs},
                                     {"seconds_per_epoch", seconds},        {"median_seconds_per_epoch", median},
                                     {"test_loss", last_test_loss}};
      std::ofstream(json_path) << report.dump(1) << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_reference_epoch: {}\n", e.what());
    return 1;
  }
}
