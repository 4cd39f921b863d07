// ProgressBar: redrawn at most ten times a second so drawing never shows up in the timings.
#include "progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace vae {

ProgressBar::ProgressBar(bool enabled) : enabled_(enabled && isatty(fileno(stdout)) != 0) {}

void ProgressBar::update(const std::string& label, int done, int total, std::optional<double> loss) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done != total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  constexpr int kWidth = 30;
  const int filled = total > 0 ? done * kWidth / total : kWidth;
  fmt::print("\r{} [{}{}] {}/{}", label, std::string(filled, '#'), std::string(kWidth - filled, '.'), done, total);
  if (loss) fmt::print("  loss {:.2f}", *loss);
  std::fflush(stdout);
}

void ProgressBar::clear() {
  if (!enabled_) return;
  fmt::print("\r\033[2K");
  std::fflush(stdout);
}

}  // namespace vae
