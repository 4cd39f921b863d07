// Reference loss of the Gaussian likelihood (the seed's VAE): alpha times the pixels' mean squared
// error of the Tanh output against data on [-1, 1], and the KL term, with the pre-activations'
// gradient in the same pass. Per-row sums in double, then rows in order, as bce_kl_loss.
#include "parallel.hpp"
#include "vae/reference_ops.hpp"

namespace vae::ref {

template <typename T>
LossSums gaussian_kl_loss(int rows, int pixels, int latent, T alpha, T grad_scale, const T* pre_tanh,
                          const T* target, const T* mu_logvar, T* dpre, double* row_scratch) {
  double* row_reconstruction = row_scratch;
  double* row_kl = row_scratch + rows;
  // d(alpha * mean_p (tanh(a) - t)^2) / da = alpha / pixels * tanh_squared_error_grad.
  const T pixel_weight = alpha / static_cast<T>(pixels) * grad_scale;
#pragma omp parallel for schedule(static) if (worth_parallel(static_cast<int64_t>(rows) * pixels))
  for (int r = 0; r < rows; ++r) {
    const int64_t base = static_cast<int64_t>(r) * pixels;
    double squares = 0;
    for (int p = 0; p < pixels; ++p) {
      squares += tanh_squared_error(pre_tanh[base + p], target[base + p]);
      if (dpre != nullptr) dpre[base + p] = pixel_weight * tanh_squared_error_grad(pre_tanh[base + p], target[base + p]);
    }
    const T* stats = mu_logvar + static_cast<int64_t>(r) * 2 * latent;
    double kl = 0;
    for (int j = 0; j < latent; ++j) kl += kl_term(stats[j], stats[latent + j]);
    row_reconstruction[r] = static_cast<double>(alpha) * squares / pixels;
    row_kl[r] = kl;
  }
  LossSums sums;
  for (int r = 0; r < rows; ++r) {
    sums.reconstruction += row_reconstruction[r];
    sums.kl += row_kl[r];
  }
  return sums;
}

template LossSums gaussian_kl_loss<float>(int, int, int, float, float, const float*, const float*, const float*, float*,
                                          double*);
template LossSums gaussian_kl_loss<double>(int, int, int, double, double, const double*, const double*, const double*,
                                           double*, double*);

}  // namespace vae::ref
