// ReduceLROnPlateau: lowers the learning rate when a metric stops improving, with PyTorch's
// semantics exactly (torch.optim.lr_scheduler.ReduceLROnPlateau, 1.13, mode 'min', threshold_mode
// 'rel'), so a schedule tuned in PyTorch carries over; tests/parity/plateau_parity.py holds it to that.
#pragma once

#include <limits>

namespace vae {

// The settings, with PyTorch's defaults and its names.
struct PlateauHyper {
  double factor = 0.1;      // lr *= factor on a reduction; in (0, 1)
  int patience = 10;        // bad epochs tolerated: the reduction comes after patience + 1 in a row
  double threshold = 1e-4;  // relative: an improvement needs metric < best * (1 - threshold); in [0, 1)
  int cooldown = 0;         // epochs after a reduction during which bad epochs are not counted
  double min_lr = 0.0;      // floor of the learning rate
  double eps = 1e-8;        // a reduction smaller than this is skipped
};

// Everything an exact resume needs, as plain data (checkpoints store it field by field). The names
// are PyTorch's attributes of the same meaning.
struct PlateauState {
  double best = std::numeric_limits<double>::infinity();  // lowest metric that counted as an improvement
  int num_bad_epochs = 0;    // bad epochs in a row since the last improvement, reduction or cooldown
  int cooldown_counter = 0;  // epochs of cooldown left
  int last_epoch = 0;        // steps taken
  double lr = 0.0;           // the learning rate for the next epoch
};

class ReduceLROnPlateau {
 public:
  // A fresh schedule starting at initial_lr. Throws vae::UsageError naming the setting that is out of
  // range (factor, patience, threshold, cooldown, min_lr, eps, lr).
  ReduceLROnPlateau(const PlateauHyper& hyper, double initial_lr);
  // Continues from a state() taken earlier, with the same hyper-parameters. Throws vae::UsageError on
  // a bad setting or a state no schedule can reach (negative counters, NaN best, lr not positive).
  ReduceLROnPlateau(const PlateauHyper& hyper, const PlateauState& restored);

  // Ends an epoch whose metric (lower is better) was `metric`; returns the learning rate for the next
  // epoch. A NaN metric compares false, so it counts as a bad epoch, as in PyTorch.
  double step(double metric);

  double lr() const { return state_.lr; }
  const PlateauState& state() const { return state_; }
  const PlateauHyper& hyper() const { return hyper_; }

 private:
  PlateauHyper hyper_;
  PlateauState state_;
};

}  // namespace vae
