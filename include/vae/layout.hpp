// The named layout of the flat parameter buffer: every linear layer's weight [out, in] and bias
// [out] at a fixed offset, and a BatchNorm layer's weight and bias (gamma, beta [out]) after them.
// Parameters, gradients and both Adam moments share this one layout, so Adam is one sweep and a
// checkpoint can name each tensor; init_params draws the initial values. BatchNorm's running
// statistics are no parameters (Adam never sees them): they have a small flat buffer of their own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vae/config.hpp"

namespace vae {

// One linear layer and what follows it: y = activation(BatchNorm(x · Wᵀ + b)), either part optional.
struct LinearSlot {
  std::string name;  // "encoder.0", "head", "decoder.0", "output"
  int in = 0, out = 0;
  bool relu = false;  // a plain ReLU right after the linear, which the CUDA kernels fuse
  Activation activation = Activation::kIdentity;  // after the BatchNorm, or after the linear without one
  float negative_slope = 0;                       // kLeakyReLU's
  bool batch_norm = false;
  int64_t weight_offset = 0, bias_offset = 0;
  // With batch_norm: gamma and beta [out] in the parameters, running mean and variance [out] in the
  // running statistics; -1 otherwise.
  int64_t bn_weight_offset = -1, bn_bias_offset = -1;
  int64_t running_mean_offset = -1, running_var_offset = -1;
};

struct ParamLayout {
  // Forward order: encoder layers, the head (mu ‖ logvar), decoder layers, the output (logits).
  std::vector<LinearSlot> layers;
  int head_index = 0;
  int64_t total = 0;          // parameters, padding included
  int64_t running_total = 0;  // running statistics (BatchNorm), padding included

  int head() const { return head_index; }
  int first_decoder() const { return head_index + 1; }
  int output() const { return static_cast<int>(layers.size()) - 1; }
  bool has_batch_norm() const { return running_total > 0; }

  // Trainable values, padding excluded.
  int64_t parameter_count() const {
    int64_t count = 0;
    for (const LinearSlot& l : layers) count += static_cast<int64_t>(l.in) * l.out + l.out + (l.batch_norm ? 2 * l.out : 0);
    return count;
  }
};

// Each tensor starts on a 32-element (128-byte) boundary so vector loads never straddle tensors.
inline constexpr int64_t kTensorAlignment = 32;

ParamLayout make_layout(const ModelConfig& model);

// PyTorch's nn.Linear initialisation into params [layout.total]: weights and biases uniform in
// ±1/sqrt(fan_in), drawn from Philox keyed by seed so that a run is reproducible from its seed
// alone. Padding is left as it is.
template <typename T>
void init_params(const ParamLayout& layout, uint64_t seed, T* params);

// BatchNorm1d's initial running statistics into running [layout.running_total]: mean 0, variance 1
// (padding 0).
template <typename T>
void init_running_stats(const ParamLayout& layout, T* running);

}  // namespace vae
