// The classic cuDNN path: cuDNN has no plain matmul outside its graph API, so the GEMMs are the
// cuBLAS baseline's and cuDNN does what it does have -- bias addition, activation and its
// gradient, and the reduction that gives the bias gradient.
#include "baseline_cudnn.hpp"

#include "baseline_cublas.hpp"
#include "cudnn_check.hpp"
#include "library_check.hpp"

namespace vae::bench::cudnn {
namespace {

cudnnTensorDescriptor_t nchw(int n, int c) {
  cudnnTensorDescriptor_t d = nullptr;
  VAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  VAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, 1, 1));
  return d;
}

}  // namespace

Linear::Linear(cudnnHandle_t handle, cublasHandle_t blas, int rows, int in, int out, bool relu, Precision precision)
    : handle_(handle), blas_(blas), rows_(rows), in_(in), out_(out), relu_(relu), precision_(precision) {
  output_ = nchw(rows, out);
  bias_ = nchw(1, out);
  VAE_CUDNN_CHECK(cudnnCreateActivationDescriptor(&activation_));
  VAE_CUDNN_CHECK(cudnnSetActivationDescriptor(activation_, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  VAE_CUDNN_CHECK(cudnnCreateReduceTensorDescriptor(&sum_rows_));
  VAE_CUDNN_CHECK(cudnnSetReduceTensorDescriptor(sum_rows_, CUDNN_REDUCE_TENSOR_ADD, CUDNN_DATA_FLOAT,
                                                 CUDNN_NOT_PROPAGATE_NAN, CUDNN_REDUCE_TENSOR_NO_INDICES,
                                                 CUDNN_32BIT_INDICES));
  size_t bytes = 0;
  VAE_CUDNN_CHECK(cudnnGetReductionWorkspaceSize(handle_, sum_rows_, output_, bias_, &bytes));
  reduce_workspace_ = DeviceBuffer<unsigned char>(bytes);
}

Linear::~Linear() {
  if (sum_rows_ != nullptr) cudnnDestroyReduceTensorDescriptor(sum_rows_);
  if (activation_ != nullptr) cudnnDestroyActivationDescriptor(activation_);
  if (bias_ != nullptr) cudnnDestroyTensorDescriptor(bias_);
  if (output_ != nullptr) cudnnDestroyTensorDescriptor(output_);
}

void Linear::forward(const float* x, const float* weight, const float* bias, float* y, cudaStream_t stream) {
  VAE_CUBLAS_CHECK(cublasSetStream(blas_, stream));
  VAE_CUDNN_CHECK(cudnnSetStream(handle_, stream));
  cublas::gemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, out_, rows_, in_, weight, in_, x, in_, y, out_, precision_);
  const float one = 1.0f, zero = 0.0f;
  VAE_CUDNN_CHECK(cudnnAddTensor(handle_, &one, bias_, bias, &one, output_, y));
  if (relu_) VAE_CUDNN_CHECK(cudnnActivationForward(handle_, activation_, &one, output_, y, &zero, output_, y));
}

void Linear::backward(const float* x, const float* weight, const float* y, const float* dy, float* dy_masked,
                      float* dx, float* dweight, float* dbias, cudaStream_t stream) {
  VAE_CUBLAS_CHECK(cublasSetStream(blas_, stream));
  VAE_CUDNN_CHECK(cudnnSetStream(handle_, stream));
  const float one = 1.0f, zero = 0.0f;
  const float* g = dy;
  if (relu_) {
    // ReLU's input is not kept (the forward ran in place); y > 0 exactly where it was > 0, so y serves.
    VAE_CUDNN_CHECK(cudnnActivationBackward(handle_, activation_, &one, output_, y, output_, dy, output_, y, &zero,
                                            output_, dy_masked));
    g = dy_masked;
  }
  VAE_CUDNN_CHECK(cudnnReduceTensor(handle_, sum_rows_, nullptr, 0, reduce_workspace_.data(),
                                    reduce_workspace_.size(), &one, output_, g, &zero, bias_, dbias));
  // The same products as the cuBLAS baseline (see baseline_cublas.cu for the transposes).
  cublas::gemm(blas_, CUBLAS_OP_N, CUBLAS_OP_T, in_, out_, rows_, x, in_, g, out_, dweight, in_, precision_);
  if (dx != nullptr) cublas::gemm(blas_, CUBLAS_OP_N, CUBLAS_OP_N, in_, rows_, out_, weight, in_, g, out_, dx, in_, precision_);
}

}  // namespace vae::bench::cudnn
