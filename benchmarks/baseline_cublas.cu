// The cuBLAS baseline's GEMM calls and its small element-wise kernels. Our tensors are row-major
// and cuBLAS is column-major, so each product is written for the transposes: a row-major [r, c]
// matrix is the column-major [c, r] matrix with leading dimension c.
#include "baseline_cublas.hpp"

#include <algorithm>

#include "library_check.hpp"
#include "vae/cuda_check.hpp"

namespace vae::bench::cublas {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // grid-stride loops cover the rest

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__global__ void pixels_to_float_kernel(int64_t n, const uint8_t* __restrict__ pixels, float* __restrict__ x) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = static_cast<float>(pixels[i]) / 255.0f;  // as our kernels convert pixels
}

// y is read and written in place, as a framework's bias_ and relu_ would.
__global__ void add_bias_relu_kernel(int64_t n, int out, bool relu, const float* __restrict__ bias,
                                     float* __restrict__ y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = y[i] + bias[i % out];
    y[i] = relu ? fmaxf(v, 0.0f) : v;
  }
}

__global__ void relu_mask_kernel(int64_t n, const float* __restrict__ y, const float* __restrict__ dy,
                                 float* __restrict__ dy_masked) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dy_masked[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// Column sums of dy [rows, out]: each block sums a 32-column strip over kRowsPerBlock rows (threads
// along x read consecutive columns, so loads coalesce), reduces its 8 row-lanes in shared memory
// and adds the strip's partial into dbias, which the launcher zeroes first. The atomics make the
// sum order vary from run to run, as a framework's reduction may; it is a speed baseline.
constexpr int kColumns = 32, kRowLanes = 8, kRowsPerBlock = 64;

__global__ void bias_grad_kernel(int rows, int out, const float* __restrict__ dy, float* __restrict__ dbias) {
  __shared__ float partial[kRowLanes][kColumns];
  const int column = blockIdx.x * kColumns + threadIdx.x;
  const int first_row = blockIdx.y * kRowsPerBlock;
  const int last_row = min(rows, first_row + kRowsPerBlock);
  float sum = 0.0f;
  if (column < out)
    for (int r = first_row + threadIdx.y; r < last_row; r += kRowLanes) sum += dy[static_cast<int64_t>(r) * out + column];
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && column < out) {
    for (int lane = 1; lane < kRowLanes; ++lane) sum += partial[lane][threadIdx.x];
    atomicAdd(&dbias[column], sum);
  }
}

}  // namespace

void pixels_to_float(int64_t count, const uint8_t* pixels, float* x, cudaStream_t stream) {
  pixels_to_float_kernel<<<blocks_for(count), kThreads, 0, stream>>>(count, pixels, x);
  VAE_CHECK_LAUNCH();
}

void gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, const float* a,
          int lda, const float* b, int ldb, float* c, int ldc, Precision precision) {
  const float one = 1.0f, zero = 0.0f;
  if (precision == Precision::kTf32)
    VAE_CUBLAS_CHECK(cublasGemmEx(handle, op_a, op_b, m, n, k, &one, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb, &zero, c,
                                  CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  else
    VAE_CUBLAS_CHECK(cublasSgemm(handle, op_a, op_b, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc));
}

void linear_forward(cublasHandle_t handle, int rows, int in, int out, bool relu, const float* x, const float* weight,
                    const float* bias, float* y, Precision precision, cudaStream_t stream) {
  VAE_CUBLAS_CHECK(cublasSetStream(handle, stream));
  // y row-major [rows, out] is column-major [out, rows] = W · xᵀ: W row-major [out, in] is stored as
  // column-major [in, out], hence op T; x row-major [rows, in] is column-major [in, rows] as it is.
  gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, weight, in, x, in, y, out, precision);
  const int64_t n = static_cast<int64_t>(rows) * out;
  add_bias_relu_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, out, relu, bias, y);
  VAE_CHECK_LAUNCH();
}

void linear_backward(cublasHandle_t handle, int rows, int in, int out, bool relu, const float* x, const float* weight,
                     const float* y, const float* dy, float* dy_masked, float* dx, float* dweight, float* dbias,
                     Precision precision, cudaStream_t stream) {
  VAE_CUBLAS_CHECK(cublasSetStream(handle, stream));
  const int64_t n = static_cast<int64_t>(rows) * out;
  const float* g = dy;
  if (relu) {
    relu_mask_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, y, dy, dy_masked);
    VAE_CHECK_LAUNCH();
    g = dy_masked;
  }
  VAE_CUDA_CHECK(cudaMemsetAsync(dbias, 0, static_cast<size_t>(out) * sizeof(float), stream));
  const dim3 grid((out + kColumns - 1) / kColumns, (rows + kRowsPerBlock - 1) / kRowsPerBlock);
  bias_grad_kernel<<<grid, dim3(kColumns, kRowLanes), 0, stream>>>(rows, out, g, dbias);
  VAE_CHECK_LAUNCH();
  // dW row-major [out, in] = gᵀ · x, i.e. column-major [in, out] = x(col-major [in, rows]) · g(col-major
  // [out, rows])ᵀ.
  gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, in, out, rows, x, in, g, out, dweight, in, precision);
  // dx row-major [rows, in] = g · W, i.e. column-major [in, rows] = W(col-major [in, out]) · g(col-major [out, rows]).
  if (dx != nullptr) gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, in, rows, out, weight, in, g, out, dx, in, precision);
}

}  // namespace vae::bench::cublas
