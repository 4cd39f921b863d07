// Status check for cuDNN calls, throwing vae::Error with the expression, place and cuDNN's message,
// as VAE_CUDA_CHECK does for the runtime.
#pragma once

#include <cudnn.h>

#include "vae/cuda_check.hpp"

namespace vae::bench {

inline void check_cudnn(cudnnStatus_t status, const char* expression, const char* file, int line) {
  if (status != CUDNN_STATUS_SUCCESS) throw_cuda_error(expression, file, line, cudnnGetErrorString(status));
}

}  // namespace vae::bench

#define VAE_CUDNN_CHECK(expr) ::vae::bench::check_cudnn((expr), #expr, __FILE__, __LINE__)
