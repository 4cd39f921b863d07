// What every backend hands the epoch loop: the loss sums of a batch or an epoch, and the state an
// exact resume needs. Apart from the checkpoint format and the ops, so that the backend seam
// (training_backend.hpp) needs neither.
#pragma once

#include <vector>

namespace vae {

// Loss sums over images: reconstruction (BCE with logits, summed over pixels) and KL (summed over
// latents). The training loss is bce + beta * kl.
struct LossSums {
  double bce = 0;
  double kl = 0;
};

// What a backend must hand over (and take back) for an exact resume. Flat buffers in ParamLayout
// order, padding included.
struct TrainingState {
  std::vector<float> params, adam_m, adam_v;
  long long step = 0;  // Adam steps taken
};

}  // namespace vae
