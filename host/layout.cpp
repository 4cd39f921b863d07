// Builds the parameter layout from the model config: the encoder widths, the head producing
// mu ‖ logvar, then the mirror-image decoder.
#include "vae/layout.hpp"

#include <fmt/format.h>

namespace vae {
namespace {

int64_t align_up(int64_t n) { return (n + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment; }

}  // namespace

ParamLayout make_layout(const ModelConfig& model) {
  ParamLayout layout;
  auto add = [&](std::string name, int in, int out, bool relu) {
    LinearSlot slot{std::move(name), in, out, relu, 0, 0};
    slot.weight_offset = layout.total;
    layout.total = align_up(layout.total + static_cast<int64_t>(in) * out);
    slot.bias_offset = layout.total;
    layout.total = align_up(layout.total + out);
    layout.layers.push_back(std::move(slot));
  };
  int width = model.input;
  for (size_t i = 0; i < model.hidden.size(); ++i) {
    add(fmt::format("encoder.{}", i), width, model.hidden[i], true);
    width = model.hidden[i];
  }
  add("head", width, 2 * model.latent, false);
  width = model.latent;
  for (size_t i = 0; i < model.hidden.size(); ++i) {
    const int next = model.hidden[model.hidden.size() - 1 - i];
    add(fmt::format("decoder.{}", i), width, next, true);
    width = next;
  }
  add("output", width, model.input, false);
  return layout;
}

}  // namespace vae
