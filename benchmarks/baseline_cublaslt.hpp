// Baseline 2: the linear layer on cuBLASLt with its fused epilogues -- forward GEMM + bias + ReLU in
// one call (RELU_AUX_BIAS, which also saves the ReLU mask as bits), backward with the bias
// gradient (BGRADB) and the ReLU gradient (DRELU_BGRAD) fused into the GEMMs, as cuBLASLt-based
// MLP training (Apex's fused_dense, Transformer Engine) runs it.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "vae/config.hpp"

namespace vae::bench::cublaslt {

// Scratch the heuristic may pick algorithms for; 32 MB, as NVIDIA recommends for Hopper.
struct Workspace {
  void* data = nullptr;
  size_t bytes = 0;
};
inline constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// One cublasLtMatmul, D[m, n] = op(A) · op(B) column-major with an epilogue, described once; the
// algorithm comes from cublasLtMatmulAlgoGetHeuristic at the first run (it looks at the pointers'
// alignment, so it is asked with the real ones) and is reused, as a framework caches its plans.
class Matmul {
 public:
  struct Spec {
    cublasOperation_t op_a = CUBLAS_OP_N, op_b = CUBLAS_OP_N;
    int m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    int64_t aux_ld = 0;  // the ReLU bit-mask's leading dimension, in elements (bits)
    Precision precision = Precision::kFp32;
  };
  Matmul(cublasLtHandle_t handle, const Spec& spec, Workspace workspace);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // bias: the bias (forward) or where the bias gradient goes (BGRAD epilogues); aux: the ReLU mask.
  void run(const float* a, const float* b, float* d, void* bias, void* aux, cudaStream_t stream);

 private:
  cublasLtHandle_t handle_;
  Spec spec_;
  Workspace workspace_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_layout_ = nullptr, b_layout_ = nullptr, d_layout_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  bool have_algo_ = false;
};

// The ReLU mask of a layer with `features` outputs over `rows` rows: one bit per element, the
// leading dimension rounded up to 128 as cuBLASLt requires.
int64_t mask_leading_dim(int features);
size_t mask_bytes(int rows, int features);

// One layer (row-major x [rows, in], W [out, in], y [rows, out], as ours) on cuBLASLt.
//
// How the backward pairs with the forward's mask: in a chain, the gradient reaching layer L's
// pre-activation is produced by the next layer's dx GEMM (dy_next · W_next). DRELU_BGRAD on that
// GEMM multiplies its result by L's saved mask and sums it over rows into L's bias gradient, so
// L's ReLU backward and bias gradient cost no pass of their own. Hence this layer's backward
// takes dy already masked, and its dx GEMM applies the mask of the layer *below* (below_relu).
// A layer whose gradient comes from elsewhere (the loss, the reparameterisation) gets its bias
// gradient from BGRADB on its own dW GEMM instead. Summed over the model, the work matches ours;
// per layer, the mask and bias sums sit one GEMM earlier.
class Linear {
 public:
  Linear(cublasLtHandle_t handle, int rows, int in, int out, bool relu, bool below_relu, bool input_grad,
         Precision precision, Workspace workspace);

  // y = x · Wᵀ + b, with relu also the mask bits ([rows] x mask_leading_dim(out) bits).
  void forward(const float* x, const float* weight, const float* bias, float* y, uint8_t* relu_mask,
               cudaStream_t stream);
  // dy: the gradient at this layer's pre-activation. Writes dW; db unless relu (the layer above's
  // DRELU_BGRAD made it); dx when input_grad, masked by below_mask with below_dbias when below_relu.
  void backward(const float* x, const float* weight, const float* dy, const uint8_t* below_mask, float* dx,
                float* dweight, float* dbias, float* below_dbias, cudaStream_t stream);

 private:
  bool relu_, below_relu_, input_grad_;
  Matmul forward_, weight_grad_;
  Matmul input_grad_matmul_;  // described even when unused: a description costs no GPU work
};

}  // namespace vae::bench::cublaslt
