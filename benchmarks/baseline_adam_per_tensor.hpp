// Baseline for the optimiser: our Adam kernel launched once per tensor (each weight, each bias), as
// an optimiser over a list of separate tensors does, against one launch over the flat buffer.
#pragma once

#include <cuda_runtime_api.h>

#include "vae/element_math.hpp"
#include "vae/layout.hpp"

namespace vae::bench {

// Same arguments as vae::cuda::adam_step, with the layout naming the tensors in place of n.
void adam_per_tensor(const ParamLayout& layout, const AdamHyper& hyper, const long long* step, const float* grads,
                     float* params, float* m, float* v, cudaStream_t stream);

}  // namespace vae::bench
