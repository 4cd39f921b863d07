// Builds the parameter layout from the model config: the encoder widths (and the seed's extra linear
// layer), the head producing mu ‖ logvar, then the mirror-image decoder; and the initial values every
// backend starts from.
#include "vae/layout.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"

namespace vae {
namespace {

int64_t align_up(int64_t n) { return (n + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment; }

}  // namespace

ParamLayout make_layout(const ModelConfig& model) {
  ParamLayout layout;
  auto take = [](int64_t& total, int64_t count) {
    const int64_t offset = total;
    total = align_up(total + count);
    return offset;
  };
  auto add = [&](std::string name, int in, int out, bool hidden) {
    LinearSlot slot;
    slot.name = std::move(name);
    slot.in = in;
    slot.out = out;
    slot.weight_offset = take(layout.total, static_cast<int64_t>(in) * out);
    slot.bias_offset = take(layout.total, out);
    if (hidden) {
      slot.activation = model.activation;
      slot.negative_slope = model.activation == Activation::kLeakyReLU ? model.negative_slope : 0.0f;
      slot.batch_norm = model.batch_norm;
      slot.relu = model.activation == Activation::kReLU && !model.batch_norm;
    }
    if (slot.batch_norm) {
      slot.bn_weight_offset = take(layout.total, out);
      slot.bn_bias_offset = take(layout.total, out);
      slot.running_mean_offset = take(layout.running_total, out);
      slot.running_var_offset = take(layout.running_total, out);
    }
    layout.layers.push_back(std::move(slot));
  };
  int width = model.input;
  for (size_t i = 0; i < model.hidden.size(); ++i) {
    add(fmt::format("encoder.{}", i), width, model.hidden[i], true);
    width = model.hidden[i];
  }
  if (model.encoder_output > 0) {
    add(fmt::format("encoder.{}", model.hidden.size()), width, model.encoder_output, false);
    width = model.encoder_output;
  }
  layout.head_index = static_cast<int>(layout.layers.size());
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
    // BatchNorm1d starts as the identity: weight 1, bias 0 (no draw, so the linear layers' draws
    // are those of the same model without BatchNorm).
    if (l.batch_norm) {
      std::fill_n(params + l.bn_weight_offset, l.out, T(1));
      std::fill_n(params + l.bn_bias_offset, l.out, T(0));
    }
  }
}

template <typename T>
void init_running_stats(const ParamLayout& layout, T* running) {
  std::fill_n(running, layout.running_total, T(0));
  for (const LinearSlot& l : layout.layers)
    if (l.batch_norm) std::fill_n(running + l.running_var_offset, l.out, T(1));
}

template void init_params<float>(const ParamLayout&, uint64_t, float*);
template void init_params<double>(const ParamLayout&, uint64_t, double*);
template void init_running_stats<float>(const ParamLayout&, float*);
template void init_running_stats<double>(const ParamLayout&, double*);

}  // namespace vae
