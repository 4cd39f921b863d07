// Reference Adam: one sweep over the flat parameter buffer, as the single fused GPU launch does.
#include "parallel.hpp"
#include "vae/reference_ops.hpp"

namespace vae::ref {

template <typename T>
void adam_step(int64_t n, const AdamHyper& hyper, long long step, const T* grads, T* params, T* m, T* v) {
  const AdamCoefficients<T> coefficients = adam_coefficients<T>(hyper, step);
#pragma omp parallel for schedule(static) if (worth_parallel(n))
  for (int64_t i = 0; i < n; ++i) adam_update(grads[i], params[i], m[i], v[i], coefficients);
}

template void adam_step<float>(int64_t, const AdamHyper&, long long, const float*, float*, float*, float*);
template void adam_step<double>(int64_t, const AdamHyper&, long long, const double*, double*, double*, double*);

}  // namespace vae::ref
