// Trainer: one epoch = a seeded order, every batch of it through the backend, then evaluation.
#include "vae/trainer.hpp"

#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <utility>

#include "vae/error.hpp"
#include "vae/shuffle.hpp"

namespace vae {

Trainer::Trainer(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test,
                 std::unique_ptr<TrainingBackend> backend)
    : config_(config), train_(train), test_(test), backend_(std::move(backend)), data_(identify_training_data(train)) {
  if (train.count < 1 || test.count < 1) throw Error("training needs at least one training and one test image");
  if (train.image_size() != config.model.input || test.image_size() != config.model.input)
    throw Error("images have " + std::to_string(train.image_size()) + " pixels but the model expects " +
                std::to_string(config.model.input));
  if (config.model.batch_norm && config.batch < 2)
    throw Error(fmt::format("BatchNorm1d needs at least 2 images per batch, and --batch is {}", config.batch));
  if (config.model.batch_norm && train.count % config.batch == 1)
    throw Error(fmt::format("BatchNorm1d needs at least 2 images per batch, and {} training images in batches of {} "
                            "leave 1 for the last; choose another --batch",
                            train.count, config.batch));
  lr_ = config.adam.lr;
  if (config.lr_schedule == LrSchedule::kPlateau) plateau_.emplace(config.plateau, config.adam.lr);
  const bool resident = config.data == DataPlacement::kResident && backend_->use_resident_data(train);
  if (!resident) {
    const size_t slot_bytes = static_cast<size_t>(config.batch) * train.image_size();
    feeder_ = std::make_unique<BatchFeeder>(train, backend_->host_slots(kHostSlots, slot_bytes), config.batch);
  }
}

void Trainer::resume(const Checkpoint& checkpoint) {
  const DataPosition& at = checkpoint.position;
  if (at.batch != 0 && checkpoint.data && *checkpoint.data != data_)
    throw Error(fmt::format("resume: the checkpoint stands at batch {} of epoch {} of other training data ({})",
                            at.batch, at.epoch, describe_data_change(*checkpoint.data, data_)));
  const std::vector<BatchSpan> spans = plan_batches(static_cast<uint32_t>(train_.count), config_.batch);
  if (at.batch >= static_cast<int>(spans.size()))
    throw Error(fmt::format("resume: the checkpoint stands at batch {} of epoch {}, past the end of an epoch of {} "
                            "batches of this training data",
                            at.batch, at.epoch, spans.size()));
  if (plateau_.has_value() != checkpoint.plateau.has_value())
    throw Error("resume: the checkpoint's learning rate schedule is not this run's");
  backend_->restore(checkpoint.state);
  if (checkpoint.plateau) {
    plateau_.emplace(config_.plateau, *checkpoint.plateau);
    lr_ = plateau_->lr();
    backend_->set_learning_rate(lr_);
  }
  resume_at_ = checkpoint.position;
  epoch_ = checkpoint.position.epoch - 1;
}

DataPosition Trainer::position() {
  if (epoch_finished_) return DataPosition{epoch_ + 1, 0, 0, 0};
  const LossSums sums = backend_->epoch_sums();
  return DataPosition{epoch_, batches_done_, sums.reconstruction, sums.kl};
}

Checkpoint Trainer::checkpoint() {
  Checkpoint c;
  c.config = config_;
  c.position = position();
  c.state = backend_->state();
  c.data = data_;
  if (plateau_) c.plateau = plateau_->state();
  return c;
}

EpochStats Trainer::train_epoch(const std::function<void(int, int, double)>& on_batch) {
  if (!epoch_finished_) throw Error("train_epoch: the previous epoch was interrupted; checkpoint and resume instead");
  ++epoch_;
  const int start_batch = resume_at_ ? resume_at_->batch : 0;
  backend_->set_epoch_sums(resume_at_ ? LossSums{resume_at_->epoch_reconstruction, resume_at_->epoch_kl} : LossSums{});
  resume_at_.reset();

  const auto count = static_cast<uint32_t>(train_.count);
  std::vector<uint32_t> order = shuffled_indices(count, config_.seed, static_cast<uint64_t>(epoch_));
  const std::vector<BatchSpan> spans = plan_batches(count, config_.batch);
  const int batches = static_cast<int>(spans.size());
  const uint32_t start = spans[start_batch].first;
  epoch_finished_ = false;
  batches_done_ = start_batch;

  // The NaN guard and the progress line read the device's running sums as they stood after `done`
  // batches. Inside the epoch they come from snapshots, requested every kProgressInterval batches
  // and taken when they have arrived (a step or so later on a GPU), so the host never waits for
  // the device there, with or without a progress line; at the epoch's end the loop waits once.
  auto report = [&](const LossSums& sums, long long first_nonfinite_step, int done) {
    if (first_nonfinite_step != 0)
      throw NonFiniteLoss(fmt::format("non-finite loss at step {} (epoch {}); training stopped", first_nonfinite_step, epoch_));
    if (on_batch)
      on_batch(done, batches, (sums.reconstruction + config_.model.beta * sums.kl) / (spans[done - 1].first + spans[done - 1].rows));
  };
  int snapshot_done = 0;  // batches done when the snapshot in flight was requested; 0 when none is
  auto after_step = [&](int done) {
    batches_done_ = done;
    if (snapshot_done != 0)
      if (const std::optional<TrainingBackend::Snapshot> snapshot = backend_->take_snapshot())
        report(snapshot->sums, snapshot->first_nonfinite_step, std::exchange(snapshot_done, 0));
    if (snapshot_done == 0 && done % kProgressInterval == 0 && done != batches) {
      backend_->request_snapshot();
      snapshot_done = done;
    }
    return should_stop_ && done != batches && should_stop_();
  };

  const auto started = std::chrono::steady_clock::now();
  bool interrupted = false;
  if (feeder_ == nullptr) {
    backend_->set_epoch_order(order, start);
    for (int b = start_batch; b < batches && !interrupted; ++b) {
      backend_->train_step_resident(spans[b].first, spans[b].rows);
      interrupted = after_step(b + 1);
    }
  } else {
    // A resumed epoch feeds the rest of the order; its batches are the same, as all but the last are full.
    feeder_->start_epoch(std::vector<uint32_t>(order.begin() + start, order.end()));
    while (const std::optional<BatchFeeder::Batch> batch = feeder_->next()) {
      feeder_->release(batch->slot, backend_->train_step(batch->pixels, batch->rows));
      if ((interrupted = after_step(start_batch + batch->index + 1))) break;
    }
  }
  // The one wait of the epoch: the device's last step. A snapshot still in flight has landed with it
  // and is superseded.
  const long long first_nonfinite_step = backend_->first_nonfinite_step();
  if (snapshot_done != 0 && !backend_->take_snapshot())
    throw Error("train_epoch: a progress snapshot had not arrived by the epoch's end");
  const LossSums sums = backend_->epoch_sums();
  report(sums, first_nonfinite_step, batches_done_);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  EpochStats stats;
  stats.epoch = epoch_;
  stats.step = backend_->step();
  stats.seconds = seconds;
  const uint32_t images = spans[batches_done_ - 1].first + spans[batches_done_ - 1].rows;
  stats.images_per_second = (images - start) / seconds;
  stats.train_reconstruction = sums.reconstruction / images;
  stats.train_kl = sums.kl / images;
  stats.train_loss = stats.train_reconstruction + config_.model.beta * stats.train_kl;
  stats.lr = lr_;
  if (interrupted) {
    stats.interrupted = true;
    return stats;
  }
  epoch_finished_ = true;
  const TrainingBackend::TestPass test = backend_->evaluate(test_, epoch_);
  stats.test_loss = test.loss;
  stats.active_units = test.active_units;
  if (plateau_) {  // ReduceLROnPlateau on the validation loss, as the seed's training does
    lr_ = plateau_->step(stats.test_loss);
    backend_->set_learning_rate(lr_);
  }
  return stats;
}

}  // namespace vae
