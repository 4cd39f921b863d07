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
// The same with the tile shape given (a launch that runs two products shares one shape).
GemmPlan plan_gemm_shaped(int m, int n, int k, TileShape shape, int sm_count);

// A layer's forward launch (kernels/linear_forward.cu): one GEMM, rows x out over in. Its counters
// are the split-K tile counters, then one per row of tiles (the loss and the reparameterisation
// wait for a whole row of tiles), then one for the whole batch (the loss's total), then one per
// column of tiles (BatchNorm's statistics wait for a whole column).
struct ForwardPlan {
  GemmPlan gemm;
  int64_t row_counters = 0;    // offset of the per-row-of-tiles counters
  int64_t batch_counter = 0;   // offset of the batch counter
  int64_t column_counters = 0; // offset of the per-column-of-tiles counters
  int64_t floats = 0, counters = 0;
};
ForwardPlan plan_linear_forward(int rows, int in, int out, Precision precision, int sm_count);

// A layer's backward launch (kernels/linear_backward.cu): the input gradient dx (rows x in over out,
// when the layer has one) and the weight gradient dW (out x in over rows) in one grid of the same
// tile shape, dx's blocks first. Counters: kBackwardLaunchCounters of the launch's own, then dx's
// tile counters, then dW's; partial sums: dx's, then dW's.
inline constexpr int64_t kBackwardLaunchCounters = 3;  // tickets taken, dx blocks done, blocks finished
struct BackwardPlan {
  GemmPlan dx, dw;  // dx.grid_m == 0 when the layer has no input gradient
  int64_t dx_blocks = 0, dw_blocks = 0;
  int64_t dx_counters = 0, dw_counters = 0;  // offsets of each product's tile counters
  int64_t dw_floats = 0;                     // offset of dW's partial sums
  int64_t floats = 0, counters = 0;
};
BackwardPlan plan_linear_backward(int rows, int in, int out, bool input_gradient, Precision precision, int sm_count);

// What a GemmWorkspace must hold: split-K partial-sum floats and counters.
struct GemmWorkspaceSize {
  int64_t floats = 0, counters = 0;
  // Grows to cover another need as well: one workspace shared by several launches, one at a time.
  void cover(const GemmWorkspaceSize& other) {
    floats = std::max(floats, other.floats);
    counters = std::max(counters, other.counters);
  }
};

// What a linear layer's forward and backward launches need (they share one workspace).
GemmWorkspaceSize linear_workspace_size(int rows, int in, int out, Precision precision, int sm_count);
// What every linear layer of a model needs at a batch of rows.
GemmWorkspaceSize model_workspace_size(const ParamLayout& layout, int rows, Precision precision, int sm_count);
// The same for every batch of 1 .. max_rows rows (a launch plan is not monotonic in the rows).
GemmWorkspaceSize model_workspace_size_up_to(const ParamLayout& layout, int max_rows, Precision precision,
                                             int sm_count);

}  // namespace vae::cuda
