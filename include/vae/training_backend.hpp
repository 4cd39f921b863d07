// What the epoch loop asks of a backend (the CPU reference or the GPU): one optimisation step on a
// batch of host pixels, the running loss sums, evaluation and the parameters. The loop, the data
// order and the streaming are written once, in Trainer, above this seam.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vae/idx.hpp"
#include "vae/training_state.hpp"

namespace vae {

class TrainingBackend {
 public:
  virtual ~TrainingBackend() = default;

  // One line for the user: where the steps run and how.
  virtual std::string describe() const = 0;

  // count host buffers of `bytes` each, owned by the backend, into which batches are gathered
  // (page-locked on the GPU, so copies from them are truly asynchronous).
  virtual std::vector<uint8_t*> host_slots(int count, size_t bytes) = 0;

  // One step on rows images at `pixels` ([rows, image_size] uint8). Returns what must happen before
  // that memory may be overwritten; an empty function when it may be overwritten at once.
  virtual std::function<void()> train_step(const uint8_t* pixels, int rows) = 0;

  // Device-resident data (--data device): the backend keeps the whole split and gathers batch rows
  // of the epoch's order itself. Backends without it return false from use_resident_data.
  virtual bool use_resident_data(const MnistSplit& /*train*/) { return false; }
  // The epoch's order; training resumes at position `start` of it (0 unless resuming mid-epoch).
  virtual void set_epoch_order(const std::vector<uint32_t>& /*order*/, uint32_t /*start*/) {}
  virtual void train_step_resident(uint32_t /*first*/, int /*rows*/) {}

  // Sums over this epoch's steps so far (may wait for the device); set_epoch_sums starts an epoch
  // from zero, or from a checkpoint's sums when resuming mid-epoch.
  virtual LossSums epoch_sums() = 0;
  virtual void set_epoch_sums(const LossSums& sums) = 0;

  // The first step whose loss was not finite, 0 if none: the NaN guard (may wait for the device).
  virtual long long first_nonfinite_step() = 0;

  // The running sums and the NaN guard as they stand after the steps enqueued so far, fetched
  // without waiting for the device: request_snapshot starts the fetch (one at a time; vae::Error if
  // one is already in flight), take_snapshot hands it over once it has arrived and nullopt until
  // then. The epoch loop reads its progress this way, so it never drains the pipeline mid-epoch.
  struct Snapshot {
    LossSums sums;
    long long first_nonfinite_step = 0;
  };
  virtual void request_snapshot() = 0;
  virtual std::optional<Snapshot> take_snapshot() = 0;

  // The evaluation pass over a split: the mean loss per image (reconstruction + beta * KL), ε keyed
  // by the epoch, and from the same pass the active units (count_active_units of evaluation.hpp:
  // latent dimensions whose posterior mean varies over the split by more than 0.01).
  struct TestPass {
    double loss = 0;
    int active_units = 0;
  };
  virtual TestPass evaluate(const MnistSplit& split, int epoch) = 0;

  // Adam's learning rate from the next step on (a schedule's doing, between epochs).
  virtual void set_learning_rate(double lr) = 0;

  // The flat parameter buffer (ParamLayout order) and the number of steps taken.
  virtual std::vector<float> parameters() = 0;
  virtual long long step() const = 0;

  // Everything an exact resume needs, out and back in.
  virtual TrainingState state() = 0;
  virtual void restore(const TrainingState& state) = 0;
};

}  // namespace vae
