// Training on the reference backend: owns the flat parameter, gradient and Adam buffers, feeds
// shuffled batches of the data set through ReferenceVae, and evaluates on the test split.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "vae/config.hpp"
#include "vae/idx.hpp"
#include "vae/reference_model.hpp"

namespace vae {

struct EpochStats {
  int epoch = 0;             // 1-based
  long long step = 0;        // Adam steps taken so far
  double train_loss = 0;     // per image: reconstruction + beta * KL, averaged over the epoch
  double train_bce = 0;      // per image
  double train_kl = 0;       // per image
  double test_loss = 0;      // per image, z sampled as in training
  double images_per_second = 0;
  double seconds = 0;        // wall time of the epoch's training (evaluation excluded)
};

class ReferenceTrainer {
 public:
  ReferenceTrainer(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test);

  // One optimisation step on the given images of the training split; returns the batch's sums.
  ref::LossSums train_batch(const uint32_t* indices, int rows);

  // A full pass over the training split in this epoch's seeded order, then the test evaluation.
  // on_batch(done, total, mean loss so far) is called after every batch when given.
  EpochStats train_epoch(const std::function<void(int, int, double)>& on_batch = {});

  // Mean loss per image over the test split, ε keyed by the epoch.
  double evaluate(int epoch);

  const std::vector<float>& params() const { return params_; }
  long long step() const { return step_; }
  int epoch() const { return epoch_; }

 private:
  void load_batch(const MnistSplit& split, const uint32_t* indices, int rows);

  TrainConfig config_;
  const MnistSplit& train_;
  const MnistSplit& test_;
  ReferenceVae<float> model_;
  std::vector<float> params_, grads_, adam_m_, adam_v_;
  std::vector<float> batch_;  // [batch, input] pixels scaled to [0, 1]
  long long step_ = 0;
  int epoch_ = 0;
};

}  // namespace vae
