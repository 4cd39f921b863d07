// The CUDA GEMMs' arithmetic on its own, so that the op launchers (cuda_ops.hpp) and the step's
// adapters need not include the whole run config.
#pragma once

namespace vae {

// Plain FP32, or TF32 tensor cores with FP32 accumulation.
enum class Precision { kFp32, kTf32 };

}  // namespace vae
