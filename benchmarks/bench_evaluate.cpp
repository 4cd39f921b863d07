// Importance samples per second of --evaluate's bound on the default model (784-400-20), on the CPU
// reference and, where there is one, the GPU, in this same process: each backend warms up once,
// then the median of --repeats timed evaluations is reported with the GPU's ratio to the CPU. The
// CPU takes the first --cpu-images images only (it is 100x slower); per-sample rates compare.
// --json FILE writes it all.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "bench_stats.hpp"
#include "epoch_timing.hpp"
#include "vae/cuda_device.hpp"
#include "vae/cuda_evaluation.hpp"
#include "vae/evaluation.hpp"
#include "vae/layout.hpp"
#include "vae/version.hpp"

namespace {

struct Rate {
  std::string backend;
  int64_t images = 0;
  double median_seconds = 0;
  double samples_per_second = 0;
  double mean_iwae = 0;  // of the timed images, so that both backends' can be compared
};

Rate time_backend(const std::string& name, vae::EvaluationBackend& backend, const vae::ModelConfig& model,
                  const vae::MnistSplit& split, int K, int repeats) {
  vae::evaluate_model(model, backend, split, K, 1);  // warm-up: first-touch, clocks, caches
  std::vector<double> seconds;
  double iwae = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    iwae = vae::evaluate_model(model, backend, split, K, 1).mean_iwae();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double median = vae::bench::median(seconds);
  return Rate{name, split.count, median, static_cast<double>(split.count) * K / median, iwae};
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir, json_path;
  int K = 100, repeats = 3;
  int64_t gpu_images = 10000, cpu_images = 200;
  CLI::App app{"bench_evaluate: importance samples per second of --evaluate, CPU reference vs GPU"};
  app.add_option("--data", data_dir, "MNIST-format data (default: synthetic)");
  app.add_option("--importance-samples", K, "K")->capture_default_str()->check(CLI::Range(1, vae::kMaxImportanceSamples));
  app.add_option("--gpu-images", gpu_images, "Test images the GPU evaluates")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--cpu-images", cpu_images, "Test images the CPU evaluates")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "Timed evaluations per backend")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--json", json_path, "Write the figures as JSON");
  CLI11_PARSE(app, argc, argv);
  try {
    const vae::MnistData data = vae::bench::load_or_synthesise(data_dir);
    const vae::ModelConfig model;  // the rate does not depend on the weights: the initial ones
    const vae::ParamLayout layout = vae::make_layout(model);
    std::vector<float> params(static_cast<size_t>(layout.total));
    vae::init_params(layout, 1, params.data());
    const std::vector<float> running;

    std::vector<Rate> rates;
    const vae::MnistSplit cpu_split = vae::bench::first_images(data.test, cpu_images);
    vae::ReferenceEvaluation cpu(model, params, running, cpu_split);
    rates.push_back(time_backend(cpu.describe(), cpu, model, cpu_split, K, repeats));
    const vae::CudaDevices devices = vae::query_cuda_devices();
    if (devices.count > 0) {
      const vae::MnistSplit gpu_split = vae::bench::first_images(data.test, gpu_images);
      vae::CudaEvaluation gpu(model, params, running, gpu_split);
      rates.push_back(time_backend(gpu.describe(), gpu, model, gpu_split, K, repeats));
    } else {
      fmt::print("bench_evaluate: no CUDA device ({}); the CPU reference only\n", devices.why_none);
    }
    for (const Rate& r : rates)
      fmt::print("{:28} K = {}  {:6} images  {:9.3f} s  {:12.0f} samples/s  x{:.1f} vs CPU  (mean bound {:.3f})\n",
                 r.backend, K, r.images, r.median_seconds, r.samples_per_second,
                 r.samples_per_second / rates.front().samples_per_second, r.mean_iwae);
    if (!json_path.empty()) {
      nlohmann::json report = {{"version", vae::kVersion}, {"importance_samples", K}, {"repeats", repeats}};
      for (const Rate& r : rates)
        report["results"].push_back({{"backend", r.backend},
                                     {"images", r.images},
                                     {"median_seconds", r.median_seconds},
                                     {"samples_per_second", r.samples_per_second},
                                     {"ratio_to_cpu", r.samples_per_second / rates.front().samples_per_second},
                                     {"mean_iwae", r.mean_iwae}});
      std::ofstream(json_path) << report.dump(1) << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_evaluate: {}\n", e.what());
    return 1;
  }
}
