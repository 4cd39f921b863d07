// The two tensor-core instructions the TF32 GEMM needs: inline PTX under nvcc, the emulator's
// implementation from the PTX ISA's definitions in emulation builds.
#pragma once

#include <cstdint>

namespace vae {

// cvt.rna.tf32.f32: rounds to TF32 (10 mantissa bits), to nearest with ties away from zero, as
// cuBLAS's TF32 mode rounds its inputs; returns the FP32 bit pattern.
__device__ __forceinline__ uint32_t round_to_tf32_bits(float x) {
#if defined(VAE_EMULATION)
  return emu::round_to_tf32(x);
#else
  uint32_t bits;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(x));
  return bits;
#endif
}

// D = A · B + D for one 16x8x8 tile of the warp: TF32 inputs, FP32 accumulators, each lane holding
// its fragments as the PTX ISA's mma.m16n8k8 tables place them.
__device__ __forceinline__ void mma_16x8x8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(VAE_EMULATION)
  emu::mma_m16n8k8_tf32(d, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

}  // namespace vae
