// What a kernel source sees of CUDA, and the one way it launches a kernel. Under nvcc this is the
// real runtime and <<<...>>>; in emulation builds (VAE_EMULATION, tests/emulation only) the same
// kernel and launcher code runs on the CPU emulator of the CUDA execution model.
#pragma once

#include <utility>

#if defined(VAE_EMULATION)
#include "cuda_emulation.hpp"
#else
#include <cuda_runtime.h>

#include "vae/cuda_check.hpp"
#endif

namespace vae {

// Launches kernel on a grid of block-sized blocks, in stream order on the device. The arguments are
// converted implicitly to the kernel's parameter types, as <<<...>>> converts them. Throws vae::Error when the
// launch is refused (a bad configuration, no device); faults inside the kernel surface at the next
// synchronising call on the device and at once in emulation.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "launch_kernel: wrong number of kernel arguments");
#if defined(VAE_EMULATION)
  (void)stream;  // the emulator runs each launch to completion, which is one valid stream order
  emu::launch(grid, block, [&] { kernel(args...); });
#else
  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
  VAE_CHECK_LAUNCH();
#endif
}

}  // namespace vae
