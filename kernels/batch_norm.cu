// BatchNorm1d's backward in one launch, before its layer's linear backward: per feature, the
// activation's backward, the fixed-order sums over the batch, dL/dh, dgamma and dbeta, and Adam on
// gamma and beta. Its forward rides on the layer's linear forward (kernels/linear_forward.cu). Each
// block owns whole features (columns), so every sum is one block's, in a fixed order: no float
// atomics and no block waits for another.
#include <cstdint>
#include <string>

#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"

namespace vae::cuda {
namespace {

// 32 features (one warp's coalesced row segment) by kRowLanes strided sets of rows per block.
constexpr int kColumns = 32, kRowLanes = 8, kThreads = kColumns * kRowLanes;

// Thread (lane, column) sums rows lane, lane + kRowLanes, ... of its column in double; the lanes'
// partial sums are then added in lane order: the same bits whatever the schedule.
__global__ void __launch_bounds__(kThreads) batch_norm_backward_kernel(BatchNormBackward b) {
  __shared__ double partial_dy[kRowLanes][kColumns], partial_dy_xhat[kRowLanes][kColumns];
  __shared__ float mean_dy[kColumns], mean_dy_xhat[kColumns], scale[kColumns];
  const int column = threadIdx.x % kColumns, lane = threadIdx.x / kColumns;
  const int64_t f = static_cast<int64_t>(blockIdx.x) * kColumns + column;
  const bool active = f < b.features;
  const float mean = active ? b.batch_mean[f] : 0.0f, invstd = active ? b.batch_invstd[f] : 0.0f;
  // dL/d(BatchNorm's output): the activation's backward from its output y, as the reference's
  // activation_backward computes it.
  auto grad_at = [&](int64_t i) { return activation_grad(b.activation, b.negative_slope, b.dy[i], b.y[i]); };

  double sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t r = lane; active && r < b.rows; r += kRowLanes) {
    const int64_t i = r * b.features + f;
    const float g = grad_at(i);
    sum_dy += g;
    sum_dy_xhat += static_cast<double>(g) * batch_norm_normalise(b.h[i], mean, invstd);
  }
  partial_dy[lane][column] = sum_dy;
  partial_dy_xhat[lane][column] = sum_dy_xhat;
  __syncthreads();
  if (lane == 0 && active) {
    double dy_total = 0, dy_xhat_total = 0;
    for (int l = 0; l < kRowLanes; ++l) {
      dy_total += partial_dy[l][column];
      dy_xhat_total += partial_dy_xhat[l][column];
    }
    const float dgamma = static_cast<float>(dy_xhat_total), dbeta = static_cast<float>(dy_total);
    b.dgamma[f] = dgamma;
    b.dbeta[f] = dbeta;
    mean_dy[column] = static_cast<float>(dy_total / b.rows);
    mean_dy_xhat[column] = static_cast<float>(dy_xhat_total / b.rows);
    scale[column] = b.gamma[f] * invstd;
  }
  __syncthreads();
  for (int64_t r = lane; active && r < b.rows; r += kRowLanes) {
    const int64_t i = r * b.features + f;
    b.dh[i] = batch_norm_input_grad(grad_at(i), batch_norm_normalise(b.h[i], mean, invstd), mean_dy[column],
                                    mean_dy_xhat[column], scale[column]);
  }
  // gamma was read (into scale) before this thread's update; no other block reads this feature's.
  if (lane == 0 && active && b.adam.coefficients != nullptr) {
    const AdamCoefficients<float> c = *b.adam.coefficients;
    float gamma = b.gamma[f], m = b.adam.weight_m[f], v = b.adam.weight_v[f];
    adam_update(b.dgamma[f], gamma, m, v, c);
    b.gamma[f] = gamma, b.adam.weight_m[f] = m, b.adam.weight_v[f] = v;
    float beta = b.beta[f], bm = b.adam.bias_m[f], bv = b.adam.bias_v[f];
    adam_update(b.dbeta[f], beta, bm, bv, c);
    b.beta[f] = beta, b.adam.bias_m[f] = bm, b.adam.bias_v[f] = bv;
  }
}

void check(bool ok, const char* what) {
  if (!ok) throw Error(std::string("batch norm backward: ") + what);
}

}  // namespace

void batch_norm_backward(const BatchNormBackward& b, cudaStream_t stream) {
  check(b.rows >= 0 && b.features >= 0, "negative size");
  check(b.adam.coefficients == nullptr || (b.adam.weight_m && b.adam.weight_v && b.adam.bias_m && b.adam.bias_v),
        "Adam needs both moments of gamma and beta");
  if (b.rows == 0 || b.features == 0) return;
  const unsigned blocks = static_cast<unsigned>((b.features + kColumns - 1) / kColumns);
  launch_kernel(batch_norm_backward_kernel, blocks, kThreads, stream, b);
}

}  // namespace vae::cuda
