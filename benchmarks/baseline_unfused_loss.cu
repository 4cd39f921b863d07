// The unfused loss chain's kernels. They use the same element formulas as ours (element_math.hpp),
// so the two differ only in how often they go through memory, which is what this baseline measures.
#include "baseline_unfused_loss.hpp"

#include <algorithm>

#include "vae/cuda_check.hpp"
#include "vae/element_math.hpp"

namespace vae::bench::unfused {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 2048;

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

#define VAE_GRID_STRIDE(i, n)                                                                 \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void sigmoid_kernel(int64_t n, const float* __restrict__ logits, float* __restrict__ probabilities) {
  VAE_GRID_STRIDE(i, n) probabilities[i] = sigmoid(logits[i]);
}

__global__ void bce_kernel(int64_t n, const float* __restrict__ logits, const uint8_t* __restrict__ target,
                           float* __restrict__ bce) {
  VAE_GRID_STRIDE(i, n) bce[i] = bce_with_logits(logits[i], static_cast<float>(target[i]) / 255.0f);
}

__global__ void kl_kernel(int rows, int latent, const float* __restrict__ mu_logvar, float* __restrict__ kl) {
  const int64_t n = static_cast<int64_t>(rows) * latent;
  VAE_GRID_STRIDE(i, n) {
    const int64_t r = i / latent, j = i % latent;
    const float* stats = mu_logvar + r * 2 * latent;  // mu ‖ logvar per row
    kl[i] = kl_term(stats[j], stats[latent + j]);
  }
}

__global__ void gradient_kernel(int64_t n, const float* __restrict__ probabilities, const uint8_t* __restrict__ target,
                                float* __restrict__ dlogits) {
  VAE_GRID_STRIDE(i, n) dlogits[i] = probabilities[i] - static_cast<float>(target[i]) / 255.0f;
}

// A generic sum: each block reduces its grid-stride share in shared memory (in double, as ours
// accumulates) and adds it to *total with one atomic.
__global__ void sum_kernel(int64_t n, const float* __restrict__ values, double* __restrict__ total) {
  __shared__ double partial[kThreads];
  double sum = 0;
  VAE_GRID_STRIDE(i, n) sum += values[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(total, partial[0]);
}

#undef VAE_GRID_STRIDE

}  // namespace

int64_t loss_scratch_floats(int rows, int pixels, int latent) {
  return 2 * static_cast<int64_t>(rows) * pixels + static_cast<int64_t>(rows) * latent;
}

void bce_kl_loss(int rows, int pixels, int latent, const float* logits, const uint8_t* target,
                 const float* mu_logvar, float* dlogits, float* scratch, double* totals, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(rows) * pixels, latents = static_cast<int64_t>(rows) * latent;
  float* probabilities = scratch;
  float* bce = scratch + n;
  float* kl = scratch + 2 * n;
  sigmoid_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, logits, probabilities);
  VAE_CHECK_LAUNCH();
  bce_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, logits, target, bce);
  VAE_CHECK_LAUNCH();
  sum_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, bce, totals);
  VAE_CHECK_LAUNCH();
  kl_kernel<<<blocks_for(latents), kThreads, 0, stream>>>(rows, latent, mu_logvar, kl);
  VAE_CHECK_LAUNCH();
  sum_kernel<<<blocks_for(latents), kThreads, 0, stream>>>(latents, kl, totals + 1);
  VAE_CHECK_LAUNCH();
  if (dlogits != nullptr) {
    gradient_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, probabilities, target, dlogits);
    VAE_CHECK_LAUNCH();
  }
}

}  // namespace vae::bench::unfused
