// --evaluate's importance samples on the GPU: for each decoded row, its image's pixels and posterior
// copied in and its z drawn, with the formula the CPU reference uses (importance_sample.hpp), so
// that the decoder and its loss epilogue then weigh every sample of a chunk in full-width launches.
#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/device/normal_draws.hpp"
#include "vae/error.hpp"
#include "vae/importance_sample.hpp"

namespace vae::cuda {
namespace {

constexpr int kThreads = 128;

// One block per row: the threads copy the image's bytes and posterior; thread 0 walks the latent
// coordinates in order, as the Philox blocks and the double sum must be walked. The latent is a few
// dozen wide at most in practice, and the decoder's GEMMs that follow dwarf this launch.
__global__ void importance_rows_kernel(ImportanceRows p) {
  const int r = blockIdx.x;
  if (r >= p.rows) return;
  const int64_t f = p.first_sample + r;
  const int64_t c = f / p.samples_per_image, k = f - c * p.samples_per_image;

  const uint8_t* image = p.images + c * p.pixels;
  uint8_t* target = p.targets + static_cast<int64_t>(r) * p.pixels;
  for (int i = threadIdx.x; i < p.pixels; i += blockDim.x) target[i] = image[i];
  const float* posterior = p.posteriors + c * 2 * p.latent;
  float* row_posterior = p.mu_logvar + static_cast<int64_t>(r) * 2 * p.latent;
  for (int i = threadIdx.x; i < 2 * p.latent; i += blockDim.x) row_posterior[i] = posterior[i];

  if (threadIdx.x == 0) {
    const auto draw = [](uint64_t seed, uint64_t subsequence, uint64_t group) {
      return draw_normal4(seed, subsequence, group);
    };
    p.log_ratio[r] = importance_sample(p.latent, posterior, p.seed, static_cast<uint64_t>(p.first_image + c),
                                       static_cast<uint64_t>(k), draw, p.z + static_cast<int64_t>(r) * p.latent);
  }
}

}  // namespace

void importance_rows(const ImportanceRows& p, cudaStream_t stream) {
  if (p.rows <= 0) return;
  if (p.samples_per_image < 1 || p.latent < 1 || p.pixels < 1)
    throw Error("importance_rows: samples per image, latent and pixels must be positive");
  launch_kernel(importance_rows_kernel, static_cast<unsigned int>(p.rows), kThreads, stream, p);
}

}  // namespace vae::cuda
