// Trainer: one epoch = a seeded order, every batch of it through the backend, then evaluation.
#include "vae/trainer.hpp"

#include <chrono>

#include "vae/error.hpp"
#include "vae/shuffle.hpp"

namespace vae {

Trainer::Trainer(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test,
                 std::unique_ptr<TrainingBackend> backend)
    : config_(config), train_(train), test_(test), backend_(std::move(backend)) {
  if (train.image_size() != config.model.input || test.image_size() != config.model.input)
    throw Error("images have " + std::to_string(train.image_size()) + " pixels but the model expects " +
                std::to_string(config.model.input));
  const bool resident = config.data == DataPlacement::kResident && backend_->use_resident_data(train);
  if (!resident) {
    const size_t slot_bytes = static_cast<size_t>(config.batch) * train.image_size();
    feeder_ = std::make_unique<BatchFeeder>(train, backend_->host_slots(kHostSlots, slot_bytes), config.batch);
  }
}

EpochStats Trainer::train_epoch(const std::function<void(int, int, double)>& on_batch) {
  ++epoch_;
  const auto count = static_cast<uint32_t>(train_.count);
  std::vector<uint32_t> order = shuffled_indices(count, config_.seed, static_cast<uint64_t>(epoch_));
  const std::vector<BatchSpan> spans = plan_batches(count, config_.batch);
  const int batches = static_cast<int>(spans.size());
  auto report = [&](int done, uint32_t images) {
    if (!on_batch || (done % kProgressInterval != 0 && done != batches)) return;
    const ref::LossSums sums = backend_->epoch_sums();
    on_batch(done, batches, (sums.bce + config_.model.beta * sums.kl) / images);
  };

  backend_->reset_epoch_sums();
  const auto start = std::chrono::steady_clock::now();
  if (feeder_ == nullptr) {
    backend_->set_epoch_order(order);
    for (int b = 0; b < batches; ++b) {
      backend_->train_step_resident(spans[b].first, spans[b].rows);
      report(b + 1, spans[b].first + spans[b].rows);
    }
  } else {
    feeder_->start_epoch(std::move(order));
    while (const std::optional<BatchFeeder::Batch> batch = feeder_->next()) {
      feeder_->release(batch->slot, backend_->train_step(batch->pixels, batch->rows));
      report(batch->index + 1, spans[batch->index].first + batch->rows);
    }
  }
  const ref::LossSums sums = backend_->epoch_sums();  // waits for the device's last step
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  EpochStats stats;
  stats.epoch = epoch_;
  stats.step = backend_->step();
  stats.train_bce = sums.bce / count;
  stats.train_kl = sums.kl / count;
  stats.train_loss = stats.train_bce + config_.model.beta * stats.train_kl;
  stats.seconds = seconds;
  stats.images_per_second = count / seconds;
  stats.test_loss = backend_->evaluate(test_, epoch_);
  return stats;
}

}  // namespace vae
