// Baseline 3: cuDNN. Its classic path -- cuBLAS GEMMs with cuDNN's tensor ops around them
// (cudnnAddTensor for the bias, cudnnActivationForward/Backward for ReLU, cudnnReduceTensor for the
// bias gradient) -- and, in baseline_cudnn_graph.hpp, its graph API's matmul+bias+ReLU fusion.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>

#include "vae/config.hpp"
#include "vae/device_buffer.hpp"

namespace vae::bench::cudnn {

// One layer shape's descriptors (row-major x [rows, in], W [out, in], y [rows, out], as ours); y and
// the bias are NCHW tensors [rows, out, 1, 1] and [1, out, 1, 1], so the bias broadcasts over rows.
class Linear {
 public:
  Linear(cudnnHandle_t handle, cublasHandle_t blas, int rows, int in, int out, bool relu, Precision precision);
  ~Linear();
  Linear(const Linear&) = delete;
  Linear& operator=(const Linear&) = delete;

  void forward(const float* x, const float* weight, const float* bias, float* y, cudaStream_t stream);
  // As cublas::linear_backward: dy_masked is scratch [rows, out] for the ReLU backward's output.
  void backward(const float* x, const float* weight, const float* y, const float* dy, float* dy_masked, float* dx,
                float* dweight, float* dbias, cudaStream_t stream);

 private:
  cudnnHandle_t handle_;
  cublasHandle_t blas_;
  int rows_, in_, out_;
  bool relu_;
  Precision precision_;
  cudnnTensorDescriptor_t output_ = nullptr, bias_ = nullptr;
  cudnnActivationDescriptor_t activation_ = nullptr;
  cudnnReduceTensorDescriptor_t sum_rows_ = nullptr;
  DeviceBuffer<unsigned char> reduce_workspace_;
};

}  // namespace vae::bench::cudnn
