// ReferenceTrainer: the epoch loop of the reference backend.
#include "vae/trainer.hpp"

#include <chrono>
#include <numeric>

#include "parallel.hpp"
#include "vae/error.hpp"
#include "vae/noise_streams.hpp"
#include "vae/shuffle.hpp"

namespace vae {

ReferenceTrainer::ReferenceTrainer(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test)
    : config_(config), train_(train), test_(test), model_(config.model, config.batch) {
  if (train.image_size() != config.model.input || test.image_size() != config.model.input)
    throw Error("images have " + std::to_string(train.image_size()) + " pixels but the model expects " +
                std::to_string(config.model.input));
  const auto total = static_cast<size_t>(model_.layout().total);
  params_.assign(total, 0.0f);
  grads_.assign(total, 0.0f);
  adam_m_.assign(total, 0.0f);
  adam_v_.assign(total, 0.0f);
  batch_.resize(static_cast<size_t>(config.batch) * config.model.input);
  init_params(model_.layout(), config.seed, params_.data());
}

void ReferenceTrainer::load_batch(const MnistSplit& split, const uint32_t* indices, int rows) {
  const int pixels = split.image_size();
#pragma omp parallel for schedule(static) if (ref::worth_parallel(static_cast<int64_t>(rows) * pixels))
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = split.pixels.data() + static_cast<size_t>(indices[r]) * pixels;
    float* dst = batch_.data() + static_cast<size_t>(r) * pixels;
    // x / 255 as torchvision's ToTensor computes it.
    for (int p = 0; p < pixels; ++p) dst[p] = static_cast<float>(src[p]) / 255.0f;
  }
}

ref::LossSums ReferenceTrainer::train_batch(const uint32_t* indices, int rows) {
  if (rows < 1 || rows > config_.batch)
    throw Error("train_batch: " + std::to_string(rows) + " rows, expected 1 to " + std::to_string(config_.batch));
  load_batch(train_, indices, rows);
  ++step_;
  const ref::LossSums loss =
      model_.run(rows, batch_.data(), config_.seed, train_stream(step_), params_.data(), grads_.data());
  ref::adam_step(static_cast<int64_t>(params_.size()), config_.adam, step_, grads_.data(), params_.data(),
                 adam_m_.data(), adam_v_.data());
  return loss;
}

EpochStats ReferenceTrainer::train_epoch(const std::function<void(int, int, double)>& on_batch) {
  ++epoch_;
  const auto count = static_cast<uint32_t>(train_.count);
  const std::vector<uint32_t> order = shuffled_indices(count, config_.seed, static_cast<uint64_t>(epoch_));
  const int batches = static_cast<int>((count + config_.batch - 1) / config_.batch);
  const auto start = std::chrono::steady_clock::now();
  double bce = 0, kl = 0;
  for (int b = 0; b < batches; ++b) {
    const uint32_t first = static_cast<uint32_t>(b) * config_.batch;
    // The last batch is partial when the batch size does not divide the data set: train it anyway.
    const int rows = static_cast<int>(std::min<uint32_t>(config_.batch, count - first));
    const ref::LossSums loss = train_batch(order.data() + first, rows);
    bce += loss.bce;
    kl += loss.kl;
    if (on_batch) on_batch(b + 1, batches, (bce + config_.model.beta * kl) / (first + rows));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  EpochStats stats;
  stats.epoch = epoch_;
  stats.step = step_;
  stats.train_bce = bce / count;
  stats.train_kl = kl / count;
  stats.train_loss = stats.train_bce + config_.model.beta * stats.train_kl;
  stats.seconds = seconds;
  stats.images_per_second = count / seconds;
  stats.test_loss = evaluate(epoch_);
  return stats;
}

double ReferenceTrainer::evaluate(int epoch) {
  const auto count = static_cast<uint32_t>(test_.count);
  std::vector<uint32_t> indices(config_.batch);
  double total = 0;
  for (uint32_t first = 0, batch = 0; first < count; first += config_.batch, ++batch) {
    const int rows = static_cast<int>(std::min<uint32_t>(config_.batch, count - first));
    std::iota(indices.begin(), indices.begin() + rows, first);
    load_batch(test_, indices.data(), rows);
    const ref::LossSums loss = model_.run(rows, batch_.data(), config_.seed, eval_stream(epoch, batch),
                                          params_.data(), nullptr);
    total += loss.bce + config_.model.beta * loss.kl;
  }
  return total / count;
}

}  // namespace vae
