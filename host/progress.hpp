// A one-line progress bar for an epoch, redrawn in place; silent when stdout is not a terminal so
// that logs and pipes get only the per-epoch lines.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace vae {

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled);
  // Draws label [####....] done/total, then the loss so far when given.
  void update(const std::string& label, int done, int total, std::optional<double> loss = std::nullopt);
  void clear();

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace vae
