// Checks a run's settings before any memory is sized from them.
#include <fmt/format.h>

#include <charconv>

#include "vae/config.hpp"
#include "vae/error.hpp"

namespace vae {

std::optional<std::vector<int>> parse_int_list(const std::string& text, int min_value) {
  std::vector<int> values;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    int value = 0;
    const char* first = text.data() + start;
    const char* last = text.data() + comma;
    const auto [end, err] = std::from_chars(first, last, value);
    if (first == last || err != std::errc() || end != last || value < min_value) return std::nullopt;
    values.push_back(value);
    start = comma + 1;
  }
  return values;
}

std::vector<int> parse_widths(const std::string& text) {
  const auto widths = parse_int_list(text, 1);
  if (!widths) throw UsageError(fmt::format("--hidden: '{}' is not a comma-separated list of positive widths", text));
  return *widths;
}

void validate(const TrainConfig& config) {
  // Bounds keep every buffer size well inside int and memory; they are far above any real use.
  constexpr int kMaxWidth = 1 << 16;
  const ModelConfig& m = config.model;
  if (m.hidden.empty()) throw UsageError("--hidden: needs at least one layer width");
  for (int width : m.hidden)
    if (width < 1 || width > kMaxWidth)
      throw UsageError(fmt::format("--hidden: width {} is outside 1..{}", width, kMaxWidth));
  if (m.latent < 1 || m.latent > kMaxWidth)
    throw UsageError(fmt::format("--latent: {} is outside 1..{}", m.latent, kMaxWidth));
  if (!(m.beta >= 0.0f) || m.beta > 1e6f) throw UsageError(fmt::format("--beta: {} is not in [0, 1e6]", m.beta));
  if (config.epochs < 1) throw UsageError(fmt::format("--epochs: {} is not a positive count", config.epochs));
  if (config.batch < 1 || config.batch > kMaxWidth)
    throw UsageError(fmt::format("--batch: {} is outside 1..{}", config.batch, kMaxWidth));
  if (config.checkpoint_every < 0)
    throw UsageError(fmt::format("--checkpoint-every: {} is negative", config.checkpoint_every));
  if (!(config.adam.weight_decay >= 0.0) || config.adam.weight_decay > 1.0)
    throw UsageError(fmt::format("--weight-decay: {} is not in [0, 1]", config.adam.weight_decay));
  if (!(config.adam.lr > 0.0) || config.adam.lr > 10.0)
    throw UsageError(fmt::format("--lr: {} is not in (0, 10]", config.adam.lr));
}

}  // namespace vae
