// What every GPU test needs: skip cleanly where there is no device (CI, the development machine),
// and fail loudly on any CUDA error.
#pragma once

#include <gtest/gtest.h>

#include "vae/cuda_device.hpp"

// Use as the first statement of a GPU test.
#define VAE_REQUIRE_GPU()                                                         \
  do {                                                                            \
    const ::vae::CudaDevices devices = ::vae::query_cuda_devices();               \
    if (devices.count == 0) GTEST_SKIP() << "no CUDA device: " << devices.why_none; \
  } while (0)
