// Reference activations after a hidden layer that the linear op does not fuse (LeakyReLU, and any
// activation behind a BatchNorm), in place, from element_math's formulas.
#include "parallel.hpp"
#include "vae/reference_ops.hpp"

namespace vae::ref {

template <typename T>
void activation_forward(int64_t count, Activation activation, T negative_slope, T* y) {
#pragma omp parallel for schedule(static) if (worth_parallel(count))
  for (int64_t i = 0; i < count; ++i) y[i] = activate(activation, negative_slope, y[i]);
}

template <typename T>
void activation_backward(int64_t count, Activation activation, T negative_slope, const T* y, T* dy) {
#pragma omp parallel for schedule(static) if (worth_parallel(count))
  for (int64_t i = 0; i < count; ++i) dy[i] = activation_grad(activation, negative_slope, dy[i], y[i]);
}

template void activation_forward<float>(int64_t, Activation, float, float*);
template void activation_forward<double>(int64_t, Activation, double, double*);
template void activation_backward<float>(int64_t, Activation, float, const float*, float*);
template void activation_backward<double>(int64_t, Activation, double, const double*, double*);

}  // namespace vae::ref
