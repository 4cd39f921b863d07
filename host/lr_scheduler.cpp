// ReduceLROnPlateau, line for line after PyTorch 1.13's step(), is_better() ('min', 'rel') and
// _reduce_lr(), in double like Python's floats. Compiled without contracting multiply-adds (see
// CMakeLists.txt): a fused old_lr - old_lr * factor would round differently from PyTorch.
#include "vae/lr_scheduler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "vae/error.hpp"

namespace vae {
namespace {

void require(bool ok, const char* setting, double value, const char* range) {
  if (!ok) throw UsageError(fmt::format("ReduceLROnPlateau {}: {} is outside {}", setting, value, range));
}

void validate(const PlateauHyper& h) {
  // PyTorch refuses factor >= 1 only; factor <= 0 would zero or negate the rate.
  require(h.factor > 0.0 && h.factor < 1.0, "factor", h.factor, "(0, 1)");
  require(h.patience >= 0, "patience", h.patience, "0..");
  require(h.threshold >= 0.0 && h.threshold < 1.0, "threshold", h.threshold, "[0, 1)");
  require(h.cooldown >= 0, "cooldown", h.cooldown, "0..");
  require(h.min_lr >= 0.0 && std::isfinite(h.min_lr), "min_lr", h.min_lr, "[0, inf)");
  require(h.eps >= 0.0 && std::isfinite(h.eps), "eps", h.eps, "[0, inf)");
}

void validate_lr(double lr) { require(lr > 0.0 && std::isfinite(lr), "lr", lr, "(0, inf)"); }

}  // namespace

ReduceLROnPlateau::ReduceLROnPlateau(const PlateauHyper& hyper, double initial_lr) : hyper_(hyper) {
  validate(hyper_);
  validate_lr(initial_lr);
  state_.lr = initial_lr;
}

ReduceLROnPlateau::ReduceLROnPlateau(const PlateauHyper& hyper, const PlateauState& restored)
    : hyper_(hyper), state_(restored) {
  validate(hyper_);
  validate_lr(state_.lr);
  require(!std::isnan(state_.best), "state best", state_.best, "the numbers (never NaN)");
  require(state_.num_bad_epochs >= 0, "state num_bad_epochs", state_.num_bad_epochs, "0..");
  require(state_.cooldown_counter >= 0, "state cooldown_counter", state_.cooldown_counter, "0..");
  require(state_.last_epoch >= 0, "state last_epoch", state_.last_epoch, "0..");
}

double ReduceLROnPlateau::step(double metric) {
  PlateauState& s = state_;
  ++s.last_epoch;
  // is_better: a < best * (1 - threshold), the product formed as PyTorch does (rel_epsilon first).
  const double rel_epsilon = 1.0 - hyper_.threshold;
  if (metric < s.best * rel_epsilon) {
    s.best = metric;
    s.num_bad_epochs = 0;
  } else {
    ++s.num_bad_epochs;
  }
  if (s.cooldown_counter > 0) {
    --s.cooldown_counter;
    s.num_bad_epochs = 0;  // bad epochs during cooldown are ignored
  }
  if (s.num_bad_epochs > hyper_.patience) {
    const double old_lr = s.lr;
    const double new_lr = std::max(old_lr * hyper_.factor, hyper_.min_lr);
    if (old_lr - new_lr > hyper_.eps) s.lr = new_lr;
    s.cooldown_counter = hyper_.cooldown;
    s.num_bad_epochs = 0;
  }
  return s.lr;
}

}  // namespace vae
