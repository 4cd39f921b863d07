// The named layout of the flat parameter buffer: every linear layer's weight [out, in] and bias
// [out] at a fixed offset. Parameters, gradients and both Adam moments share this one layout, so
// Adam is one sweep and a checkpoint can name each tensor; init_params draws the initial values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vae/config.hpp"

namespace vae {

struct LinearSlot {
  std::string name;  // "encoder.0", "head", "decoder.0", "output"
  int in = 0, out = 0;
  bool relu = false;
  int64_t weight_offset = 0, bias_offset = 0;
};

struct ParamLayout {
  // Forward order: encoder layers, the head (mu ‖ logvar), decoder layers, the output (logits).
  std::vector<LinearSlot> layers;
  int64_t total = 0;  // elements, padding included

  int head() const { return static_cast<int>(layers.size() - 1) / 2; }
  int first_decoder() const { return head() + 1; }
  int output() const { return static_cast<int>(layers.size()) - 1; }

  // Trainable values, padding excluded.
  int64_t parameter_count() const {
    int64_t count = 0;
    for (const LinearSlot& l : layers) count += static_cast<int64_t>(l.in) * l.out + l.out;
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

}  // namespace vae
