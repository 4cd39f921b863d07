// Adam (or AdamW) on the GPU: one launch over the whole flat parameter buffer. The step number is
// read from device memory and the bias corrections are computed on the device, so the launch can
// sit inside a captured CUDA graph whose replays each advance the step.
#include <algorithm>

#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"

namespace vae::cuda {
namespace {

constexpr int kThreads = 256;
// Blocks per SM for two full waves (8 resident blocks of 256 threads each); past that, more blocks
// only add scheduling, and the grid-stride loop covers any n.
constexpr int64_t kBlocksPerMultiprocessor = 2 * 8;

// Scalar grid-stride loop: each element is read and written once, so the kernel is bound by memory
// traffic and plain coalesced float accesses already stream it. Every thread derives the
// coefficients itself (two double pows): cheaper and simpler than a shared-memory broadcast.
__global__ void adam_step_kernel(int64_t n, AdamHyper hyper, const long long* __restrict__ step,
                                 const float* __restrict__ grads, float* __restrict__ params, float* __restrict__ m,
                                 float* __restrict__ v) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (first >= n) return;
  const AdamCoefficients<float> coefficients = adam_coefficients<float>(hyper, *step);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = first; i < n; i += stride) {
    float param = params[i], first_moment = m[i], second_moment = v[i];
    adam_update(grads[i], param, first_moment, second_moment, coefficients);
    params[i] = param;
    m[i] = first_moment;
    v[i] = second_moment;
  }
}

}  // namespace

void adam_step(int64_t n, const AdamHyper& hyper, const long long* step, const float* grads, float* params,
               float* m, float* v, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t blocks = std::min((n + kThreads - 1) / kThreads, kBlocksPerMultiprocessor * multiprocessor_count());
  launch_kernel(adam_step_kernel, static_cast<unsigned int>(blocks), kThreads, stream, n, hyper, step, grads, params, m,
                v);
}

}  // namespace vae::cuda
