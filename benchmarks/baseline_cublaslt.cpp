// cuBLASLt descriptors for the linear layer: the documented matmul-descriptor attributes
// (TRANSA/TRANSB, EPILOGUE, BIAS_POINTER, EPILOGUE_AUX_POINTER/LD) and the heuristic's first choice
// within a 32 MB workspace. Our row-major tensors are cuBLASLt's column-major transposes.
#include "baseline_cublaslt.hpp"

#include <fmt/format.h>

#include "library_check.hpp"
#include "vae/error.hpp"

namespace vae::bench::cublaslt {
namespace {

template <typename T>
void set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value));
}

bool uses_bias(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_BGRADB ||
         e == CUBLASLT_EPILOGUE_DRELU_BGRAD;
}
bool uses_aux(cublasLtEpilogue_t e) { return e == CUBLASLT_EPILOGUE_RELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_DRELU_BGRAD; }

// A column-major matrix layout of what is stored: op(X) is rows x cols, X itself the transpose when op is T.
cublasLtMatrixLayout_t layout(cublasOperation_t op, int rows, int cols, int ld) {
  cublasLtMatrixLayout_t l = nullptr;
  const bool t = op == CUBLAS_OP_T;
  VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, t ? cols : rows, t ? rows : cols, ld));
  return l;
}

}  // namespace

Matmul::Matmul(cublasLtHandle_t handle, const Spec& spec, Workspace workspace)
    : handle_(handle), spec_(spec), workspace_(workspace) {
  const cublasComputeType_t compute =
      spec.precision == Precision::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  VAE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, compute, CUDA_R_32F));
  set(desc_, CUBLASLT_MATMUL_DESC_TRANSA, spec.op_a);
  set(desc_, CUBLASLT_MATMUL_DESC_TRANSB, spec.op_b);
  set(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE, spec.epilogue);
  if (uses_aux(spec.epilogue)) set(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, spec.aux_ld);
  a_layout_ = layout(spec.op_a, spec.m, spec.k, spec.lda);
  b_layout_ = layout(spec.op_b, spec.k, spec.n, spec.ldb);
  d_layout_ = layout(CUBLAS_OP_N, spec.m, spec.n, spec.ldc);
}

Matmul::~Matmul() {
  if (d_layout_ != nullptr) cublasLtMatrixLayoutDestroy(d_layout_);
  if (b_layout_ != nullptr) cublasLtMatrixLayoutDestroy(b_layout_);
  if (a_layout_ != nullptr) cublasLtMatrixLayoutDestroy(a_layout_);
  if (desc_ != nullptr) cublasLtMatmulDescDestroy(desc_);
}

void Matmul::run(const float* a, const float* b, float* d, void* bias, void* aux, cudaStream_t stream) {
  if (uses_bias(spec_.epilogue)) set(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  if (uses_aux(spec_.epilogue)) set(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
  if (!have_algo_) {
    cublasLtMatmulPreference_t preference = nullptr;
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    const uint64_t max_bytes = workspace_.bytes;
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &max_bytes, sizeof max_bytes));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle_, desc_, a_layout_, b_layout_, d_layout_,
                                                                 d_layout_, preference, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS || found == 0)
      throw Error(fmt::format("cuBLASLt has no algorithm for {}x{}x{} with epilogue {} ({})", spec_.m, spec_.n,
                              spec_.k, static_cast<int>(spec_.epilogue), cublasLtGetStatusString(status)));
    algo_ = result.algo;
    have_algo_ = true;
  }
  const float one = 1.0f, zero = 0.0f;
  VAE_CUBLAS_CHECK(cublasLtMatmul(handle_, desc_, &one, a, a_layout_, b, b_layout_, &zero, d, d_layout_, d, d_layout_,
                                  &algo_, workspace_.data, workspace_.bytes, stream));
}

int64_t mask_leading_dim(int features) { return (static_cast<int64_t>(features) + 127) / 128 * 128; }

size_t mask_bytes(int rows, int features) { return static_cast<size_t>(mask_leading_dim(features)) * rows / 8; }

namespace {

Matmul::Spec forward_spec(int rows, int in, int out, bool relu, Precision precision) {
  // yᵀ (column-major [out, rows]) = op_T(W stored column-major [in, out]) · xᵀ (column-major [in, rows]).
  Matmul::Spec s;
  s.op_a = CUBLAS_OP_T, s.op_b = CUBLAS_OP_N;
  s.m = out, s.n = rows, s.k = in, s.lda = in, s.ldb = in, s.ldc = out;
  s.epilogue = relu ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS : CUBLASLT_EPILOGUE_BIAS;
  s.aux_ld = relu ? mask_leading_dim(out) : 0;
  s.precision = precision;
  return s;
}

Matmul::Spec weight_grad_spec(int rows, int in, int out, bool relu, Precision precision) {
  // dWᵀ (column-major [in, out]) = xᵀ (column-major [in, rows]) · op_T(dyᵀ stored column-major [out, rows]);
  // BGRADB sums B = dy over k = rows: the bias gradient, one per column of D (= out).
  Matmul::Spec s;
  s.op_a = CUBLAS_OP_N, s.op_b = CUBLAS_OP_T;
  s.m = in, s.n = out, s.k = rows, s.lda = in, s.ldb = out, s.ldc = in;
  s.epilogue = relu ? CUBLASLT_EPILOGUE_DEFAULT : CUBLASLT_EPILOGUE_BGRADB;
  s.precision = precision;
  return s;
}

Matmul::Spec input_grad_spec(int rows, int in, int out, bool below_relu, Precision precision) {
  // dxᵀ (column-major [in, rows]) = W (stored column-major [in, out]) · dyᵀ (column-major [out, rows]).
  // D has the shape of the layer below's forward output, so its mask (leading dim from `in`) fits.
  Matmul::Spec s;
  s.op_a = CUBLAS_OP_N, s.op_b = CUBLAS_OP_N;
  s.m = in, s.n = rows, s.k = out, s.lda = in, s.ldb = out, s.ldc = in;
  s.epilogue = below_relu ? CUBLASLT_EPILOGUE_DRELU_BGRAD : CUBLASLT_EPILOGUE_DEFAULT;
  s.aux_ld = below_relu ? mask_leading_dim(in) : 0;
  s.precision = precision;
  return s;
}

}  // namespace

Linear::Linear(cublasLtHandle_t handle, int rows, int in, int out, bool relu, bool below_relu, bool input_grad,
               Precision precision, Workspace workspace)
    : relu_(relu),
      below_relu_(below_relu),
      input_grad_(input_grad),
      forward_(handle, forward_spec(rows, in, out, relu, precision), workspace),
      weight_grad_(handle, weight_grad_spec(rows, in, out, relu, precision), workspace),
      input_grad_matmul_(handle, input_grad_spec(rows, in, out, below_relu, precision), workspace) {}

void Linear::forward(const float* x, const float* weight, const float* bias, float* y, uint8_t* relu_mask,
                     cudaStream_t stream) {
  forward_.run(weight, x, y, const_cast<float*>(bias), relu_ ? relu_mask : nullptr, stream);
}

void Linear::backward(const float* x, const float* weight, const float* dy, const uint8_t* below_mask, float* dx,
                      float* dweight, float* dbias, float* below_dbias, cudaStream_t stream) {
  weight_grad_.run(x, dy, dweight, relu_ ? nullptr : dbias, nullptr, stream);
  if (input_grad_)
    input_grad_matmul_.run(weight, dy, dx, below_relu_ ? below_dbias : nullptr,
                           below_relu_ ? const_cast<uint8_t*>(below_mask) : nullptr, stream);
}

}  // namespace vae::bench::cublaslt
