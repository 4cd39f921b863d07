// Baseline 1: the linear layer as a framework without fusion runs it -- a cuBLAS GEMM (SGEMM for
// FP32, TF32 tensor cores through cublasGemmEx) and separate kernels for bias, ReLU, the ReLU mask
// and the bias gradient. Same arguments as our launchers, plus the cuBLAS handle first.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "vae/config.hpp"

namespace vae::bench::cublas {

// x = pixels / 255 as floats: cuBLAS reads no uint8 operand for a float GEMM, so the first layer
// of an unfused step needs this extra pass (and keeps x for its backward).
void pixels_to_float(int64_t count, const uint8_t* pixels, float* x, cudaStream_t stream);

// C[m, n] = op(A) · op(B), column-major as cuBLAS has it, FP32 or TF32 with FP32 accumulation.
void gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, const float* a,
          int lda, const float* b, int ldb, float* c, int ldc, Precision precision);

// y = x · Wᵀ + b (+ReLU): GEMM, then one bias(+ReLU) kernel.
void linear_forward(cublasHandle_t handle, int rows, int in, int out, bool relu, const float* x, const float* weight,
                    const float* bias, float* y, Precision precision, cudaStream_t stream);

// From dy: with relu, dy_masked = dy ⊙ (y > 0) by a kernel (dy_masked is scratch [rows, out]; unused
// without relu), then a bias-gradient reduction and GEMMs for dW and (unless dx is null) dx.
void linear_backward(cublasHandle_t handle, int rows, int in, int out, bool relu, const float* x, const float* weight,
                     const float* y, const float* dy, float* dy_masked, float* dx, float* dweight, float* dbias,
                     Precision precision, cudaStream_t stream);

}  // namespace vae::bench::cublas
