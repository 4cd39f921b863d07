// The block-level GEMM the fused linear-layer kernels are built from: one block computes one tile
// of C = A · B over a range of K into registers (FP32 on CUDA cores, or TF32 on tensor cores with
// mma.m16n8k8 and FP32 accumulation), then hands every element it owns to an epilogue. Also the
// one way blocks of a launch hand work to each other: counters that tell a block it arrived last,
// so that no block ever waits for another that may not have started.
#pragma once

#include <cstdint>
#include <string>

#include "vae/device/kernel_runtime.hpp"
#include "vae/device/tensor_core.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/gemm_plan.hpp"

namespace vae::cuda::gemm {

// What happens to an operand's elements as they are loaded. uint8 data are pixels, read as
// value / 255, or on [-1, 1] (pixel_to_signed) with signed_pixels. activation_output, when set, is
// the output of an activation at the same index, and each element (a gradient at that output)
// becomes activation_grad(activation, negative_slope, element, output): the activation's backward,
// fused into the load.
struct LoadTransform {
  const float* activation_output = nullptr;
  Activation activation = Activation::kIdentity;
  float negative_slope = 0.0f;
  bool signed_pixels = false;
};

// The pixels' load: on [0, 1], or on [-1, 1] with signed_pixels.
inline LoadTransform pixel_load(bool signed_pixels) {
  LoadTransform load;
  load.signed_pixels = signed_pixels;
  return load;
}
// The load of a gradient at an activation's output y (none for kIdentity).
inline LoadTransform activation_backward_load(Activation activation, float negative_slope, const float* y) {
  LoadTransform load;
  if (activation != Activation::kIdentity) {
    load.activation_output = y;
    load.activation = activation;
    load.negative_slope = negative_slope;
  }
  return load;
}

// One GEMM operand. A is [M x K], B is [K x N]. With contiguous K, A(m, k) = data[m * ld + k] and
// B(k, n) = data[n * ld + k]; otherwise A(m, k) = data[k * ld + m] and B(k, n) = data[k * ld + n].
// kReadOnly: the data do not change while the kernel runs, so vector loads may go through the
// non-coherent read-only cache (__ldg); an operand that a later block of the same launch writes (the
// weight Adam updates in the backward) must not.
template <typename T, bool kReadOnly_ = true>
struct Operand {
  static constexpr bool kReadOnly = kReadOnly_;
  const T* data;
  LoadTransform load;
  int64_t ld;
  bool vector_ok;  // ld % 4 == 0 and the pointers aligned for 4-element loads
};

template <typename T, bool kReadOnly = true>
Operand<T, kReadOnly> make_operand(const T* data, int64_t ld, LoadTransform load = {}) {
  auto aligned = [](const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
  const bool vector_ok = ld % 4 == 0 && aligned(data, 4 * sizeof(T)) &&
                         (load.activation_output == nullptr || aligned(load.activation_output, 4 * sizeof(float)));
  return Operand<T, kReadOnly>{data, load, ld, vector_ok};
}

__device__ __forceinline__ float to_float(float v, bool /*signed_pixels*/) { return v; }
__device__ __forceinline__ float to_float(uint8_t v, bool signed_pixels) { return pixel_value(v, signed_pixels); }

template <bool kReadOnly, typename V>
__device__ __forceinline__ V load_vector(const V* p) {
  if constexpr (kReadOnly)
    return __ldg(p);
  else
    return *p;
}
template <bool kReadOnly>
__device__ __forceinline__ void load4(const float* p, float (&v)[4], bool /*signed_pixels*/ = false) {
  const float4 q = load_vector<kReadOnly>(reinterpret_cast<const float4*>(p));
  v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
template <bool kReadOnly>
__device__ __forceinline__ void load4(const uint8_t* p, float (&v)[4], bool signed_pixels) {
  const uchar4 q = load_vector<kReadOnly>(reinterpret_cast<const uchar4*>(p));
  v[0] = to_float(q.x, signed_pixels), v[1] = to_float(q.y, signed_pixels), v[2] = to_float(q.z, signed_pixels),
  v[3] = to_float(q.w, signed_pixels);
}

// The activation's backward on a loaded gradient; ReLU's mask spelled out, so the default model's
// load stays one compare.
__device__ __forceinline__ float masked(const LoadTransform& t, float dy, float y) {
  return t.activation == Activation::kReLU ? relu_grad(dy, y) : activation_grad(t.activation, t.negative_slope, dy, y);
}

// Loads an outer x inner tile of `op` (inner = the contiguous dimension) starting at (outer0,
// inner0); elements at or past the limits read as 0, so every tail is handled here and the compute
// loops never branch. store(o, i, value) puts element (o, i) of the tile into shared memory.
template <int kThreads, int kOuter, int kInner, class Op, typename Store>
__device__ __forceinline__ void load_tile(const Op& op, int64_t outer0, int64_t inner0, int64_t outer_limit,
                                          int64_t inner_limit, Store store) {
  constexpr int kChunksPerRow = kInner / 4;
  for (int chunk = threadIdx.x; chunk < kOuter * kChunksPerRow; chunk += kThreads) {
    const int o = chunk / kChunksPerRow, i = (chunk % kChunksPerRow) * 4;
    const int64_t go = outer0 + o, gi = inner0 + i;
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (go < outer_limit) {
      const int64_t base = go * op.ld + gi;
      if (op.vector_ok && gi + 4 <= inner_limit) {
        load4<Op::kReadOnly>(op.data + base, v, op.load.signed_pixels);
        if (op.load.activation_output != nullptr) {
          float y[4];
          load4<Op::kReadOnly>(op.load.activation_output + base, y);
          for (int e = 0; e < 4; ++e) v[e] = masked(op.load, v[e], y[e]);
        }
      } else {
        for (int e = 0; e < 4 && gi + e < inner_limit; ++e) {
          v[e] = to_float(op.data[base + e], op.load.signed_pixels);
          if (op.load.activation_output != nullptr) v[e] = masked(op.load, v[e], op.load.activation_output[base + e]);
        }
      }
    }
    for (int e = 0; e < 4; ++e) store(o, i + e, v[e]);
  }
}

// The block's work: a BM x BN output tile, K in passes of kTileK. FP32 blocks are 16 x 16 threads,
// each owning a (BM / 16) x (BN / 16) patch; TF32 blocks are 2 x 2 warps of 16x8 mma tiles.
template <int BM_, int BN_, bool kTf32_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = kTileK;
  static constexpr bool kTf32 = kTf32_;
  static constexpr int kThreads = kTf32 ? 128 : 256;
  // Row padding: FP32 keeps rows 16-byte aligned for float4 fragment reads; TF32's +8 puts the 32
  // lanes' fragment reads (k = lane % 4, m or n = lane / 4) on 32 different banks.
  static constexpr int kPad = kTf32 ? 8 : 4;
  static constexpr int TM = BM / 16, TN = BN / 16;                   // FP32 patch
  static constexpr int WM = BM / 2, WN = BN / 2, MT = WM / 16, NT = WN / 8;  // TF32 warp patch
  static_assert(!kTf32 || (WM % 16 == 0 && WN % 8 == 0), "warp tile must be whole mma tiles");
};

template <class T>
struct TileSmem {
  float a[T::BK][T::BM + T::kPad];  // As[k][m]
  float b[T::BK][T::BN + T::kPad];  // Bs[k][n]
};

// Where a block's tile sits: rows [m0, m0 + BM) and columns [n0, n0 + BN) of C, K in [k_begin, k_end).
struct TileCoords {
  int64_t m0, n0, k_begin, k_end;
};

// The thread's accumulators and which elements of the tile they are.
template <class T>
struct Accumulator {
  float acc[T::kTf32 ? T::MT : T::TM][T::kTf32 ? T::NT : T::TN][T::kTf32 ? 4 : 1] = {};

  // visit(row, col, value) for every element this thread holds that lies inside [m, n).
  template <class Visit>
  __device__ __forceinline__ void for_each(int m, int n, const TileCoords& at, Visit visit) const {
    auto emit = [&](int64_t row, int64_t col, float value) {
      if (row < m && col < n) visit(row, col, value);
    };
    if constexpr (T::kTf32) {
      // mma's accumulator layout: c0, c1 at (g, 2t), (g, 2t + 1); c2, c3 eight rows below.
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane >> 2, member = lane & 3;
      const int warp_m = (warp / 2) * T::WM, warp_n = (warp % 2) * T::WN;
#pragma unroll
      for (int mt = 0; mt < T::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < T::NT; ++nt) {
          const int64_t row = at.m0 + warp_m + mt * 16 + group, col = at.n0 + warp_n + nt * 8 + 2 * member;
          emit(row, col, acc[mt][nt][0]);
          emit(row, col + 1, acc[mt][nt][1]);
          emit(row + 8, col, acc[mt][nt][2]);
          emit(row + 8, col + 1, acc[mt][nt][3]);
        }
    } else {
      const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
      for (int i = 0; i < T::TM; ++i)
#pragma unroll
        for (int j = 0; j < T::TN; ++j) emit(at.m0 + ty * T::TM + i, at.n0 + tx * T::TN + j, acc[i][j][0]);
    }
  }
};

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

// Operands are rounded to TF32 once, as they enter shared memory.
__device__ __forceinline__ float round_to_tf32(float x) { return __uint_as_float(round_to_tf32_bits(x)); }

// The tile's product over [k_begin, k_end) into acc. Returns after a barrier, with every thread's
// reads of A and B done, so the caller may signal that the operands are free.
template <class T, bool kAContiguousK, bool kBContiguousK, class OpA, class OpB>
__device__ __forceinline__ void accumulate(int m, int n, const TileCoords& at, const OpA& a, const OpB& b,
                                           TileSmem<T>& s, Accumulator<T>& out) {
  auto store_a = [&](int kk, int mm, float v) { s.a[kk][mm] = T::kTf32 ? round_to_tf32(v) : v; };
  auto store_b = [&](int kk, int nn, float v) { s.b[kk][nn] = T::kTf32 ? round_to_tf32(v) : v; };
  for (int64_t k0 = at.k_begin; k0 < at.k_end; k0 += T::BK) {
    if constexpr (kAContiguousK)
      load_tile<T::kThreads, T::BM, T::BK>(a, at.m0, k0, m, at.k_end, [&](int mm, int kk, float v) { store_a(kk, mm, v); });
    else
      load_tile<T::kThreads, T::BK, T::BM>(a, k0, at.m0, at.k_end, m, store_a);
    if constexpr (kBContiguousK)
      load_tile<T::kThreads, T::BN, T::BK>(b, at.n0, k0, n, at.k_end, [&](int nn, int kk, float v) { store_b(kk, nn, v); });
    else
      load_tile<T::kThreads, T::BK, T::BN>(b, k0, at.n0, at.k_end, n, store_b);
    __syncthreads();
    if constexpr (T::kTf32) {
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      const int group = lane >> 2, member = lane & 3;  // PTX's groupID and threadID_in_group
      const int warp_m = (warp / 2) * T::WM, warp_n = (warp % 2) * T::WN;
#pragma unroll
      for (int kk = 0; kk < T::BK; kk += 8) {
        uint32_t af[T::MT][4], bf[T::NT][2];
#pragma unroll
        for (int mt = 0; mt < T::MT; ++mt) {
          const int row = warp_m + mt * 16 + group;
          af[mt][0] = __float_as_uint(s.a[kk + member][row]);          // (row g,     col t)
          af[mt][1] = __float_as_uint(s.a[kk + member][row + 8]);      // (row g + 8, col t)
          af[mt][2] = __float_as_uint(s.a[kk + member + 4][row]);      // (row g,     col t + 4)
          af[mt][3] = __float_as_uint(s.a[kk + member + 4][row + 8]);  // (row g + 8, col t + 4)
        }
#pragma unroll
        for (int nt = 0; nt < T::NT; ++nt) {
          const int col = warp_n + nt * 8 + group;
          bf[nt][0] = __float_as_uint(s.b[kk + member][col]);      // (k t,     n g)
          bf[nt][1] = __float_as_uint(s.b[kk + member + 4][col]);  // (k t + 4, n g)
        }
#pragma unroll
        for (int mt = 0; mt < T::MT; ++mt)
#pragma unroll
          for (int nt = 0; nt < T::NT; ++nt) mma_16x8x8_tf32(out.acc[mt][nt], af[mt], bf[nt]);
      }
    } else {
      const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
      for (int kk = 0; kk < T::BK; ++kk) {
        float af[T::TM], bf[T::TN];
        load_fragment<T::TM>(&s.a[kk][ty * T::TM], af);
        load_fragment<T::TN>(&s.b[kk][tx * T::TN], bf);
#pragma unroll
        for (int i = 0; i < T::TM; ++i)
#pragma unroll
          for (int j = 0; j < T::TN; ++j) out.acc[i][j][0] = fmaf(af[i], bf[j], out.acc[i][j][0]);
      }
    }
    __syncthreads();
  }
}

// Block-uniform: every block that shares `counter` calls this once after its stores; it returns
// true in the block that arrives last (the expected-th), which then sees every other block's stores
// and may combine them. That block resets the counter, so a launch leaves it zero for the next.
// No block waits, so this also runs where blocks run one after another.
__device__ __forceinline__ bool arrives_last(unsigned* counter, unsigned expected) {
  __shared__ bool last;
  __threadfence();  // this thread's stores reach the device before the block counts itself in
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1u) == expected - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// Block-uniform: waits until *counter reaches target, counted up by blocks that started before this
// one (a block's work comes from a ticket taken when it starts, so those blocks are running or done
// and the wait ends). Where blocks run one after another they are all done: a wait that would block
// there is a block waiting for a later one, which this engine's design forbids, and is an error.
__device__ __forceinline__ void wait_for_count(const unsigned* counter, unsigned target) {
  if (threadIdx.x == 0) {
    // Plain (volatile) loads, not atomics: polling with read-modify-writes would queue at L2 ahead of
    // the very increments it waits for.
    const volatile unsigned* count = counter;
#if defined(VAE_EMULATION)
    if (*count < target) throw Error("a block waits for a block that starts after it");
#else
    for (unsigned pause = 32; *count < target; pause = min(2 * pause, 1024u)) __nanosleep(pause);
#endif
    __threadfence();
  }
  __syncthreads();
}

// Split-K partial sums: split s of element (row, col) of an m x n product.
__device__ __forceinline__ int64_t partial_index(int64_t split, int m, int n, int64_t row, int64_t col) {
  return (split * m + row) * n + col;
}

// In the tile's last block: visit(row, col, sum) for every element of the tile inside [m, n), the
// splits' partials added in split order (the same bits whichever block arrived last). L2 loads:
// the other blocks' partials may not be in this SM's L1, or may be stale there.
template <class T, class Visit>
__device__ __forceinline__ void for_each_reduced(const float* partials, int splits, int m, int n, const TileCoords& at,
                                                 Visit visit) {
  for (int e = threadIdx.x; e < T::BM * T::BN; e += blockDim.x) {
    const int64_t row = at.m0 + e / T::BN, col = at.n0 + e % T::BN;
    if (row >= m || col >= n) continue;
    float total = 0.0f;
    for (int s = 0; s < splits; ++s) total += __ldcg(partials + partial_index(s, m, n, row, col));
    visit(row, col, total);
  }
}

// The block tiles compiled, one per precision and tile shape: calls launch(Tile<...>{}) with this one.
template <class Launch>
void with_tile(Precision precision, TileShape shape, Launch launch) {
  const bool large = shape == TileShape::kLarge;
  if (precision == Precision::kTf32)
    large ? launch(Tile<64, 64, true>{}) : launch(Tile<32, 32, true>{});
  else
    large ? launch(Tile<64, 64, false>{}) : launch(Tile<32, 32, false>{});
}

// Throws vae::Error naming the launch ("linear layer forward") when the workspace holds fewer partial
// sums or counters than its plan needs.
inline void check_workspace(const char* launch, const GemmWorkspace& workspace, int64_t floats, int64_t counters) {
  if (floats > workspace.floats || counters > workspace.counters)
    throw Error(std::string(launch) + ": GEMM workspace holds " + std::to_string(workspace.floats) + " floats and " +
                std::to_string(workspace.counters) + " counters, needs " + std::to_string(floats) + " and " +
                std::to_string(counters));
}

}  // namespace vae::cuda::gemm
