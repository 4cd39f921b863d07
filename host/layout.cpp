// Builds the parameter layout from the model config: the encoder widths, the head producing
// mu ‖ logvar, then the mirror-image decoder; and the initial values every backend starts from.
#include "vae/layout.hpp"

#include <fmt/format.h>

#include <cmath>

#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"

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

template <typename T>
void init_params(const ParamLayout& layout, uint64_t seed, T* params) {
  uint64_t tensor = 0;
  // One Philox stream per tensor: adding a layer never changes the draws of the others.
  auto fill_uniform = [&](T* dst, int64_t count, double bound) {
    const uint64_t stream = noise_stream(NoisePurpose::kInit, tensor++);
    for (int64_t group = 0; group * 4 < count; ++group) {
      const Philox4 bits = philox_bits(seed, stream, static_cast<uint64_t>(group));
      for (int lane = 0; lane < 4 && group * 4 + lane < count; ++lane)
        dst[group * 4 + lane] = static_cast<T>((2.0 * uniform_from_bits(bits.v[lane]) - 1.0) * bound);
    }
  };
  for (const LinearSlot& l : layout.layers) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(l.in));
    fill_uniform(params + l.weight_offset, static_cast<int64_t>(l.in) * l.out, bound);
    fill_uniform(params + l.bias_offset, l.out, bound);
  }
}

template void init_params<float>(const ParamLayout&, uint64_t, float*);
template void init_params<double>(const ParamLayout&, uint64_t, double*);

}  // namespace vae
