// Reference BatchNorm1d: batch statistics per feature in training (with the running statistics
// updated as PyTorch updates them), the running statistics in evaluation, and the backward. Every
// sum over rows is in double and in row order, so results do not depend on the thread count.
#include <fmt/format.h>

#include <cmath>

#include "parallel.hpp"
#include "vae/error.hpp"
#include "vae/reference_ops.hpp"

namespace vae::ref {

template <typename T>
void batch_norm_forward_training(int rows, int features, T momentum, T eps, const T* x, const T* gamma, const T* beta,
                                 T* y, T* batch_mean, T* batch_invstd, T* running_mean, T* running_var) {
  // One image has no spread to normalise by; PyTorch refuses it too.
  if (rows < 2) throw Error(fmt::format("batch norm: {} row in training mode, needs at least 2", rows));
#pragma omp parallel for schedule(static) if (worth_parallel(static_cast<int64_t>(rows) * features))
  for (int f = 0; f < features; ++f) {
    double sum = 0;
    for (int r = 0; r < rows; ++r) sum += x[static_cast<int64_t>(r) * features + f];
    const double mean = sum / rows;
    double squares = 0;
    for (int r = 0; r < rows; ++r) {
      const double d = x[static_cast<int64_t>(r) * features + f] - mean;
      squares += d * d;
    }
    const double var = squares / rows;
    const T invstd = batch_norm_batch_invstd<T>(var, eps);
    batch_mean[f] = static_cast<T>(mean);
    batch_invstd[f] = invstd;
    running_mean[f] = batch_norm_running_update(running_mean[f], mean, momentum);
    running_var[f] = batch_norm_running_update(running_var[f], squares / (rows - 1), momentum);
    for (int r = 0; r < rows; ++r) {
      const int64_t i = static_cast<int64_t>(r) * features + f;
      y[i] = batch_norm_output(x[i], batch_mean[f], invstd, gamma[f], beta[f]);
    }
  }
}

template <typename T>
void batch_norm_forward_eval(int rows, int features, T eps, const T* x, const T* gamma, const T* beta,
                             const T* running_mean, const T* running_var, T* y) {
#pragma omp parallel for schedule(static) if (worth_parallel(static_cast<int64_t>(rows) * features))
  for (int r = 0; r < rows; ++r)
    for (int f = 0; f < features; ++f) {
      const int64_t i = static_cast<int64_t>(r) * features + f;
      y[i] = batch_norm_output(x[i], running_mean[f], batch_norm_eval_invstd(running_var[f], eps), gamma[f], beta[f]);
    }
}

template <typename T>
void batch_norm_backward(int rows, int features, const T* x, const T* gamma, const T* batch_mean,
                         const T* batch_invstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
#pragma omp parallel for schedule(static) if (worth_parallel(static_cast<int64_t>(rows) * features))
  for (int f = 0; f < features; ++f) {
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int r = 0; r < rows; ++r) {
      const int64_t i = static_cast<int64_t>(r) * features + f;
      sum_dy += dy[i];
      sum_dy_xhat += static_cast<double>(dy[i]) * batch_norm_normalise(x[i], batch_mean[f], batch_invstd[f]);
    }
    dgamma[f] = static_cast<T>(sum_dy_xhat);
    dbeta[f] = static_cast<T>(sum_dy);
    const T mean_dy = static_cast<T>(sum_dy / rows), mean_dy_xhat = static_cast<T>(sum_dy_xhat / rows);
    const T scale = gamma[f] * batch_invstd[f];
    for (int r = 0; r < rows; ++r) {
      const int64_t i = static_cast<int64_t>(r) * features + f;
      dx[i] = batch_norm_input_grad(dy[i], batch_norm_normalise(x[i], batch_mean[f], batch_invstd[f]), mean_dy,
                                    mean_dy_xhat, scale);
    }
  }
}

#define VAE_INSTANTIATE(T)                                                                                        \
  template void batch_norm_forward_training<T>(int, int, T, T, const T*, const T*, const T*, T*, T*, T*, T*, T*); \
  template void batch_norm_forward_eval<T>(int, int, T, const T*, const T*, const T*, const T*, const T*, T*);     \
  template void batch_norm_backward<T>(int, int, const T*, const T*, const T*, const T*, const T*, T*, T*, T*);
VAE_INSTANTIATE(float)
VAE_INSTANTIATE(double)
#undef VAE_INSTANTIATE

}  // namespace vae::ref
