// Standard normals from Philox4x32-10 inside kernels: cuRAND's device API under nvcc, and in
// emulation builds the CPU implementation of the same draws (include/vae/philox.hpp), which
// tests/test_philox.cpp ties to cuRAND's own generator bit for bit.
#pragma once

#include <cstdint>

#include "vae/philox.hpp"

#if !defined(VAE_EMULATION)
#include <curand_kernel.h>
#endif

namespace vae {

// Normals 4g .. 4g + 3 of the stream (seed, subsequence): one Philox block, as curand_normal4 after
// curand_init(seed, subsequence, 4g) draws them.
__device__ __forceinline__ Normal4 draw_normal4(uint64_t seed, uint64_t subsequence, uint64_t group) {
#if defined(VAE_EMULATION)
  return philox_normal4(seed, subsequence, group);
#else
  curandStatePhilox4_32_10_t state;
  curand_init(seed, subsequence, 4ull * group, &state);
  const float4 normals = curand_normal4(&state);
  return Normal4{{normals.x, normals.y, normals.z, normals.w}};
#endif
}

}  // namespace vae
