// A linear layer's forward in one launch: y = activation(x · Wᵀ + b) on the tile GEMM of gemm_tile.cuh,
// split-K reduced in the same launch by each tile's last block, and what the step needs next in the
// epilogue: BatchNorm (the batch's statistics by each column of tiles' last block), the first layer
// advances the step, the head draws ε and writes z, the output layer
// computes the reconstruction term (BCE-with-logits, or the Gaussian likelihood's squared error of
// the Tanh output), the KL term, dL/dlogits and the batch's sums. Every sum runs in a
// fixed order, so a run reproduces bit for bit.
#include <cstdint>
#include <string>

#include "gemm_tile.cuh"
#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device/block_reduce.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/device/normal_draws.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/noise_streams.hpp"

namespace vae::cuda {
namespace {

using gemm::Accumulator;
using gemm::Operand;
using gemm::Tile;
using gemm::TileCoords;

// What the kernel reads besides its two operands: C is rows x out over in.
struct ForwardArgs {
  int m, n, k, k_per_split;
  const float* bias;
  Activation activation;
  float negative_slope;
  float* y;
  float* partials;
  unsigned* tile_counters;  // [grid_m * grid_n], split-K only
  unsigned* row_counters;   // [grid_m]
  unsigned* batch_counter;  // [1]
  unsigned* column_counters;  // [grid_n]
  StepAdvance advance;
  ReparamEpilogue reparam;
  LossEpilogue loss;
  BatchNormEpilogue batch_norm;
};

__device__ __forceinline__ float apply_activation(const ForwardArgs& p, float value) {
  if (p.activation == Activation::kReLU) return relu(value);  // the default model's hidden layers: one compare
  if (p.activation != Activation::kIdentity) return activate(p.activation, p.negative_slope, value);
  return value;
}

// BatchNorm in training, in the last block of a column of tiles to finish, once every h of its
// columns [n0, n0 + BN) is written: each feature's mean and biased variance over the batch, in
// double and in row order (two passes, as batch_norm_forward_training sums them), the running
// statistics, then y for every row of these columns. One thread per feature for the sums: a column
// strip holds at most 64 features, and the rows are few. L2 loads: other blocks wrote h.
template <class T>
__device__ void batch_norm_columns(const ForwardArgs& p, int64_t n0) {
  const BatchNormEpilogue& b = p.batch_norm;
  __shared__ float column_mean[T::BN], column_invstd[T::BN];
  const int cols = static_cast<int>(min(static_cast<int64_t>(T::BN), p.n - n0));
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const int64_t col = n0 + c;
    double sum = 0;
    for (int64_t r = 0; r < p.m; ++r) sum += __ldcg(b.pre + r * p.n + col);
    const double mean = sum / p.m;
    double squares = 0;
    for (int64_t r = 0; r < p.m; ++r) {
      const double d = __ldcg(b.pre + r * p.n + col) - mean;
      squares += d * d;
    }
    const float batch_mean = static_cast<float>(mean), invstd = batch_norm_batch_invstd<float>(squares / p.m, b.eps);
    b.batch_mean[col] = batch_mean;
    b.batch_invstd[col] = invstd;
    b.running_mean[col] = batch_norm_running_update(b.running_mean[col], mean, b.momentum);
    b.running_var[col] = batch_norm_running_update(b.running_var[col], squares / (p.m - 1), b.momentum);
    column_mean[c] = batch_mean;
    column_invstd[c] = invstd;
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < static_cast<int64_t>(p.m) * cols; e += blockDim.x) {
    const int64_t row = e / cols;
    const int c = static_cast<int>(e - row * cols);
    const int64_t col = n0 + c, i = row * p.n + col;
    p.y[i] = apply_activation(
        p, batch_norm_output(__ldcg(b.pre + i), column_mean[c], column_invstd[c], b.gamma[col], b.beta[col]));
  }
}

__device__ void advance_step(const StepAdvance& a) {
  const long long next = *a.step + 1;
  *a.step = next;
  *a.noise_stream = train_stream(static_cast<uint64_t>(next));
  if (a.adam_coefficients != nullptr) *a.adam_coefficients = adam_coefficients<float>(a.adam, next);
}

// ε and z for rows [row_begin, row_end), once all of their mu ‖ logvar are written. Element
// i = r * latent + j takes normal i % 4 of Philox group i / 4, as reparam_forward draws it; a group
// that straddles two row tiles is drawn by both, each keeping its own elements.
__device__ void reparameterise_rows(const ReparamEpilogue& r, const float* mu_logvar, int64_t row_begin,
                                    int64_t row_end) {
  const int64_t first = row_begin * r.latent, end = row_end * r.latent;
  const uint64_t stream = *r.noise_stream;
  for (int64_t group = first / 4 + threadIdx.x; group * 4 < end; group += blockDim.x) {
    const Normal4 normals = draw_normal4(r.seed, stream, static_cast<uint64_t>(group));
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = group * 4 + lane;
      if (i < first || i >= end) continue;
      const int64_t row = i / r.latent, j = i - row * r.latent;
      const float* stats = mu_logvar + row * 2 * r.latent;  // other blocks wrote them: L2 loads
      r.eps[i] = normals.v[lane];
      r.z[i] = reparam_sample(__ldcg(stats + j), __ldcg(stats + r.latent + j), normals.v[lane]);
    }
  }
}

// The loss's scratch: each row's BCE and KL sums, then each column tile's BCE sum of each row.
__device__ __forceinline__ double* tile_row_sums(const LossEpilogue& l, int rows, int tile_n) {
  return l.scratch + 2 * static_cast<int64_t>(rows) + static_cast<int64_t>(tile_n) * rows;
}

// Rows [row_begin, row_end), once every column tile has stored its share: the reconstruction term
// (the tiles' sums in tile order; for the Gaussian likelihood alpha times their mean over the
// pixels, as gaussian_kl_loss scales it) and KL, each row's in double.
__device__ void loss_rows(const LossEpilogue& l, int rows, int pixels, int tiles_n, int64_t row_begin,
                          int64_t row_end) {
  for (int64_t row = row_begin + threadIdx.x; row < row_end; row += blockDim.x) {
    double bce = 0;
    for (int t = 0; t < tiles_n; ++t) bce += __ldcg(tile_row_sums(l, rows, t) + row);
    if (l.likelihood == Likelihood::kGaussian) bce = static_cast<double>(l.alpha) * bce / pixels;
    const float* stats = l.mu_logvar + row * 2 * l.latent;
    double kl = 0;
    for (int j = 0; j < l.latent; ++j) kl += kl_term(stats[j], stats[l.latent + j]);
    l.scratch[row] = bce;
    l.scratch[rows + row] = kl;
  }
}

// The batch's sums, once every row is done, in a fixed order (thread t takes rows t, t + kThreads,
// ...; then the block's fixed tree), added to the totals; then the NaN guard.
template <int kThreads>
__device__ void loss_total(const LossEpilogue& l, int rows) {
  double bce = 0, kl = 0;
  for (int r = threadIdx.x; r < rows; r += kThreads) {
    bce += __ldcg(l.scratch + r);
    kl += __ldcg(l.scratch + rows + r);
  }
  using RowSum = BlockSum<kThreads>;
  __shared__ typename RowSum::TempStorage storage;
  const double batch_bce = RowSum(storage).Sum(bce);
  __syncthreads();  // storage is reused by the second reduction
  const double batch_kl = RowSum(storage).Sum(kl);
  if (threadIdx.x == 0) {  // the block's sums are valid in thread 0 only
    l.totals[0] += batch_bce;
    l.totals[1] += batch_kl;
    if (l.guard.first_bad_step != nullptr && *l.guard.first_bad_step == 0 && !isfinite(l.totals[0] + l.totals[1]))
      *l.guard.first_bad_step = *l.guard.step;
  }
}

// Grid (grid_n, grid_m, splits). kLoss: the output layer's loss epilogue (its shared tile of
// per-element BCE is only allocated there).
template <class T, typename TX, bool kLoss>
__global__ void __launch_bounds__(T::kThreads)
    linear_forward_kernel(ForwardArgs p, Operand<TX> x, Operand<float> weight) {
  __shared__ __align__(16) gemm::TileSmem<T> smem;
  __shared__ float tile_bce[kLoss ? T::BM : 1][kLoss ? T::BN + 1 : 1];  // +1: row sums read conflict-free
  if (p.advance.step != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0)
    advance_step(p.advance);

  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * p.k_per_split;
  const TileCoords at{static_cast<int64_t>(blockIdx.y) * T::BM, static_cast<int64_t>(blockIdx.x) * T::BN, k_begin,
                      min(static_cast<int64_t>(p.k), k_begin + p.k_per_split)};
  Accumulator<T> acc;
  gemm::accumulate<T, true, true>(p.m, p.n, at, x, weight, smem, acc);

  // The Gaussian likelihood's d(alpha * mean_p squared error) / d(pre-activation) per pixel, times
  // the loss's gradient scale, in gaussian_kl_loss's order of operations.
  const bool gaussian = kLoss && p.loss.likelihood == Likelihood::kGaussian;
  const float pixel_weight = gaussian ? p.loss.alpha / static_cast<float>(p.n) * p.loss.grad_scale : 0.0f;
  const BatchNormEpilogue& bn = p.batch_norm;
  const bool batch_norm = bn.gamma != nullptr;
  auto finish = [&](int64_t row, int64_t col, float value) {
    if (p.bias != nullptr) value += p.bias[col];
    const int64_t i = row * p.n + col;
    if (batch_norm) {
      bn.pre[i] = value;
      if (bn.training) return;  // y once the column's statistics are known (batch_norm_columns)
      value = batch_norm_output(value, bn.running_mean[col], batch_norm_eval_invstd(bn.running_var[col], bn.eps),
                                bn.gamma[col], bn.beta[col]);
    }
    value = apply_activation(p, value);
    p.y[i] = value;
    if constexpr (kLoss) {
      float* term = &tile_bce[row - at.m0][col - at.n0];
      if (gaussian) {
        const float target = pixel_to_signed(p.loss.target[i]);  // the float the reference gets
        *term = tanh_squared_error(value, target);
        if (p.loss.dlogits != nullptr) p.loss.dlogits[i] = pixel_weight * tanh_squared_error_grad(value, target);
      } else {
        const float target = pixel_to_unit(p.loss.target[i]);
        *term = bce_with_logits(value, target);
        if (p.loss.dlogits != nullptr) p.loss.dlogits[i] = bce_with_logits_grad(value, target);
      }
    }
  };
  const int splits = static_cast<int>(gridDim.z);
  if (splits == 1) {
    acc.for_each(p.m, p.n, at, finish);
  } else {
    acc.for_each(p.m, p.n, at, [&](int64_t row, int64_t col, float value) {
      p.partials[gemm::partial_index(blockIdx.z, p.m, p.n, row, col)] = value;
    });
    if (!gemm::arrives_last(p.tile_counters + blockIdx.y * gridDim.x + blockIdx.x, splits)) return;
    gemm::for_each_reduced<T>(p.partials, splits, p.m, p.n, at, finish);
  }

  // The tile is final. BatchNorm's statistics wait for the column's last tile.
  if (batch_norm && bn.training) {
    if (gemm::arrives_last(p.column_counters + blockIdx.x, gridDim.y)) batch_norm_columns<T>(p, at.n0);
    return;
  }
  // What needs whole rows waits for the row's last tile.
  if constexpr (kLoss) {
    __syncthreads();
    const int64_t cols = min(static_cast<int64_t>(T::BN), p.n - at.n0);
    for (int r = threadIdx.x; r < T::BM && at.m0 + r < p.m; r += blockDim.x) {
      double sum = 0;
      for (int c = 0; c < cols; ++c) sum += tile_bce[r][c];
      tile_row_sums(p.loss, p.m, blockIdx.x)[at.m0 + r] = sum;
    }
  }
  if (!kLoss && p.reparam.z == nullptr) return;
  if (!gemm::arrives_last(p.row_counters + blockIdx.y, gridDim.x)) return;
  const int64_t row_end = min(at.m0 + T::BM, static_cast<int64_t>(p.m));
  if (p.reparam.z != nullptr) reparameterise_rows(p.reparam, p.y, at.m0, row_end);
  if constexpr (kLoss) {
    loss_rows(p.loss, p.m, p.n, gridDim.x, at.m0, row_end);
    if (!gemm::arrives_last(p.batch_counter, gridDim.y)) return;
    loss_total<T::kThreads>(p.loss, p.m);
  }
}

template <class T>
void launch_forward(const LinearForward& f, const ForwardPlan& plan, const ForwardArgs& args, cudaStream_t stream) {
  const dim3 grid(plan.gemm.grid_n, plan.gemm.grid_m, plan.gemm.splits);
  const Operand<float> weight = gemm::make_operand(f.weight, f.in);
  if (f.pixels != nullptr)
    launch_kernel(linear_forward_kernel<T, uint8_t, false>, grid, T::kThreads, stream, args,
                  gemm::make_operand(f.pixels, f.in, gemm::pixel_load(f.signed_pixels)), weight);
  else if (f.loss.totals != nullptr)
    launch_kernel(linear_forward_kernel<T, float, true>, grid, T::kThreads, stream, args,
                  gemm::make_operand(f.x, f.in), weight);
  else
    launch_kernel(linear_forward_kernel<T, float, false>, grid, T::kThreads, stream, args,
                  gemm::make_operand(f.x, f.in), weight);
}

void check(bool ok, const char* what) {
  if (!ok) throw Error(std::string("linear layer forward: ") + what);
}

}  // namespace

int64_t loss_scratch_doubles(int rows, int pixels) {
  const int64_t smallest_tile = tile_edge(TileShape::kSmall);
  return static_cast<int64_t>(rows) * (2 + (pixels + smallest_tile - 1) / smallest_tile);
}

void linear_forward(const LinearForward& f, Precision precision, GemmWorkspace workspace, cudaStream_t stream) {
  const bool loss = f.loss.totals != nullptr, reparam = f.reparam.z != nullptr;
  check((f.x == nullptr) != (f.pixels == nullptr), "exactly one of x and pixels is the input");
  check(!(loss && f.pixels != nullptr), "the loss epilogue needs a float input");
  check(!(loss && f.activation != Activation::kIdentity), "the loss epilogue reads the output layer's logits");
  check(!(reparam && f.out != 2 * f.reparam.latent), "the reparameterisation needs an output of 2 * latent");
  // Block 0 advances the step with plain stores while the last blocks of the head's or the output
  // layer's launch read the noise stream or the step (the NaN guard): not in one launch.
  check(!(reparam && f.advance.step != nullptr), "the step cannot advance in the head's own launch");
  check(!(loss && f.advance.step != nullptr), "the step cannot advance in the output layer's own launch");
  check(f.rows >= 0 && f.in >= 0 && f.out >= 0, "negative size");
  const BatchNormEpilogue& bn = f.batch_norm;
  if (bn.gamma != nullptr) {
    check(!loss && !reparam, "BatchNorm rides on a hidden layer, not the head or the output layer");
    check(bn.beta != nullptr && bn.running_mean != nullptr && bn.running_var != nullptr && bn.pre != nullptr,
          "BatchNorm needs beta, the running statistics and somewhere for h");
    check(!bn.training || (bn.batch_mean != nullptr && bn.batch_invstd != nullptr),
          "BatchNorm in training needs somewhere for the batch's statistics");
    check(!bn.training || f.rows >= 2, "BatchNorm in training needs at least 2 rows");
  }
  if (f.rows == 0 || f.out == 0) {
    check(f.advance.step == nullptr && !loss && !reparam, "an epilogue needs a non-empty product");
    return;
  }
  const ForwardPlan plan = plan_linear_forward(f.rows, f.in, f.out, precision, multiprocessor_count());
  check(plan.gemm.grid_m <= 65535, "too many rows for one launch (grid y is at most 65535 tiles)");
  gemm::check_workspace("linear layer forward", workspace, plan.floats, plan.counters);
  const ForwardArgs args{f.rows,
                         f.out,
                         f.in,
                         plan.gemm.k_per_split,
                         f.bias,
                         f.activation,
                         f.negative_slope,
                         f.y,
                         workspace.data,
                         workspace.tile_counters,
                         workspace.tile_counters + plan.row_counters,
                         workspace.tile_counters + plan.batch_counter,
                         workspace.tile_counters + plan.column_counters,
                         f.advance,
                         f.reparam,
                         f.loss,
                         f.batch_norm};
  gemm::with_tile(precision, plan.gemm.shape,
                  [&](auto tile) { launch_forward<decltype(tile)>(f, plan, args, stream); });
}

}  // namespace vae::cuda
