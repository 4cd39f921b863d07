// The reparameterisation on the GPU: z = mu + exp(logvar / 2) ⊙ eps with eps from cuRAND's Philox,
// drawn in the very layout the CPU reference uses (include/vae/philox.hpp), and its backward with
// beta times the KL gradient fused in, so the latent step costs one launch each way.
#include <climits>

#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/device/normal_draws.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"

namespace vae::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks for `work_items` threads of kThreads each; refuses what a 1-D grid cannot hold rather than
// silently truncating (never near in practice: rows * latent is a few thousand).
unsigned int blocks_for(int64_t work_items) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  if (blocks > INT_MAX) throw Error("reparam: too many elements for one launch");
  return static_cast<unsigned int>(blocks);
}

// One thread per group of four consecutive elements i = r * latent + j: curand_normal4 turns one
// Philox block into exactly four normals, so group g owns elements 4g .. 4g+3 and no block is drawn
// twice. curand_init(seed, stream, 4g) is what philox_normal4(seed, stream, g) mirrors on the CPU.
// The stream is read from device memory so that a captured graph draws fresh noise on each replay.
__global__ void reparam_forward_kernel(int64_t count, int latent, uint64_t seed,
                                       const uint64_t* __restrict__ noise_stream,
                                       const float* __restrict__ mu_logvar, float* __restrict__ eps,
                                       float* __restrict__ z) {
  const int64_t group = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = group * 4;
  if (first >= count) return;

  const Normal4 normals = draw_normal4(seed, *noise_stream, static_cast<uint64_t>(group));

#pragma unroll
  for (int lane = 0; lane < 4; ++lane) {
    const int64_t i = first + lane;
    if (i < count) {  // the last group may be partial: its extra normals are dropped, as on the CPU
      const int64_t r = i / latent;
      const int64_t j = i - r * latent;
      const float* row = mu_logvar + r * 2 * latent;
      eps[i] = normals.v[lane];
      z[i] = reparam_sample(row[j], row[latent + j], normals.v[lane]);
    }
  }
}

// One thread per latent coordinate; mu and logvar share the coordinate's row in mu_logvar and its
// gradient's row in dmu_logvar.
__global__ void reparam_backward_kernel(int64_t count, int latent, float beta, const float* __restrict__ mu_logvar,
                                        const float* __restrict__ eps, const float* __restrict__ dz,
                                        float* __restrict__ dmu_logvar) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const int64_t r = i / latent;
  const int64_t j = i - r * latent;
  const int64_t mu_index = r * 2 * latent + j;
  const int64_t logvar_index = mu_index + latent;
  const float mu = mu_logvar[mu_index], logvar = mu_logvar[logvar_index];
  dmu_logvar[mu_index] = dz[i] + beta * kl_grad_mu(mu);
  dmu_logvar[logvar_index] = reparam_grad_logvar(dz[i], logvar, eps[i]) + beta * kl_grad_logvar(logvar);
}

}  // namespace

void reparam_forward(int rows, int latent, uint64_t seed, const uint64_t* noise_stream, const float* mu_logvar,
                     float* eps, float* z, cudaStream_t stream) {
  const int64_t count = static_cast<int64_t>(rows) * latent;
  if (rows <= 0 || latent <= 0) return;
  const int64_t groups = (count + 3) / 4;
  launch_kernel(reparam_forward_kernel, blocks_for(groups), kThreads, stream, count, latent, seed, noise_stream,
                mu_logvar, eps, z);
}

void reparam_backward(int rows, int latent, float beta, const float* mu_logvar, const float* eps, const float* dz,
                      float* dmu_logvar, cudaStream_t stream) {
  const int64_t count = static_cast<int64_t>(rows) * latent;
  if (rows <= 0 || latent <= 0) return;
  launch_kernel(reparam_backward_kernel, blocks_for(count), kThreads, stream, count, latent, beta, mu_logvar, eps, dz,
                dmu_logvar);
}

}  // namespace vae::cuda
