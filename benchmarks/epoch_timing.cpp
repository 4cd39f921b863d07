// The epoch timing both GPU epoch benchmarks share, so that their figures mean the same thing.
#include "epoch_timing.hpp"

#include <algorithm>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "bench_stats.hpp"
#include "vae/cuda_backend.hpp"
#include "vae/trainer.hpp"

namespace vae::bench {

MnistData load_or_synthesise(const std::string& dir) {
  if (!dir.empty()) return load_mnist_dir(dir);
  MnistData data;
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

MnistSplit first_images(const MnistSplit& split, int64_t count) {
  MnistSplit part = split;
  part.count = std::min(count, split.count);
  part.pixels.resize(static_cast<size_t>(part.count) * part.image_size());
  part.labels.resize(static_cast<size_t>(part.count));
  return part;
}

EpochTiming time_gpu_epochs(const TrainConfig& config, const MnistData& data, int epochs) {
  Trainer trainer(config, data.train, data.test, std::make_unique<CudaBackend>(config, data.train, data.test));
  trainer.train_epoch();
  std::vector<double> seconds;
  EpochTiming timing;
  for (int e = 0; e < std::max(1, epochs); ++e) {
    const EpochStats s = trainer.train_epoch();
    seconds.push_back(s.seconds);
    timing.final_test_loss = s.test_loss;
  }
  timing.median_seconds = median(seconds);
  timing.images_per_second = static_cast<double>(data.train.count) / timing.median_seconds;
  return timing;
}

}  // namespace vae::bench
