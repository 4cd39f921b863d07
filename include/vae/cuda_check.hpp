// One check for every CUDA runtime and cuRAND call: on failure it throws vae::Error carrying the
// expression, file, line and the library's own message, which main() prints on one line.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "vae/error.hpp"

namespace vae {

[[noreturn]] inline void throw_cuda_error(const char* expression, const char* file, int line, const char* message) {
  throw Error(std::string(file) + ":" + std::to_string(line) + ": " + expression + " failed: " + message);
}

inline void check_cuda(cudaError_t status, const char* expression, const char* file, int line) {
  if (status != cudaSuccess) throw_cuda_error(expression, file, line, cudaGetErrorString(status));
}

}  // namespace vae

#define VAE_CUDA_CHECK(expr) ::vae::check_cuda((expr), #expr, __FILE__, __LINE__)

// After a kernel launch: catches bad launch configurations at once (asynchronous faults surface at
// the next synchronising call, which is checked too).
#define VAE_CHECK_LAUNCH() VAE_CUDA_CHECK(cudaGetLastError())
