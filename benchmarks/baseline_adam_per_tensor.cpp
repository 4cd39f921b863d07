// Two launches per layer over sub-ranges of the flat buffers: the update per element is the same
// as the single launch's, only the launch count and the per-launch tails differ.
#include "baseline_adam_per_tensor.hpp"

#include <utility>

#include "vae/cuda_ops.hpp"

namespace vae::bench {

void adam_per_tensor(const ParamLayout& layout, const AdamHyper& hyper, const long long* step, const float* grads,
                     float* params, float* m, float* v, cudaStream_t stream) {
  for (const LinearSlot& l : layout.layers) {
    const int64_t weights = static_cast<int64_t>(l.in) * l.out;
    for (auto [offset, count] : {std::pair{l.weight_offset, weights}, {l.bias_offset, int64_t{l.out}}})
      cuda::adam_step(count, hyper, step, grads + offset, params + offset, m + offset, v + offset, stream);
  }
}

}  // namespace vae::bench
