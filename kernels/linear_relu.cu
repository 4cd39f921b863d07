// Fused linear layers on our own tiled GEMM: y = relu(x · Wᵀ + b) forward, and dx, dW, db backward
// with the ReLU mask applied as dy is loaded. One kernel template serves all three products through
// operand layouts; FP32 runs on CUDA cores, TF32 on tensor cores (mma.m16n8k8, FP32 accumulation).
// Split-K partial sums are reduced in a fixed order by the last block of each tile, in the same
// launch, so results are bitwise reproducible and a layer's product is one kernel.
#include <cstdint>
#include <string>

#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/device/tensor_core.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/gemm_plan.hpp"

namespace vae::cuda {
namespace {

// One GEMM operand. A is [M x K], B is [K x N]. With contiguous K, A(m, k) = data[m * ld + k] and
// B(k, n) = data[n * ld + k]; otherwise A(m, k) = data[k * ld + m] and B(k, n) = data[k * ld + n].
// uint8 data are pixels, read as value / 255. relu_output, when set, masks each element by
// (relu_output > 0) at the same index: the ReLU backward, fused into the load.
template <typename T>
struct Operand {
  const T* data;
  const float* relu_output;
  int64_t ld;
  bool vector_ok;  // ld % 4 == 0 and the pointers aligned for 4-element loads
};

// Where results go: straight to out with bias and ReLU, or (split-K) to this split's partial sums,
// which the tile's last block then sums into out.
struct Epilogue {
  const float* bias;  // may be null
  bool relu;
  float* out;
  int64_t ldc;
  float* partials;          // [splits][m][n], used when splits > 1
  unsigned* tile_counters;  // [grid_m * grid_n] splits that have stored their partials; zero between launches
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(uint8_t v) { return pixel_to_unit(v); }

__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
  const float4 q = __ldg(reinterpret_cast<const float4*>(p));
  v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
__device__ __forceinline__ void load4(const uint8_t* p, float (&v)[4]) {
  const uchar4 q = __ldg(reinterpret_cast<const uchar4*>(p));
  v[0] = to_float(q.x), v[1] = to_float(q.y), v[2] = to_float(q.z), v[3] = to_float(q.w);
}

// Loads an outer x inner tile of `op` (inner = the contiguous dimension) starting at (outer0,
// inner0); elements at or past the limits read as 0, so every tail is handled here and the compute
// loops never branch. store(o, i, value) puts element (o, i) of the tile into shared memory.
template <int kThreads, int kOuter, int kInner, typename T, typename Store>
__device__ __forceinline__ void load_tile(const Operand<T>& op, int64_t outer0, int64_t inner0, int64_t outer_limit,
                                          int64_t inner_limit, Store store) {
  constexpr int kChunksPerRow = kInner / 4;
  for (int chunk = threadIdx.x; chunk < kOuter * kChunksPerRow; chunk += kThreads) {
    const int o = chunk / kChunksPerRow, i = (chunk % kChunksPerRow) * 4;
    const int64_t go = outer0 + o, gi = inner0 + i;
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (go < outer_limit) {
      const int64_t base = go * op.ld + gi;
      if (op.vector_ok && gi + 4 <= inner_limit) {
        load4(op.data + base, v);
        if (op.relu_output != nullptr) {
          float y[4];
          load4(op.relu_output + base, y);
          for (int e = 0; e < 4; ++e) v[e] = relu_grad(v[e], y[e]);
        }
      } else {
        for (int e = 0; e < 4 && gi + e < inner_limit; ++e) {
          v[e] = to_float(op.data[base + e]);
          if (op.relu_output != nullptr) v[e] = relu_grad(v[e], op.relu_output[base + e]);
        }
      }
    }
    for (int e = 0; e < 4; ++e) store(o, i + e, v[e]);
  }
}

// Fills the block's shared tiles As[k][m] and Bs[k][n] for K range [k0, k_limit).
template <int kThreads, int BM, int BN, int BK, bool kAContiguousK, bool kBContiguousK, typename TA, typename TB,
          typename StoreA, typename StoreB>
__device__ __forceinline__ void load_tiles(const Operand<TA>& a, const Operand<TB>& b, int m, int n, int64_t m0,
                                           int64_t n0, int64_t k0, int64_t k_limit, StoreA store_a, StoreB store_b) {
  if constexpr (kAContiguousK) {
    load_tile<kThreads, BM, BK>(a, m0, k0, m, k_limit, [&](int mm, int kk, float v) { store_a(kk, mm, v); });
  } else {
    load_tile<kThreads, BK, BM>(a, k0, m0, k_limit, m, [&](int kk, int mm, float v) { store_a(kk, mm, v); });
  }
  if constexpr (kBContiguousK) {
    load_tile<kThreads, BN, BK>(b, n0, k0, n, k_limit, [&](int nn, int kk, float v) { store_b(kk, nn, v); });
  } else {
    load_tile<kThreads, BK, BN>(b, k0, n0, k_limit, n, [&](int kk, int nn, float v) { store_b(kk, nn, v); });
  }
}

__device__ __forceinline__ void store_result(const Epilogue& ep, int splits, int m, int n, int64_t row, int64_t col,
                                             float value) {
  if (row >= m || col >= n) return;
  if (splits > 1) {
    ep.partials[(static_cast<int64_t>(blockIdx.z) * m + row) * n + col] = value;
    return;
  }
  if (ep.bias != nullptr) value += ep.bias[col];
  if (ep.relu) value = relu(value);
  ep.out[row * ep.ldc + col] = value;
}

// Split-K without a second kernel: each block of a tile stores its partial sums and counts itself
// in; the block that arrives last sums every split's partials in split order (the same bits
// whichever block that is), adds bias and ReLU, and resets the counter for the next launch. No block
// ever waits for another, so this also runs where blocks run one after another.
template <int BM, int BN>
__device__ __forceinline__ void reduce_splits_if_last(const Epilogue& ep, int m, int n, int64_t m0, int64_t n0) {
  __shared__ bool last;
  __threadfence();  // this thread's partials reach the device before the block counts itself in
  __syncthreads();
  unsigned* counter = ep.tile_counters + blockIdx.y * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.z - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int64_t count = static_cast<int64_t>(m) * n;
  for (int e = threadIdx.x; e < BM * BN; e += blockDim.x) {
    const int64_t row = m0 + e / BN, col = n0 + e % BN;
    if (row >= m || col >= n) continue;
    float total = 0.0f;
    // L2 loads: the other blocks' partials may not be in this SM's L1, or may be stale there.
    for (unsigned s = 0; s < gridDim.z; ++s) total += __ldcg(ep.partials + s * count + row * n + col);
    if (ep.bias != nullptr) total += ep.bias[col];
    if (ep.relu) total = relu(total);
    ep.out[row * ep.ldc + col] = total;
  }
  if (threadIdx.x == 0) *counter = 0;
}

template <int N>
__device__ __forceinline__ void load_fragment(const float* p, float (&v)[N]) {
  if constexpr (N == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else if constexpr (N == 2) {
    const float2 q = *reinterpret_cast<const float2*>(p);
    v[0] = q.x, v[1] = q.y;
  } else {
    for (int i = 0; i < N; ++i) v[i] = p[i];
  }
}

// FP32 on CUDA cores: each thread owns a TM x TN patch of the BM x BN block tile and accumulates
// its outer products over K in registers. Block z handles K range [z * k_per_split, ...).
template <int BM, int BN, int BK, int TM, int TN, bool kAContiguousK, bool kBContiguousK, typename TA, typename TB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    gemm_fp32_kernel(int m, int n, int k, int k_per_split, Operand<TA> a, Operand<TB> b, Epilogue ep) {
  constexpr int kThreads = (BM / TM) * (BN / TN);
  // +4 keeps rows 16-byte aligned for the float4 fragment reads.
  __shared__ __align__(16) float As[BK][BM + 4];
  __shared__ __align__(16) float Bs[BK][BN + 4];
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * k_per_split;
  const int64_t k_end = min(static_cast<int64_t>(k), k_begin + k_per_split);
  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);

  float acc[TM][TN] = {};
  for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
    load_tiles<kThreads, BM, BN, BK, kAContiguousK, kBContiguousK>(
        a, b, m, n, m0, n0, k0, k_end, [&](int kk, int mm, float v) { As[kk][mm] = v; },
        [&](int kk, int nn, float v) { Bs[kk][nn] = v; });
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float af[TM], bf[TN];
      load_fragment<TM>(&As[kk][ty * TM], af);
      load_fragment<TN>(&Bs[kk][tx * TN], bf);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) store_result(ep, gridDim.z, m, n, m0 + ty * TM + i, n0 + tx * TN + j, acc[i][j]);
  if (gridDim.z > 1) reduce_splits_if_last<BM, BN>(ep, m, n, m0, n0);
}

// Operands are rounded to TF32 once, as they enter shared memory.
__device__ __forceinline__ float round_to_tf32(float x) { return __uint_as_float(round_to_tf32_bits(x)); }

// TF32 on tensor cores: WARPS_M x WARPS_N warps, each owning a (BM / WARPS_M) x (BN / WARPS_N) patch
// made of 16x8 mma tiles. Fragments are read from the same As[k][m], Bs[k][n] tiles as FP32 uses.
template <int BM, int BN, int BK, int WARPS_M, int WARPS_N, bool kAContiguousK, bool kBContiguousK, typename TA,
          typename TB>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32)
    gemm_tf32_kernel(int m, int n, int k, int k_per_split, Operand<TA> a, Operand<TB> b, Epilogue ep) {
  constexpr int kThreads = WARPS_M * WARPS_N * 32;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  constexpr int MT = WM / 16, NT = WN / 8;
  static_assert(WM % 16 == 0 && WN % 8 == 0 && BK % 8 == 0, "warp tile must be whole mma tiles");
  // +8 puts the 32 lanes' fragment reads (k = lane % 4, m or n = lane / 4) on 32 different banks.
  __shared__ __align__(16) float As[BK][BM + 8];
  __shared__ __align__(16) float Bs[BK][BN + 8];
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * k_per_split;
  const int64_t k_end = min(static_cast<int64_t>(k), k_begin + k_per_split);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane >> 2, member = lane & 3;  // PTX's groupID and threadID_in_group
  const int warp_m = (warp / WARPS_N) * WM, warp_n = (warp % WARPS_N) * WN;

  float acc[MT][NT][4] = {};
  for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
    load_tiles<kThreads, BM, BN, BK, kAContiguousK, kBContiguousK>(
        a, b, m, n, m0, n0, k0, k_end, [&](int kk, int mm, float v) { As[kk][mm] = round_to_tf32(v); },
        [&](int kk, int nn, float v) { Bs[kk][nn] = round_to_tf32(v); });
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int row = warp_m + mt * 16 + group;
        af[mt][0] = __float_as_uint(As[kk + member][row]);          // (row g,     col t)
        af[mt][1] = __float_as_uint(As[kk + member][row + 8]);      // (row g + 8, col t)
        af[mt][2] = __float_as_uint(As[kk + member + 4][row]);      // (row g,     col t + 4)
        af[mt][3] = __float_as_uint(As[kk + member + 4][row + 8]);  // (row g + 8, col t + 4)
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int col = warp_n + nt * 8 + group;
        bf[nt][0] = __float_as_uint(Bs[kk + member][col]);      // (k t,     n g)
        bf[nt][1] = __float_as_uint(Bs[kk + member + 4][col]);  // (k t + 4, n g)
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma_16x8x8_tf32(acc[mt][nt], af[mt], bf[nt]);
    }
    __syncthreads();
  }
  // Accumulator layout: c0, c1 at (g, 2t), (g, 2t + 1); c2, c3 eight rows below.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int64_t row = m0 + warp_m + mt * 16 + group, col = n0 + warp_n + nt * 8 + 2 * member;
      store_result(ep, gridDim.z, m, n, row, col, acc[mt][nt][0]);
      store_result(ep, gridDim.z, m, n, row, col + 1, acc[mt][nt][1]);
      store_result(ep, gridDim.z, m, n, row + 8, col, acc[mt][nt][2]);
      store_result(ep, gridDim.z, m, n, row + 8, col + 1, acc[mt][nt][3]);
    }
  if (gridDim.z > 1) reduce_splits_if_last<BM, BN>(ep, m, n, m0, n0);
}

// db[j] = sum over rows of dy[r][j], masked by y > 0 when relu_output is set; one thread per
// column, rows in order, reads coalesced across the warp.
__global__ void bias_grad_kernel(int rows, int out, const float* __restrict__ dy,
                                 const float* __restrict__ relu_output, float* __restrict__ dbias) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= out) return;
  float total = 0.0f;
  for (int r = 0; r < rows; ++r) {
    const int64_t i = static_cast<int64_t>(r) * out + col;
    total += relu_output == nullptr ? dy[i] : relu_grad(dy[i], relu_output[i]);
  }
  dbias[col] = total;
}

template <typename T>
Operand<T> make_operand(const T* data, const float* relu_output, int64_t ld) {
  auto aligned = [](const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
  const bool vector_ok = ld % 4 == 0 && aligned(data, 4 * sizeof(T)) &&
                         (relu_output == nullptr || aligned(relu_output, 4 * sizeof(float)));
  return Operand<T>{data, relu_output, ld, vector_ok};
}

// C = A · B with the epilogue, on the tiles and splits plan_gemm picks. The instantiations below
// are the only ones: one per product (forward, input gradient, weight gradient) and input type.
template <bool kAContiguousK, bool kBContiguousK, typename TA, typename TB>
void launch_gemm(int m, int n, int k, Operand<TA> a, Operand<TB> b, Epilogue ep, Precision precision,
                 GemmWorkspace workspace, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return;
  const GemmPlan plan = plan_gemm(m, n, k, precision, multiprocessor_count());
  if (plan.workspace_floats > workspace.floats || plan.tile_counters > workspace.counters)
    throw Error("linear layer: GEMM workspace holds " + std::to_string(workspace.floats) + " floats and " +
                std::to_string(workspace.counters) + " tile counters, needs " + std::to_string(plan.workspace_floats) +
                " and " + std::to_string(plan.tile_counters));
  ep.partials = workspace.data;
  ep.tile_counters = workspace.tile_counters;
  const dim3 grid(plan.grid_n, plan.grid_m, plan.splits);
  const bool large = plan.shape == TileShape::kLarge;
  if (precision == Precision::kTf32) {
    if (large)
      launch_kernel(gemm_tf32_kernel<64, 64, kTileK, 2, 2, kAContiguousK, kBContiguousK, TA, TB>, grid, 128, stream,
                    m, n, k, plan.k_per_split, a, b, ep);
    else
      launch_kernel(gemm_tf32_kernel<32, 32, kTileK, 2, 2, kAContiguousK, kBContiguousK, TA, TB>, grid, 128, stream,
                    m, n, k, plan.k_per_split, a, b, ep);
  } else {
    if (large)
      launch_kernel(gemm_fp32_kernel<64, 64, kTileK, 4, 4, kAContiguousK, kBContiguousK, TA, TB>, grid, 256, stream,
                    m, n, k, plan.k_per_split, a, b, ep);
    else
      launch_kernel(gemm_fp32_kernel<32, 32, kTileK, 2, 2, kAContiguousK, kBContiguousK, TA, TB>, grid, 256, stream,
                    m, n, k, plan.k_per_split, a, b, ep);
  }
}

void launch_bias_grad(int rows, int out, const float* dy, const float* relu_output, float* dbias,
                      cudaStream_t stream) {
  constexpr int kBlock = 128;
  launch_kernel(bias_grad_kernel, (out + kBlock - 1) / kBlock, kBlock, stream, rows, out, dy, relu_output, dbias);
}

// Forward: A = x [rows, in] (K contiguous), B(k, n) = W[n][k] (K contiguous).
template <typename TX>
void forward(int rows, int in, int out, bool relu, const TX* x, const float* weight, const float* bias, float* y,
             Precision precision, GemmWorkspace workspace, cudaStream_t stream) {
  launch_gemm<true, true>(rows, out, in, make_operand(x, nullptr, in), make_operand(weight, nullptr, in),
                          Epilogue{bias, relu, y, out, nullptr, nullptr}, precision, workspace, stream);
}

// Weight gradient: dW[out, in] = mask(dy)ᵀ · x. A(m = j, k = r) = dy[r][j] (M contiguous),
// B(k = r, n = i) = x[r][i] (N contiguous).
template <typename TX>
void weight_grad(int rows, int in, int out, bool relu, const TX* x, const float* y, const float* dy, float* dweight,
                 Precision precision, GemmWorkspace workspace, cudaStream_t stream) {
  launch_gemm<false, false>(out, in, rows, make_operand(dy, relu ? y : nullptr, out), make_operand(x, nullptr, in),
                            Epilogue{nullptr, false, dweight, in, nullptr, nullptr}, precision, workspace, stream);
}

}  // namespace

void linear_forward(int rows, int in, int out, bool relu, const float* x, const float* weight, const float* bias,
                    float* y, Precision precision, GemmWorkspace workspace, cudaStream_t stream) {
  forward(rows, in, out, relu, x, weight, bias, y, precision, workspace, stream);
}

void linear_forward_pixels(int rows, int in, int out, bool relu, const uint8_t* pixels, const float* weight,
                           const float* bias, float* y, Precision precision, GemmWorkspace workspace,
                           cudaStream_t stream) {
  forward(rows, in, out, relu, pixels, weight, bias, y, precision, workspace, stream);
}

void linear_backward(int rows, int in, int out, bool relu, const float* x, const float* weight, const float* y,
                     const float* dy, float* dx, float* dweight, float* dbias, Precision precision,
                     GemmWorkspace workspace, cudaStream_t stream) {
  const float* mask = relu ? y : nullptr;
  if (dx != nullptr) {
    // dx[rows, in] = mask(dy) · W: A = dy (K contiguous), B(k = j, n = i) = W[j][i] (N contiguous).
    launch_gemm<true, false>(rows, in, out, make_operand(dy, mask, out), make_operand(weight, nullptr, in),
                             Epilogue{nullptr, false, dx, in, nullptr, nullptr}, precision, workspace, stream);
  }
  weight_grad(rows, in, out, relu, x, y, dy, dweight, precision, workspace, stream);
  launch_bias_grad(rows, out, dy, mask, dbias, stream);
}

void linear_backward_pixels(int rows, int in, int out, bool relu, const uint8_t* pixels, const float* y,
                            const float* dy, float* dweight, float* dbias, Precision precision,
                            GemmWorkspace workspace, cudaStream_t stream) {
  weight_grad(rows, in, out, relu, pixels, y, dy, dweight, precision, workspace, stream);
  launch_bias_grad(rows, out, dy, relu ? y : nullptr, dbias, stream);
}

}  // namespace vae::cuda
