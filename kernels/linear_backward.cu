// A linear layer's backward in one launch: blocks of one grid take either tiles of the input gradient
// dx = mask(dy) · W or tiles of the weight gradient dW = mask(dy)ᵀ · x (mask: the activation's backward), the bias gradient is summed by
// the blocks of dW's first column of tiles, and Adam updates each tile of W and b as soon as its
// gradient is complete and no block still reads W. On the first decoder layer, dx is dz and the
// epilogue also writes d(mu ‖ logvar): the reparameterisation's backward plus beta times the KL
// gradient. Split-K partials are reduced by each tile's last block in split order: no float
// atomics, the same bits on every run.
#include <cstdint>
#include <string>

#include "gemm_tile.cuh"
#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/gemm_plan.hpp"

namespace vae::cuda {
namespace {

using gemm::Accumulator;
using gemm::Operand;
using gemm::Tile;
using gemm::TileCoords;

// One product's share of the grid.
struct ProductGrid {
  int grid_m, grid_n, splits, k_per_split;
  float* partials;
  unsigned* tile_counters;
};

struct BackwardArgs {
  int rows, in, out;
  ProductGrid dx_grid, dw_grid;
  unsigned dx_blocks;
  const float* dy;
  gemm::LoadTransform mask;  // the activation's backward from the layer's output y, when it has one
  float* weight;
  float* bias;
  float* dx;
  float* dweight;
  float* dbias;
  unsigned* launch_counters;  // [tickets taken, dx blocks done, blocks finished]
  ReparamGradEpilogue reparam;
  AdamEpilogue adam;
};

// The tile of block `index` of a product: index runs over columns of tiles, then rows, then splits.
template <class T>
__device__ TileCoords tile_of(const ProductGrid& g, unsigned index, int k, int& tile_m, int& tile_n, int& split) {
  tile_n = static_cast<int>(index % g.grid_n);
  tile_m = static_cast<int>(index / g.grid_n % g.grid_m);
  split = static_cast<int>(index / (static_cast<unsigned>(g.grid_n) * g.grid_m));
  const int64_t k_begin = static_cast<int64_t>(split) * g.k_per_split;
  return TileCoords{static_cast<int64_t>(tile_m) * T::BM, static_cast<int64_t>(tile_n) * T::BN, k_begin,
                    min(static_cast<int64_t>(k), k_begin + g.k_per_split)};
}

// W is read coherently: Adam writes it later in this launch.
using WeightOperand = Operand<float, /*kReadOnly=*/false>;

// dx [rows, in] = mask(dy) · W: A = dy (K contiguous), B(k = j, n = i) = W[j][i] (N contiguous).
template <class T>
__device__ void input_gradient_block(const BackwardArgs& p, unsigned index, const Operand<float>& dy,
                                     const WeightOperand& weight, gemm::TileSmem<T>& smem) {
  const ProductGrid& g = p.dx_grid;
  int tile_m, tile_n, split;
  const TileCoords at = tile_of<T>(g, index, p.out, tile_m, tile_n, split);
  Accumulator<T> acc;
  gemm::accumulate<T, true, false>(p.rows, p.in, at, dy, weight, smem, acc);
  // Every thread's reads of W are done (accumulate ends on a barrier): Adam may now change it.
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(p.launch_counters + 1, 1u);
  }

  auto finish = [&](int64_t row, int64_t col, float dz) {
    p.dx[row * p.in + col] = dz;
    const ReparamGradEpilogue& r = p.reparam;
    if (r.dmu_logvar != nullptr) {  // col is a latent coordinate j
      const int64_t mu_index = row * 2 * r.latent + col, logvar_index = mu_index + r.latent;
      const float mu = r.mu_logvar[mu_index], logvar = r.mu_logvar[logvar_index];
      r.dmu_logvar[mu_index] = dz + r.beta * kl_grad_mu(mu);
      r.dmu_logvar[logvar_index] = reparam_grad_logvar(dz, logvar, r.eps[row * r.latent + col]) +
                                   r.beta * kl_grad_logvar(logvar);
    }
  };
  if (g.splits == 1) {
    acc.for_each(p.rows, p.in, at, finish);
    return;
  }
  acc.for_each(p.rows, p.in, at, [&](int64_t row, int64_t col, float value) {
    g.partials[gemm::partial_index(split, p.rows, p.in, row, col)] = value;
  });
  if (!gemm::arrives_last(g.tile_counters + tile_m * g.grid_n + tile_n, g.splits)) return;
  gemm::for_each_reduced<T>(g.partials, g.splits, p.rows, p.in, at, finish);
}

// dW [out, in] = mask(dy)ᵀ · x: A(m = j, k = r) = dy[r][j] (M contiguous), B(k = r, n = i) = x[r][i]
// (N contiguous). The tiles of column 0 also own db for their rows j: the column sums of mask(dy)
// over every row in row order, in float, as the reference sums them.
template <class T, typename TX>
__device__ void weight_gradient_block(const BackwardArgs& p, unsigned index, const Operand<float>& dy,
                                      const Operand<TX>& x, gemm::TileSmem<T>& smem) {
  const ProductGrid& g = p.dw_grid;
  int tile_m, tile_n, split;
  const TileCoords at = tile_of<T>(g, index, p.rows, tile_m, tile_n, split);
  Accumulator<T> acc;
  gemm::accumulate<T, false, false>(p.out, p.in, at, dy, x, smem, acc);
  if (g.splits > 1) {
    acc.for_each(p.out, p.in, at, [&](int64_t row, int64_t col, float value) {
      g.partials[gemm::partial_index(split, p.out, p.in, row, col)] = value;
    });
    if (!gemm::arrives_last(g.tile_counters + tile_m * g.grid_n + tile_n, g.splits)) return;
  }

  // The tile's gradient is complete.
  const bool adam = p.adam.coefficients != nullptr;
  const AdamCoefficients<float> c = adam ? *p.adam.coefficients : AdamCoefficients<float>{};
  // The bias first: no block of this launch reads it, so its update needs no wait.
  for (int t = threadIdx.x; tile_n == 0 && t < T::BM && at.m0 + t < p.out; t += blockDim.x) {
    const int64_t j = at.m0 + t;
    float grad = 0.0f;
    for (int r = 0; r < p.rows; ++r) {
      const int64_t e = static_cast<int64_t>(r) * p.out + j;
      grad += p.mask.activation_output == nullptr ? p.dy[e] : gemm::masked(p.mask, p.dy[e], p.mask.activation_output[e]);
    }
    p.dbias[j] = grad;
    if (adam) {
      float b = p.bias[j], m = p.adam.bias_m[j], v = p.adam.bias_v[j];
      adam_update(grad, b, m, v, c);
      p.bias[j] = b, p.adam.bias_m[j] = m, p.adam.bias_v[j] = v;
    }
  }
  // W waits until no block reads it (the dx blocks took earlier tickets, so they are running or done).
  if (adam) gemm::wait_for_count(p.launch_counters + 1, p.dx_blocks);
  auto finish = [&](int64_t j, int64_t i, float grad) {
    const int64_t e = j * p.in + i;
    p.dweight[e] = grad;
    if (adam) {
      float w = p.weight[e], m = p.adam.weight_m[e], v = p.adam.weight_v[e];
      adam_update(grad, w, m, v, c);
      p.weight[e] = w, p.adam.weight_m[e] = m, p.adam.weight_v[e] = v;
    }
  };
  if (g.splits == 1)
    acc.for_each(p.out, p.in, at, finish);
  else
    gemm::for_each_reduced<T>(g.partials, g.splits, p.out, p.in, at, finish);
}

// A 1-D grid of dx_blocks + dW's blocks. Work goes by ticket, taken as a block starts, not by
// blockIdx: the dx tiles get the first tickets, so a dW block that waits for them waits only for
// blocks already running. The last block to finish leaves the launch's counters zero.
template <class T, typename TX>
__global__ void __launch_bounds__(T::kThreads)
    linear_backward_kernel(BackwardArgs p, Operand<float> dy_rows, WeightOperand weight, Operand<float> dy_columns,
                           Operand<TX> x) {
  __shared__ __align__(16) gemm::TileSmem<T> smem;
  __shared__ unsigned ticket;
  if (threadIdx.x == 0) ticket = atomicAdd(p.launch_counters, 1u);
  __syncthreads();
  const unsigned work = ticket;
  if (work < p.dx_blocks)
    input_gradient_block<T>(p, work, dy_rows, weight, smem);
  else
    weight_gradient_block<T, TX>(p, work - p.dx_blocks, dy_columns, x, smem);
  if (gemm::arrives_last(p.launch_counters + 2, gridDim.x) && threadIdx.x == 0) {
    p.launch_counters[0] = 0;
    p.launch_counters[1] = 0;
  }
}

template <class T>
void launch_backward(const LinearBackward& b, const BackwardArgs& args, unsigned blocks, cudaStream_t stream) {
  const Operand<float> dy_rows = gemm::make_operand(b.dy, b.out, args.mask);
  const WeightOperand weight = gemm::make_operand<float, false>(b.weight, b.in);
  if (b.pixels != nullptr)
    launch_kernel(linear_backward_kernel<T, uint8_t>, blocks, T::kThreads, stream, args, dy_rows, weight, dy_rows,
                  gemm::make_operand(b.pixels, b.in, gemm::pixel_load(b.signed_pixels)));
  else
    launch_kernel(linear_backward_kernel<T, float>, blocks, T::kThreads, stream, args, dy_rows, weight, dy_rows,
                  gemm::make_operand(b.x, b.in));
}

void check(bool ok, const char* what) {
  if (!ok) throw Error(std::string("linear layer backward: ") + what);
}

ProductGrid product_grid(const GemmPlan& plan, float* partials, unsigned* tile_counters) {
  return ProductGrid{plan.grid_m, plan.grid_n, plan.splits, plan.k_per_split, partials, tile_counters};
}

}  // namespace

void linear_backward(const LinearBackward& b, Precision precision, GemmWorkspace workspace, cudaStream_t stream) {
  const bool adam = b.adam.coefficients != nullptr;
  check((b.x == nullptr) != (b.pixels == nullptr), "exactly one of x and pixels is the input");
  check(b.pixels == nullptr || b.dx == nullptr, "the pixels have no gradient");
  check(b.reparam.dmu_logvar == nullptr || (b.dx != nullptr && b.in == b.reparam.latent),
        "the reparameterisation's gradient needs dz, [rows, latent], as dx");
  check(!adam || (b.adam.weight_m && b.adam.weight_v && b.adam.bias_m && b.adam.bias_v), "Adam needs both moments");
  check(b.rows >= 0 && b.in >= 0 && b.out >= 0, "negative size");
  const BackwardPlan plan =
      plan_linear_backward(b.rows, b.in, b.out, b.dx != nullptr, precision, multiprocessor_count());
  const int64_t blocks = plan.dx_blocks + plan.dw_blocks;
  if (blocks == 0) return;
  check(blocks <= 0x7FFFFFFF, "too many tiles for one launch");
  gemm::check_workspace("linear layer backward", workspace, plan.floats, plan.counters);
  const BackwardArgs args{b.rows,
                          b.in,
                          b.out,
                          product_grid(plan.dx, workspace.data, workspace.tile_counters + plan.dx_counters),
                          product_grid(plan.dw, workspace.data + plan.dw_floats,
                                       workspace.tile_counters + plan.dw_counters),
                          static_cast<unsigned>(plan.dx_blocks),
                          b.dy,
                          gemm::activation_backward_load(b.activation, b.negative_slope, b.y),
                          b.weight,
                          b.bias,
                          b.dx,
                          b.dweight,
                          b.dbias,
                          workspace.tile_counters,
                          b.reparam,
                          b.adam};
  const unsigned grid = static_cast<unsigned>(blocks);
  gemm::with_tile(precision, plan.dw.shape,
                  [&](auto tile) { launch_backward<decltype(tile)>(b, args, grid, stream); });
}

}  // namespace vae::cuda
