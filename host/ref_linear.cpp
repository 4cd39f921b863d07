// Reference linear layer: forward as x · Wᵀ + b (+ReLU), backward as the three products dx = dz · W,
// dW = dzᵀ · x and db = column sums of dz, all on the blocked GEMMs of gemm.cpp.
#include "gemm.hpp"
#include "parallel.hpp"
#include "vae/reference_ops.hpp"

namespace vae::ref {

template <typename T>
void linear_forward(int rows, int in, int out, bool relu, const T* x, const T* weight, const T* bias, T* y) {
  gemm_nt(rows, out, in, x, in, weight, in, y, out);
#pragma omp parallel for schedule(static) if (worth_parallel(static_cast<int64_t>(rows) * out))
  for (int r = 0; r < rows; ++r) {
    T* row = y + static_cast<int64_t>(r) * out;
    for (int j = 0; j < out; ++j) {
      const T value = row[j] + bias[j];
      row[j] = relu ? vae::relu(value) : value;
    }
  }
}

template <typename T>
void linear_backward(int rows, int in, int out, bool relu, const T* x, const T* weight, const T* y, T* dy,
                     T* dx, T* dweight, T* dbias) {
  const int64_t count = static_cast<int64_t>(rows) * out;
  if (relu) {
    // y = relu(pre) and y > 0 exactly where pre > 0, so y is all the mask needs.
#pragma omp parallel for schedule(static) if (worth_parallel(count))
    for (int64_t i = 0; i < count; ++i) dy[i] = relu_grad(dy[i], y[i]);
  }
  if (dx != nullptr) gemm_nn(rows, in, out, dy, out, 1, weight, in, dx, in);
  gemm_nn(out, in, rows, dy, 1, out, x, in, dweight, in);
#pragma omp parallel for schedule(static) if (worth_parallel(count))
  for (int j = 0; j < out; ++j) {
    T total = 0;
    for (int r = 0; r < rows; ++r) total += dy[static_cast<int64_t>(r) * out + j];
    dbias[j] = total;
  }
}

template void linear_forward<float>(int, int, int, bool, const float*, const float*, const float*, float*);
template void linear_forward<double>(int, int, int, bool, const double*, const double*, const double*, double*);
template void linear_backward<float>(int, int, int, bool, const float*, const float*, const float*, float*, float*,
                                     float*, float*);
template void linear_backward<double>(int, int, int, bool, const double*, const double*, const double*, double*,
                                      double*, double*, double*);

}  // namespace vae::ref
