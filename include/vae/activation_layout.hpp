// The named layout of the activation workspace: where each layer's output and output gradient, ε,
// z and dz sit in one flat buffer sized for a batch, and what each layer reads. Every backend (and
// the benchmark) lays its activations out by it, so the layer-to-buffer mapping is written once.
#pragma once

#include <cstdint>
#include <vector>

#include "vae/layout.hpp"

namespace vae {

// Where a linear layer reads its input [rows, in] and writes dL/d(input).
struct LayerInput {
  bool images = false;  // the batch's images, which are not in the workspace; no input gradient then
  int64_t x = 0, dx = 0;  // otherwise: workspace offsets (floats) of the input and of its gradient
};

struct ActivationLayout {
  int rows = 0;    // the largest batch the workspace holds
  int latent = 0;  // z's width
  int first_decoder = 0;
  // Offsets in elements from the workspace's start; each buffer is [rows, width].
  std::vector<int64_t> out, grad;  // per layer (ParamLayout order): its output and dL/d(output)
  // Per layer with BatchNorm (-1 elsewhere): the linear part's output h and dL/dh [rows, out], and
  // the batch's mean and 1/sqrt(var + eps) per feature [out] from the training forward.
  std::vector<int64_t> pre, pre_grad, batch_mean, batch_invstd;
  int64_t eps = 0, z = 0, dz = 0;  // [rows, latent]
  int64_t total = 0;               // elements, padding included

  // The mapping: layer 0 reads the images (nobody needs dL/dx), the first decoder layer reads z and
  // its input gradient is dz, every other layer reads the previous layer's output and writes that
  // layer's output gradient.
  LayerInput input(int layer) const {
    if (layer == 0) return {true, 0, 0};
    if (layer == first_decoder) return {false, z, dz};
    return {false, out[layer - 1], grad[layer - 1]};
  }
};

// Each buffer starts on a 64-element boundary (256 bytes of float) so every one suits vector loads.
inline constexpr int64_t kActivationAlignment = 64;

// The workspace for batches of up to rows (>= 0) images of this model: each layer's output then its
// gradient in forward order, then ε, z and dz, then what BatchNorm layers keep. Throws vae::Error when rows is negative.
ActivationLayout make_activation_layout(const ParamLayout& layout, int rows);

}  // namespace vae
