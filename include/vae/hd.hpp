// VAE_HD marks the small per-element functions that both backends share: under nvcc they compile
// for host and device, under the host compiler they are plain inline functions. Sharing them is
// what lets the CPU tests exercise the very formulas the GPU kernels run.
#pragma once

#if defined(__CUDACC__)
#define VAE_HD __host__ __device__ __forceinline__
#else
#define VAE_HD inline
#endif
