// Register-blocked GEMMs on GCC vector extensions (one vector = 64 bytes: AVX-512 where the build
// allows it, two AVX2 registers otherwise). gemm_nn keeps a 4 x 2-vector tile of C in registers and
// streams k; gemm_nt keeps 4 x 4 dot products along k. Tails fall back to scalar loops.
#include "gemm.hpp"

#include "parallel.hpp"

#include <cstring>

namespace vae::ref {
namespace {

template <typename T>
struct Simd {
  static constexpr int kLanes = 64 / static_cast<int>(sizeof(T));
  using Vec [[gnu::vector_size(64)]] = T;
  static Vec load(const T* p) {
    Vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, Vec v) { std::memcpy(p, &v, sizeof v); }
  static Vec splat(T x) { return Vec{} + x; }
  static T sum(Vec v) {
    T s = 0;
    for (int i = 0; i < kLanes; ++i) s += v[i];
    return s;
  }
};

constexpr int kRowsPerTile = 4;
constexpr int kVecsPerTile = 2;

// One tile of gemm_nn: rows i0 .. i0+MR, columns j0 .. j0 + kVecsPerTile vectors.
template <typename T, int MR>
void nn_tile(int i0, int j0, int k, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c,
             int64_t ldc) {
  using S = Simd<T>;
  typename S::Vec acc[MR][kVecsPerTile] = {};
  for (int kk = 0; kk < k; ++kk) {
    const T* brow = b + kk * ldb + j0;
    typename S::Vec bv[kVecsPerTile];
    for (int v = 0; v < kVecsPerTile; ++v) bv[v] = S::load(brow + v * S::kLanes);
    for (int r = 0; r < MR; ++r) {
      const T av = a[(i0 + r) * ars + kk * acs];
      for (int v = 0; v < kVecsPerTile; ++v) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < kVecsPerTile; ++v) S::store(c + (i0 + r) * ldc + j0 + v * S::kLanes, acc[r][v]);
}

template <typename T>
void nn_tile_any_rows(int rows, int i0, int j0, int k, const T* a, int64_t ars, int64_t acs, const T* b,
                      int64_t ldb, T* c, int64_t ldc) {
  switch (rows) {
    case 4: return nn_tile<T, 4>(i0, j0, k, a, ars, acs, b, ldb, c, ldc);
    case 3: return nn_tile<T, 3>(i0, j0, k, a, ars, acs, b, ldb, c, ldc);
    case 2: return nn_tile<T, 2>(i0, j0, k, a, ars, acs, b, ldb, c, ldc);
    default: return nn_tile<T, 1>(i0, j0, k, a, ars, acs, b, ldb, c, ldc);
  }
}

// One tile of gemm_nt: MR rows of A against NR rows of B, each a dot product along k.
template <typename T, int MR, int NR>
void nt_tile(int i0, int j0, int k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc) {
  using S = Simd<T>;
  typename S::Vec acc[MR][NR] = {};
  const int k_vec = k - k % S::kLanes;
  for (int kk = 0; kk < k_vec; kk += S::kLanes) {
    typename S::Vec av[MR], bv[NR];
    for (int r = 0; r < MR; ++r) av[r] = S::load(a + (i0 + r) * lda + kk);
    for (int s = 0; s < NR; ++s) bv[s] = S::load(b + (j0 + s) * ldb + kk);
    for (int r = 0; r < MR; ++r)
      for (int s = 0; s < NR; ++s) acc[r][s] += av[r] * bv[s];
  }
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < NR; ++s) {
      T total = S::sum(acc[r][s]);
      for (int kk = k_vec; kk < k; ++kk) total += a[(i0 + r) * lda + kk] * b[(j0 + s) * ldb + kk];
      c[(i0 + r) * ldc + j0 + s] = total;
    }
}

template <typename T>
void nt_tile_any(int rows, int cols, int i0, int j0, int k, const T* a, int64_t lda, const T* b, int64_t ldb,
                 T* c, int64_t ldc) {
  if (rows == 4 && cols == 4) return nt_tile<T, 4, 4>(i0, j0, k, a, lda, b, ldb, c, ldc);
  // Edge tiles are rare (at most one row and one column of tiles): do them one element at a time.
  for (int r = 0; r < rows; ++r)
    for (int s = 0; s < cols; ++s) nt_tile<T, 1, 1>(i0 + r, j0 + s, k, a, lda, b, ldb, c, ldc);
}

}  // namespace

template <typename T>
void gemm_nn(int m, int n, int k, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c,
             int64_t ldc) {
  constexpr int kTileCols = kVecsPerTile * Simd<T>::kLanes;
  const int row_tiles = (m + kRowsPerTile - 1) / kRowsPerTile;
  const int col_tiles = n / kTileCols;
  const bool parallel = worth_parallel(static_cast<int64_t>(m) * n * k);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int jt = 0; jt < col_tiles; ++jt)
    for (int it = 0; it < row_tiles; ++it) {
      const int i0 = it * kRowsPerTile;
      const int rows = m - i0 < kRowsPerTile ? m - i0 : kRowsPerTile;
      nn_tile_any_rows(rows, i0, jt * kTileCols, k, a, ars, acs, b, ldb, c, ldc);
    }
  // Columns past the last full tile: plain loops, same k order.
  const int j_tail = col_tiles * kTileCols;
  if (j_tail < n) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int i = 0; i < m; ++i)
      for (int j = j_tail; j < n; ++j) {
        T total = 0;
        for (int kk = 0; kk < k; ++kk) total += a[i * ars + kk * acs] * b[kk * ldb + j];
        c[i * ldc + j] = total;
      }
  }
}

template <typename T>
void gemm_nt(int m, int n, int k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc) {
  constexpr int kTile = 4;
  const int row_tiles = (m + kTile - 1) / kTile;
  const int col_tiles = (n + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) schedule(static) if (worth_parallel(static_cast<int64_t>(m) * n * k))
  for (int jt = 0; jt < col_tiles; ++jt)
    for (int it = 0; it < row_tiles; ++it) {
      const int i0 = it * kTile, j0 = jt * kTile;
      const int rows = m - i0 < kTile ? m - i0 : kTile;
      const int cols = n - j0 < kTile ? n - j0 : kTile;
      nt_tile_any(rows, cols, i0, j0, k, a, lda, b, ldb, c, ldc);
    }
}

template void gemm_nn<float>(int, int, int, const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t);
template void gemm_nn<double>(int, int, int, const double*, int64_t, int64_t, const double*, int64_t, double*,
                              int64_t);
template void gemm_nt<float>(int, int, int, const float*, int64_t, const float*, int64_t, float*, int64_t);
template void gemm_nt<double>(int, int, int, const double*, int64_t, const double*, int64_t, double*, int64_t);

}  // namespace vae::ref
