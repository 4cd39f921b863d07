// The epoch loop, written once for every backend: the seeded order of each epoch, batches streamed
// through the feeder's ring of host slots (or gathered from device-resident data), the partial last
// batch included, then the evaluation on the test split. It also knows where it stands in the data,
// so a run can stop between steps, be checkpointed and resume exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "vae/batch_feeder.hpp"
#include "vae/checkpoint.hpp"
#include "vae/config.hpp"
#include "vae/data_identity.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/lr_scheduler.hpp"
#include "vae/training_backend.hpp"

namespace vae {

struct EpochStats {
  int epoch = 0;          // 1-based
  long long step = 0;     // optimiser steps taken so far
  double train_loss = 0;  // per image: reconstruction + beta * KL, averaged over the epoch
  double train_reconstruction = 0;   // per image
  double train_kl = 0;    // per image
  double test_loss = 0;   // per image, z sampled as in training
  int active_units = 0;   // of the test pass (TrainingBackend::TestPass)
  double lr = 0;          // Adam's learning rate during the epoch
  double images_per_second = 0;
  double seconds = 0;        // wall time of the epoch's training, device work included, evaluation excluded
  bool interrupted = false;  // stopped on request before the epoch's end: no evaluation, no test loss
};

// What train_epoch throws when the loss became non-finite. The message names the step; what happened
// to the checkpoints is for the caller to say, since only it knows which exist.
class NonFiniteLoss : public Error {
 public:
  using Error::Error;
};

class Trainer {
 public:
  Trainer(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test,
          std::unique_ptr<TrainingBackend> backend);

  // Trains the next epoch (or the rest of a resumed one). on_batch(done, total, mean loss so far) is
  // called every kProgressInterval batches, from a snapshot the device sends without being waited
  // for (so a call may come a batch or two after `done`), and after the last batch. Throws
  // NonFiniteLoss naming the step if the loss became non-finite: the snapshots carry the NaN guard,
  // so that is within about two intervals of that step, or at the epoch's end.
  EpochStats train_epoch(const std::function<void(int, int, double)>& on_batch = {});

  // Asked after every step; once it returns true the epoch ends after that step, interrupted.
  void set_stop_request(std::function<bool()> should_stop) { should_stop_ = std::move(should_stop); }

  // Continues from a checkpoint taken by this config: the backend's state, the data position and
  // the learning rate schedule's state.
  // A mid-epoch position on other data than the checkpoint records (or past this epoch's end) is a
  // vae::Error; the caller checks the data first, to name the files (train_command.cpp).
  void resume(const Checkpoint& checkpoint);

  // The training data's identity, computed once here; checkpoint() records it.
  const DataIdentity& data_identity() const { return data_; }

  // Where a checkpoint written now resumes, and what it must contain.
  DataPosition position();
  Checkpoint checkpoint();

  TrainingBackend& backend() { return *backend_; }
  int epoch() const { return epoch_; }

  // Host slots in the streaming ring: enough for the producer to stay a few batches ahead.
  static constexpr int kHostSlots = 4;
  // Batches between progress snapshots (and NaN-guard reads).
  static constexpr int kProgressInterval = 25;

 private:
  TrainConfig config_;
  const MnistSplit& train_;
  const MnistSplit& test_;
  std::unique_ptr<TrainingBackend> backend_;
  DataIdentity data_;
  std::unique_ptr<BatchFeeder> feeder_;  // null with resident data
  std::function<bool()> should_stop_;
  int epoch_ = 0;             // the epoch in progress or last finished
  int batches_done_ = 0;      // of epoch_
  bool epoch_finished_ = true;
  std::optional<DataPosition> resume_at_;  // set by resume(), used by the next train_epoch
  std::optional<ReduceLROnPlateau> plateau_;  // with --lr-schedule plateau
  double lr_ = 0;                             // Adam's learning rate now
};

}  // namespace vae
