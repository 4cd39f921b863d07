// Status checks for the vendor libraries the baselines call (cuBLAS, cuBLASLt, cuDNN), throwing
// vae::Error with the expression, place and the library's own message, as VAE_CUDA_CHECK does.
#pragma once

#include <cublas_v2.h>

#include "vae/cuda_check.hpp"

namespace vae::bench {

inline void check_cublas(cublasStatus_t status, const char* expression, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cuda_error(expression, file, line, cublasGetStatusString(status));
}

}  // namespace vae::bench

// cuBLASLt returns cublasStatus_t as well, so one macro serves both.
#define VAE_CUBLAS_CHECK(expr) ::vae::bench::check_cublas((expr), #expr, __FILE__, __LINE__)
