// What every backend hands the epoch loop: the loss sums of a batch or an epoch, and the state an
// exact resume needs. Apart from the checkpoint format and the ops, so that the backend seam
// (training_backend.hpp) needs neither.
#pragma once

#include <vector>

namespace vae {

// Loss sums over images: the reconstruction term (-log p(x|z) up to the likelihood's constants: BCE
// with logits summed over the pixels, or alpha times the pixels' mean squared error) and KL (summed
// over the latents). The loss per image is reconstruction + beta * kl.
struct LossSums {
  double reconstruction = 0;
  double kl = 0;
};

// What a backend must hand over (and take back) for an exact resume. Flat buffers in ParamLayout
// order, padding included: params, adam_m and adam_v [layout.total], running_stats
// [layout.running_total] (BatchNorm's running means and variances; empty without BatchNorm).
struct TrainingState {
  std::vector<float> params, adam_m, adam_v;
  std::vector<float> running_stats;
  long long step = 0;  // Adam steps taken
};

}  // namespace vae
