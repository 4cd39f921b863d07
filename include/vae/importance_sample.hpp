// One importance sample of one image, written once for the CPU reference and the GPU kernel
// (kernels/importance.cu): its ε, its z and its log p(z) - log q(z | x), the part of the
// importance weight of Burda et al. (2016) that does not need the decoder.
#pragma once

#include <cstdint>

#include "vae/element_math.hpp"
#include "vae/hd.hpp"
#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"

namespace vae {

// ε of image `image`'s sample `sample` is element sample * latent + j of the Philox stream
// (seed, noise_stream(kImportance, image)): each image has a stream of its own, so its draws do not
// depend on how images are batched. draw(seed, subsequence, group) returns the stream's normals
// 4 group .. 4 group + 3 (philox_normal4 on the CPU, cuRAND's draw_normal4 in a kernel); each block
// is drawn once and its four values used as they lie.
//
// Writes z = mu + exp(logvar / 2) ε into z[latent] (and ε into eps[latent] unless it is null), from
// the posterior mu_logvar = mu ‖ logvar [2 latent], and returns
// log N(z; 0, I) - log N(z; mu, σ²) = sum_j ½ (logvar_j + ε_j² - z_j²) in double: the normal
// densities' (2π)^(-1/2) factors cancel.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // draw is host or device code as the caller's side is
#endif
template <typename DrawNormal4>
VAE_HD double importance_sample(int latent, const float* mu_logvar, uint64_t seed, uint64_t image, uint64_t sample,
                                DrawNormal4 draw, float* z, float* eps = nullptr) {
  const uint64_t subsequence = noise_stream(NoisePurpose::kImportance, image);
  const uint64_t first = sample * static_cast<uint64_t>(latent);
  Normal4 block{};
  double log_ratio = 0;
  for (int j = 0; j < latent; ++j) {
    const uint64_t element = first + j;
    if (j == 0 || element % 4 == 0) block = draw(seed, subsequence, element / 4);
    const float e = block.v[element % 4];
    const float logvar = mu_logvar[latent + j];
    const float zj = reparam_sample(mu_logvar[j], logvar, e);
    z[j] = zj;
    if (eps != nullptr) eps[j] = e;
    log_ratio += 0.5 * (static_cast<double>(logvar) + static_cast<double>(e) * e - static_cast<double>(zj) * zj);
  }
  return log_ratio;
}

}  // namespace vae
