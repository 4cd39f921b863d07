// What a kernel source sees of CUDA when the host compiler builds it for the emulator: the
// execution-space keywords, the built-in coordinates, barriers, warp shuffles and votes, __ldg, bit
// casts and integer atomics. Included through include/vae/device/kernel_runtime.hpp only, in
// builds that define VAE_EMULATION (tests/emulation), never in the product.
#pragma once

#include <cuda_runtime_api.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>  // isfinite, expf, ... unqualified, as device code calls them
#include <string>
#include <type_traits>

#include "emulator.hpp"
#include "vae/error.hpp"

// __shared__ storage is per block on the device. Blocks run one at a time here, so a static
// variable is exactly that, and ASan puts redzones around it like any global. (The toolkit's
// headers define it as nothing for host compilers.)
#undef __shared__
#define __shared__ static

// Occupancy hints mean nothing here.
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

#define threadIdx (::vae::emu::thread_index())
#define blockIdx (::vae::emu::block_index())
#define blockDim (::vae::emu::block_dim())
#define gridDim (::vae::emu::grid_dim())
#define warpSize (::vae::emu::kWarpSize)

inline void __syncthreads() { ::vae::emu::sync_block(); }
// The one warp collective that orders memory among its lanes.
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) {
  (void)::vae::emu::exchange_in_warp(mask, 0, ::vae::emu::kSyncWarpCollective, true);
}
// Global memory is coherent here, so a fence has nothing to order.
inline void __threadfence() {}

// Cache hints: all memory is coherent here.
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}

inline unsigned int __float_as_uint(float x) { return std::bit_cast<unsigned int>(x); }
inline float __uint_as_float(unsigned int x) { return std::bit_cast<float>(x); }

// The device's min and max overloads, for the integer and float types kernels mix.
template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}

namespace vae::emu {

template <typename T>
uint64_t to_bits(T value) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>, "shuffle of a type over 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof value);
  return bits;
}
template <typename T>
T from_bits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// A shuffle's id as a warp collective is (mode << 8) | width.
enum class ShuffleMode : uint32_t { kIdx = 0, kUp = 1, kDown = 2, kBfly = 3 };

// shfl.sync as the PTX ISA defines it, with the c operand CUDA's intrinsics pass:
// ((32 - width) << 8) | clamp, clamp 0 for up and 31 otherwise; only b[4:0] is used. A source lane
// outside the caller's range gives the caller's own value; a source lane outside the mask is
// undefined on the device and an error here. width must be a power of two from 1 to 32.
template <typename T>
T shuffle(unsigned mask, T value, ShuffleMode mode, unsigned b, int width) {
  if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0)
    throw Error("a warp shuffle with width " + std::to_string(width) + " (a power of two up to 32 is needed)");
  const int lane = lane_id();
  const int segmask = kWarpSize - width, clamp = mode == ShuffleMode::kUp ? 0 : 31;
  const int max_lane = (lane & segmask) | (clamp & ~segmask), min_lane = lane & segmask;
  const int offset = static_cast<int>(b & 31u);
  int source = lane;
  bool in_range = false;
  switch (mode) {
    case ShuffleMode::kUp: source = lane - offset, in_range = source >= max_lane; break;
    case ShuffleMode::kDown: source = lane + offset, in_range = source <= max_lane; break;
    case ShuffleMode::kBfly: source = lane ^ offset, in_range = source <= max_lane; break;
    case ShuffleMode::kIdx: source = min_lane | (offset & ~segmask), in_range = source <= max_lane; break;
  }
  if (!in_range) source = lane;
  const WarpValues all =
      exchange_in_warp(mask, to_bits(value), static_cast<uint32_t>(mode) << 8 | static_cast<uint32_t>(width), false);
  if (!(mask >> source & 1))
    throw Error("a warp shuffle reads lane " + std::to_string(source) + ", which is not in its mask");
  return from_bits<T>(all.lane[source]);
}

}  // namespace vae::emu

template <typename T>
T __shfl_sync(unsigned mask, T value, int source, int width = warpSize) {
  return ::vae::emu::shuffle(mask, value, ::vae::emu::ShuffleMode::kIdx, static_cast<unsigned>(source), width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  return ::vae::emu::shuffle(mask, value, ::vae::emu::ShuffleMode::kUp, delta, width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  return ::vae::emu::shuffle(mask, value, ::vae::emu::ShuffleMode::kDown, delta, width);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize) {
  return ::vae::emu::shuffle(mask, value, ::vae::emu::ShuffleMode::kBfly, static_cast<unsigned>(lane_mask), width);
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const ::vae::emu::WarpValues all =
      ::vae::emu::exchange_in_warp(mask, predicate != 0, ::vae::emu::kBallotCollective, false);
  unsigned ballot = 0;
  for (int lane = 0; lane < ::vae::emu::kWarpSize; ++lane)
    if ((mask >> lane & 1) && all.lane[lane] != 0) ballot |= 1u << lane;
  return ballot;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }

// Atomics: the threads of a block interleave only at barriers here and blocks run in turn, so a
// read-modify-write is indivisible as it stands. Returns the old value, as on the device. Integer
// only: float atomics would make sums depend on block order, which this engine forbids.
template <typename T>
inline T atomicAdd(T* address, T value) {
  static_assert(std::is_same_v<T, int> || std::is_same_v<T, unsigned> || std::is_same_v<T, unsigned long long>,
                "integer atomics only");
  const T old = *address;
  *address = old + value;
  return old;
}
