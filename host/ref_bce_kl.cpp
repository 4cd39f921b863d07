// Reference loss: BCE-with-logits over the pixels and the KL term over the latents, with the
// logits' gradient written in the same pass. Per-row sums in double, then rows in order, so the
// total does not depend on the thread count.
#include "parallel.hpp"
#include "vae/reference_ops.hpp"

namespace vae::ref {

template <typename T>
LossSums bce_kl_loss(int rows, int pixels, int latent, const T* logits, const T* target, const T* mu_logvar,
                     T* dlogits, double* row_scratch) {
  double* row_bce = row_scratch;
  double* row_kl = row_scratch + rows;
#pragma omp parallel for schedule(static) if (worth_parallel(static_cast<int64_t>(rows) * pixels))
  for (int r = 0; r < rows; ++r) {
    const int64_t base = static_cast<int64_t>(r) * pixels;
    double bce = 0;
    for (int p = 0; p < pixels; ++p) {
      bce += bce_with_logits(logits[base + p], target[base + p]);
      if (dlogits != nullptr) dlogits[base + p] = bce_with_logits_grad(logits[base + p], target[base + p]);
    }
    const T* stats = mu_logvar + static_cast<int64_t>(r) * 2 * latent;
    double kl = 0;
    for (int j = 0; j < latent; ++j) kl += kl_term(stats[j], stats[latent + j]);
    row_bce[r] = bce;
    row_kl[r] = kl;
  }
  LossSums sums;
  for (int r = 0; r < rows; ++r) {
    sums.reconstruction += row_bce[r];
    sums.kl += row_kl[r];
  }
  return sums;
}

template LossSums bce_kl_loss<float>(int, int, int, const float*, const float*, const float*, float*, double*);
template LossSums bce_kl_loss<double>(int, int, int, const double*, const double*, const double*, double*, double*);

}  // namespace vae::ref
