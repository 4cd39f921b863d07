// Checks a run's settings before any memory is sized from them.
#include <fmt/format.h>

#include <algorithm>
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
  const auto widths = parse_int_list(text, limits::kWidth.min);
  auto fits = [](int width) { return width <= limits::kWidth.max; };
  if (!widths || !std::all_of(widths->begin(), widths->end(), fits))
    throw UsageError(fmt::format("--hidden: '{}' is not a comma-separated list of widths in {}..{}", text,
                                 limits::kWidth.min, limits::kWidth.max));
  return *widths;
}

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::kReLU: return "relu";
    case Activation::kLeakyReLU: return "leaky_relu";
    case Activation::kIdentity: break;
  }
  return "identity";
}

bool parse_activation(const std::string& text, Activation& activation) {
  for (Activation a : {Activation::kReLU, Activation::kLeakyReLU})
    if (text == activation_name(a)) {
      activation = a;
      return true;
    }
  return false;
}

const char* likelihood_name(Likelihood likelihood) {
  return likelihood == Likelihood::kGaussian ? "gaussian" : "bernoulli";
}

bool parse_likelihood(const std::string& text, Likelihood& likelihood) {
  for (Likelihood l : {Likelihood::kBernoulli, Likelihood::kGaussian})
    if (text == likelihood_name(l)) {
      likelihood = l;
      return true;
    }
  return false;
}

void validate(const TrainConfig& config) {
  const ModelConfig& m = config.model;
  if (m.hidden.empty()) throw UsageError("--hidden: needs at least one layer width");
  if (m.hidden.size() > static_cast<size_t>(limits::kHiddenLayers.max))
    throw UsageError(fmt::format("--hidden: {} layers, at most {}", m.hidden.size(), limits::kHiddenLayers.max));
  for (int width : m.hidden) check_range("--hidden", width, limits::kWidth);
  if (m.activation == Activation::kIdentity) throw UsageError("--activation: the hidden layers need one");
  check_range("--negative-slope", static_cast<double>(m.negative_slope), limits::kNegativeSlope);
  check_range("--encoder-output", m.encoder_output, limits::kEncoderOutput);
  check_range("--alpha", static_cast<double>(m.alpha), limits::kAlpha);
  check_range("--latent", m.latent, limits::kWidth);
  check_range("--beta", static_cast<double>(m.beta), limits::kBeta);
  check_range("--epochs", config.epochs, limits::kEpochs);
  check_range("--batch", config.batch, limits::kWidth);
  if (m.batch_norm && config.batch < 2)
    throw UsageError("--batch: BatchNorm1d normalises by the batch's statistics, which needs at least 2 images");
  check_range("--checkpoint-every", config.checkpoint_every, limits::kCheckpointEvery);
  check_range("--weight-decay", config.adam.weight_decay, limits::kWeightDecay);
  check_range("--lr", config.adam.lr, limits::kLr);
  check_range("--plateau-factor", config.plateau.factor, limits::kPlateauFactor);
  if (config.plateau.factor == 1.0) throw UsageError("--plateau-factor: 1 would never lower the learning rate; below 1");
  check_range("--plateau-patience", config.plateau.patience, limits::kPlateauPatience);
  check_range("--plateau-threshold", config.plateau.threshold, limits::kPlateauThreshold);
  if (config.plateau.threshold == 1.0) throw UsageError("--plateau-threshold: 1 would make improvement impossible; below 1");
  check_range("--plateau-cooldown", config.plateau.cooldown, limits::kPlateauCooldown);
  check_range("--min-lr", config.plateau.min_lr, limits::kMinLr);
}

}  // namespace vae
