// The loss on the GPU: BCE-with-logits over each image's pixels and the KL term over its latents,
// with dL/dlogits written in the same pass over the logits. The sums are reduced in double in a
// fixed order (per row, then over rows, no atomics), so a run's loss curve reproduces bit for bit.
#include "vae/cuda_ops.hpp"
#include "vae/device/block_reduce.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/element_math.hpp"

namespace vae::cuda {
namespace {

// One block size for both kernels: a fixed block size is what fixes CUB's reduction tree, and so
// the order in which doubles are added.
constexpr int kThreads = 256;
using RowSum = BlockSum<kThreads>;

// One block per row (image). Each thread strides over the row's pixels, then over its latents,
// adding in double; the block then reduces both partial sums and thread 0 stores them in
// row_sums[r] (BCE) and row_sums[rows + r] (KL).
__global__ void bce_kl_rows_kernel(int rows, int pixels, int latent, const float* __restrict__ logits,
                                   const uint8_t* __restrict__ target, const float* __restrict__ mu_logvar,
                                   float* __restrict__ dlogits, double* __restrict__ row_sums) {
  const int r = blockIdx.x;
  if (r >= rows) return;  // the whole block leaves together, so the __syncthreads below stay uniform

  const int64_t pixel_base = static_cast<int64_t>(r) * pixels;
  double bce = 0;
  for (int p = threadIdx.x; p < pixels; p += blockDim.x) {
    const float logit = logits[pixel_base + p];
    // The same float the reference gets from its float targets.
    const float t = pixel_to_unit(target[pixel_base + p]);
    bce += bce_with_logits(logit, t);
    if (dlogits != nullptr) dlogits[pixel_base + p] = bce_with_logits_grad(logit, t);
  }

  const float* stats = mu_logvar + static_cast<int64_t>(r) * 2 * latent;
  double kl = 0;
  for (int j = threadIdx.x; j < latent; j += blockDim.x) kl += kl_term(stats[j], stats[latent + j]);

  __shared__ typename RowSum::TempStorage scratch;
  const double row_bce = RowSum(scratch).Sum(bce);
  __syncthreads();  // scratch is reused by the second reduction
  const double row_kl = RowSum(scratch).Sum(kl);
  if (threadIdx.x == 0) {  // the block's sums are valid in thread 0 only
    row_sums[r] = row_bce;
    row_sums[static_cast<int64_t>(rows) + r] = row_kl;
  }
}

// A single block adds the row sums in a fixed order (thread t takes rows t, t + kThreads, ...; then
// CUB's fixed tree) and adds the batch's two sums to the running totals, then runs the NaN guard.
__global__ void bce_kl_total_kernel(int rows, const double* __restrict__ row_sums, double* __restrict__ totals,
                                    NonfiniteGuard guard) {
  double bce = 0, kl = 0;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    bce += row_sums[r];
    kl += row_sums[static_cast<int64_t>(rows) + r];
  }
  __shared__ typename RowSum::TempStorage scratch;
  const double batch_bce = RowSum(scratch).Sum(bce);
  __syncthreads();  // scratch is reused by the second reduction
  const double batch_kl = RowSum(scratch).Sum(kl);
  if (threadIdx.x == 0) {
    totals[0] += batch_bce;
    totals[1] += batch_kl;
    if (guard.first_bad_step != nullptr && *guard.first_bad_step == 0 && !isfinite(totals[0] + totals[1]))
      *guard.first_bad_step = *guard.step;
  }
}

}  // namespace

void bce_kl_loss(int rows, int pixels, int latent, const float* logits, const uint8_t* target,
                 const float* mu_logvar, float* dlogits, double* row_scratch, double* totals, NonfiniteGuard guard,
                 cudaStream_t stream) {
  if (rows <= 0) return;  // nothing to add
  // Both kernels must run with exactly kThreads threads: BlockSum is specialised for that size.
  launch_kernel(bce_kl_rows_kernel, rows, kThreads, stream, rows, pixels, latent, logits, target, mu_logvar, dlogits,
                row_scratch);
  launch_kernel(bce_kl_total_kernel, 1, kThreads, stream, rows, row_scratch, totals, guard);
}

}  // namespace vae::cuda
