// Adam (or AdamW) on the GPU: one launch over the whole flat parameter buffer. The step number is
// read from device memory and the bias corrections are computed on the device, so the launch can
// sit inside a captured CUDA graph whose replays each advance the step.
#include <algorithm>
#include <cstdint>

#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"

namespace vae::cuda {
namespace {

constexpr int kThreads = 256;
// Blocks per SM for two full waves (8 resident blocks of 256 threads each); past that, more blocks
// only add scheduling, and the grid-stride loop covers any n.
constexpr int64_t kBlocksPerMultiprocessor = 2 * 8;

// Grid-stride over the buffer, bound by memory traffic: with kVector, four parameters per
// iteration through 16-byte loads and stores (the launcher checks the alignment), then the scalar
// loop takes the tail. One thread per block derives the step's coefficients (two double pows) and
// shares them, instead of every thread deriving its own.
template <bool kVector>
__global__ void adam_step_kernel(int64_t n, AdamHyper hyper, const long long* __restrict__ step,
                                 const float* __restrict__ grads, float* __restrict__ params, float* __restrict__ m,
                                 float* __restrict__ v) {
  __shared__ AdamCoefficients<float> coefficients;
  if (threadIdx.x == 0) coefficients = adam_coefficients<float>(hyper, *step);
  __syncthreads();
  const AdamCoefficients<float> c = coefficients;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t tail = 0;
  if constexpr (kVector) {
    const int64_t groups = n / 4;
    for (int64_t g = first; g < groups; g += stride) {
      const float4 grad = reinterpret_cast<const float4*>(grads)[g];
      float4 param = reinterpret_cast<float4*>(params)[g];
      float4 first_moment = reinterpret_cast<float4*>(m)[g];
      float4 second_moment = reinterpret_cast<float4*>(v)[g];
      adam_update(grad.x, param.x, first_moment.x, second_moment.x, c);
      adam_update(grad.y, param.y, first_moment.y, second_moment.y, c);
      adam_update(grad.z, param.z, first_moment.z, second_moment.z, c);
      adam_update(grad.w, param.w, first_moment.w, second_moment.w, c);
      reinterpret_cast<float4*>(params)[g] = param;
      reinterpret_cast<float4*>(m)[g] = first_moment;
      reinterpret_cast<float4*>(v)[g] = second_moment;
    }
    tail = groups * 4;
  }
  for (int64_t i = tail + first; i < n; i += stride) {
    float param = params[i], first_moment = m[i], second_moment = v[i];
    adam_update(grads[i], param, first_moment, second_moment, c);
    params[i] = param;
    m[i] = first_moment;
    v[i] = second_moment;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void adam_step(int64_t n, const AdamHyper& hyper, const long long* step, const float* grads, float* params,
               float* m, float* v, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vector = aligned16(grads) && aligned16(params) && aligned16(m) && aligned16(v);
  const int64_t per_thread = vector ? 4 : 1;
  const int64_t threads_needed = (n + per_thread - 1) / per_thread;
  const int64_t blocks =
      std::min((threads_needed + kThreads - 1) / kThreads, kBlocksPerMultiprocessor * multiprocessor_count());
  if (vector)
    launch_kernel(adam_step_kernel<true>, static_cast<unsigned int>(blocks), kThreads, stream, n, hyper, step, grads,
                  params, m, v);
  else
    launch_kernel(adam_step_kernel<false>, static_cast<unsigned int>(blocks), kThreads, stream, n, hyper, step, grads,
                  params, m, v);
}

}  // namespace vae::cuda
