// The two matrix-product shapes the reference backend needs, written once with register blocking
// and SIMD so that the CPU oracle is fast enough to train on (see gemm.cpp for the blocking).
// Every output element is summed over k in one fixed order by one thread: results are bitwise
// reproducible whatever the number of OpenMP threads.
#pragma once

#include <cstdint>

namespace vae::ref {

// C[i][j] = sum_k A(i, k) * B[k][j] with A(i, k) = a[i * a_row_stride + k * a_col_stride], so A may
// be a transposed view; B is row-major with leading dimension ldb, C row-major with ldc.
template <typename T>
void gemm_nn(int m, int n, int k, const T* a, int64_t a_row_stride, int64_t a_col_stride, const T* b,
             int64_t ldb, T* c, int64_t ldc);

// C[i][j] = sum_k A[i][k] * B[j][k]: both operands row-major along k (as x · Wᵀ in a linear layer).
template <typename T>
void gemm_nt(int m, int n, int k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc);

}  // namespace vae::ref
