// The block-wide sum of one double per thread that the loss kernel reduces with. Under nvcc it is
// CUB's BlockReduce (its default warp-reductions algorithm); in emulation builds it is
// ShuffleBlockSum below, which adds in CUB's order with plain warp shuffles. ShuffleBlockSum also
// compiles for the device, where tests/test_block_sum_gpu.cu ties the two bit for bit.
#pragma once

#include "vae/device/kernel_runtime.hpp"

#if !defined(VAE_EMULATION)
#include <cub/block/block_reduce.cuh>
#endif

namespace vae {

// CUB's order for a full block of kThreads: each warp sums by shfl.down with offsets 1, 2, 4, 8, 16
// (lane 0 ends with the pairwise tree of its warp), then thread 0 adds the warps' sums in warp order.
template <int kThreads>
struct ShuffleBlockSum {
  static_assert(kThreads % 32 == 0, "whole warps only");
  struct TempStorage {
    double warp_sums[kThreads / 32];
  };
  __device__ explicit ShuffleBlockSum(TempStorage& storage) : storage_(storage) {}

  // The sum of every thread's value, valid in thread 0 only; every thread of the block must call it.
  __device__ double Sum(double value) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int offset = 1; offset < 32; offset *= 2) {
      const double other = __shfl_down_sync(0xFFFFFFFFu, value, offset);
      if (lane + offset < 32) value += other;
    }
    if (lane == 0) storage_.warp_sums[warp] = value;
    __syncthreads();
    if (threadIdx.x == 0)
      for (int w = 1; w < kThreads / 32; ++w) value += storage_.warp_sums[w];
    return value;
  }

 private:
  TempStorage& storage_;
};

#if defined(VAE_EMULATION)
template <int kThreads>
using BlockSum = ShuffleBlockSum<kThreads>;
#else
template <int kThreads>
using BlockSum = cub::BlockReduce<double, kThreads>;
#endif

}  // namespace vae
