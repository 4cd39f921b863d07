// How the linear-layer GEMMs are cut into thread blocks: tile shape and split-K, chosen on the host
// from the problem size and the SM count. At batch 128 the outputs are small, so without split-K
// most of the H200's 132 SMs would sit idle. Pure host code, so it has CPU tests.
#pragma once

#include <algorithm>
#include <cstdint>

#include "vae/cuda_ops.hpp"

namespace vae {
struct ParamLayout;
}

namespace vae::cuda {

enum class TileShape { kSmall, kLarge };

// Both precisions use the same block tiles: 32x32 or 64x64 outputs, 16 of K per pass.
inline constexpr int kTileK = 16;
constexpr int tile_edge(TileShape shape) { return shape == TileShape::kLarge ? 64 : 32; }

// Never split K more than this: each split costs an m*n partial-sum write and read.
inline constexpr int kMaxSplits = 16;

struct GemmPlan {
  TileShape shape = TileShape::kLarge;
  int grid_m = 0, grid_n = 0;  // output tiles along M and N
  int splits = 1;              // blocks along K; partial sums are reduced in split order
  int k_per_split = 0;         // a multiple of kTileK
  int64_t workspace_floats = 0;  // splits * m * n when splits > 1, else 0
  int64_t tile_counters = 0;     // grid_m * grid_n when splits > 1, else 0
};

// C[m, n] = A[m, k] · B[k, n] on sm_count SMs. Large tiles when they alone fill the GPU, else small
// tiles, split along K until about one block per SM.
GemmPlan plan_gemm(int m, int n, int k, Precision precision, int sm_count);

// What a GemmWorkspace must hold: split-K partial-sum floats and tile counters.
struct GemmWorkspaceSize {
  int64_t floats = 0, counters = 0;
  // Grows to cover another need as well: one workspace shared by several products.
  void cover(const GemmWorkspaceSize& other) {
    floats = std::max(floats, other.floats);
    counters = std::max(counters, other.counters);
  }
};

// What a linear layer's forward, input-gradient and weight-gradient products need (they share one
// workspace, one product at a time).
GemmWorkspaceSize linear_workspace_size(int rows, int in, int out, Precision precision, int sm_count);
// What every linear layer of a model needs at a batch of rows.
GemmWorkspaceSize model_workspace_size(const ParamLayout& layout, int rows, Precision precision, int sm_count);

}  // namespace vae::cuda
