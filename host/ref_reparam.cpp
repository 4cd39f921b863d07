// Reference reparameterisation: z = mu + exp(logvar / 2) ⊙ eps with eps from the shared Philox
// normals, and its backward with the KL gradient folded in, as the fused kernel does.
#include "vae/philox.hpp"
#include "vae/reference_ops.hpp"

namespace vae::ref {

template <typename T>
void reparam_forward(int rows, int latent, uint64_t seed, uint64_t stream, const T* mu_logvar, T* eps, T* z) {
  const int64_t count = static_cast<int64_t>(rows) * latent;
  // Draw four normals per Philox block, as curand_normal4 does on the GPU.
  for (int64_t group = 0; group * 4 < count; ++group) {
    const Normal4 normals = philox_normal4(seed, stream, static_cast<uint64_t>(group));
    for (int lane = 0; lane < 4 && group * 4 + lane < count; ++lane) eps[group * 4 + lane] = normals.v[lane];
  }
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < latent; ++j) {
      const T* row = mu_logvar + static_cast<int64_t>(r) * 2 * latent;
      const int64_t i = static_cast<int64_t>(r) * latent + j;
      z[i] = reparam_sample(row[j], row[latent + j], eps[i]);
    }
}

template <typename T>
void reparam_backward(int rows, int latent, T beta, const T* mu_logvar, const T* eps, const T* dz,
                      T* dmu_logvar) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < latent; ++j) {
      const int64_t row = static_cast<int64_t>(r) * 2 * latent;
      const int64_t i = static_cast<int64_t>(r) * latent + j;
      const T mu = mu_logvar[row + j], logvar = mu_logvar[row + latent + j];
      dmu_logvar[row + j] = dz[i] + beta * kl_grad_mu(mu);
      dmu_logvar[row + latent + j] = reparam_grad_logvar(dz[i], logvar, eps[i]) + beta * kl_grad_logvar(logvar);
    }
}

template void reparam_forward<float>(int, int, uint64_t, uint64_t, const float*, float*, float*);
template void reparam_forward<double>(int, int, uint64_t, uint64_t, const double*, double*, double*);
template void reparam_backward<float>(int, int, float, const float*, const float*, const float*, float*);
template void reparam_backward<double>(int, int, double, const double*, const double*, const double*, double*);

}  // namespace vae::ref
