// Baseline 3b: cuDNN's graph API fusing the forward layer into one operation graph -- matmul, then a
// pointwise bias add, then a pointwise ReLU -- planned by cuDNN's heuristics. Whether an engine
// exists for FP32 / TF32 operands depends on the installed cuDNN; when none does, construction
// throws vae::Error and vae_bench records a note instead of a figure.
#pragma once

#include <cudnn.h>

#include <cstdint>
#include <vector>

#include "vae/config.hpp"
#include "vae/device_buffer.hpp"

namespace vae::bench::cudnn {

// Owns one cudnnBackendDescriptor_t.
class BackendDescriptor {
 public:
  explicit BackendDescriptor(cudnnBackendDescriptorType_t type);
  ~BackendDescriptor();
  BackendDescriptor(BackendDescriptor&& other) noexcept;
  BackendDescriptor& operator=(BackendDescriptor&&) = delete;
  BackendDescriptor(const BackendDescriptor&) = delete;
  BackendDescriptor& operator=(const BackendDescriptor&) = delete;
  cudnnBackendDescriptor_t get() const { return descriptor_; }

 private:
  cudnnBackendDescriptor_t descriptor_ = nullptr;
};

// y = relu(x · Wᵀ + b) (or without the ReLU) for fixed buffers: the variant pack binds the pointers
// once, as a framework binds a plan's tensors; run() only executes.
class FusedLinearForward {
 public:
  FusedLinearForward(cudnnHandle_t handle, int rows, int in, int out, bool relu, Precision precision, const float* x,
                     const float* weight, const float* bias, float* y);
  void run(cudaStream_t stream);

 private:
  cudnnHandle_t handle_;
  std::vector<BackendDescriptor> keep_;  // the graph's pieces, alive as long as the plan
  DeviceBuffer<unsigned char> workspace_;
  cudnnBackendDescriptor_t plan_ = nullptr, variant_pack_ = nullptr;
};

}  // namespace vae::bench::cudnn
