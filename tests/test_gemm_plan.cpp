// The GEMM launch plans, checked on the host: every output tile covered, K split into even,
// non-empty ranges, enough blocks to fill the H200's 132 SMs at batch 128, and the workspace (partial
// sums and counters) each layer launch needs.
#include <gtest/gtest.h>

#include <algorithm>

#include "vae/gemm_plan.hpp"
#include "vae/layout.hpp"

namespace vae::cuda {
namespace {

constexpr int kH200Sms = 132;

void expect_valid(const GemmPlan& p, int m, int n, int k) {
  const int edge = tile_edge(p.shape);
  EXPECT_GE(static_cast<int64_t>(p.grid_m) * edge, m);
  EXPECT_LT(static_cast<int64_t>(p.grid_m - 1) * edge, m);
  EXPECT_GE(static_cast<int64_t>(p.grid_n) * edge, n);
  EXPECT_LT(static_cast<int64_t>(p.grid_n - 1) * edge, n);
  EXPECT_GE(p.splits, 1);
  EXPECT_LE(p.splits, kMaxSplits);
  EXPECT_EQ(p.k_per_split % kTileK, 0);
  EXPECT_GE(static_cast<int64_t>(p.splits) * p.k_per_split, k);                   // all of K covered
  EXPECT_LT(static_cast<int64_t>(p.splits - 1) * p.k_per_split, std::max(k, 1));  // no empty split
  EXPECT_EQ(p.workspace_floats, p.splits > 1 ? static_cast<int64_t>(p.splits) * m * n : 0);
  EXPECT_EQ(p.tile_counters, p.splits > 1 ? static_cast<int64_t>(p.grid_m) * p.grid_n : 0);
}

TEST(GemmPlan, ValidForEveryShapeOfTheModel) {
  for (int rows : {1, 20, 127, 128, 129, 400, 784, 4096, 8192})
    for (auto [in, out] : {std::pair{784, 400}, {400, 40}, {20, 400}, {400, 784}, {13, 37}, {1, 1}}) {
      SCOPED_TRACE(std::to_string(rows) + " " + std::to_string(in) + "->" + std::to_string(out));
      expect_valid(plan_gemm(rows, out, in, Precision::kFp32, kH200Sms), rows, out, in);   // forward
      expect_valid(plan_gemm(rows, in, out, Precision::kFp32, kH200Sms), rows, in, out);   // dx
      expect_valid(plan_gemm(out, in, rows, Precision::kTf32, kH200Sms), out, in, rows);   // dW
    }
}

TEST(GemmPlan, SmallOutputsAreSplitToFillTheGpu) {
  // The first layer at batch 128: 128 x 400 outputs are only 14 large or 52 small tiles.
  const GemmPlan p = plan_gemm(128, 400, 784, Precision::kFp32, kH200Sms);
  EXPECT_EQ(p.shape, TileShape::kSmall);
  EXPECT_GT(p.splits, 1);
  EXPECT_GE(static_cast<int64_t>(p.grid_m) * p.grid_n * p.splits, kH200Sms);
}

TEST(GemmPlan, LargeOutputsUseLargeTilesWithoutSplitting) {
  const GemmPlan p = plan_gemm(8192, 400, 784, Precision::kFp32, kH200Sms);
  EXPECT_EQ(p.shape, TileShape::kLarge);
  EXPECT_EQ(p.splits, 1);
  EXPECT_EQ(p.workspace_floats, 0);
}

TEST(GemmPlan, ShortKIsNeverSplitBeyondItsTiles) {
  const GemmPlan p = plan_gemm(128, 40, 20, Precision::kFp32, kH200Sms);  // K = 20: two K tiles
  EXPECT_LE(p.splits, 2);
  expect_valid(p, 128, 40, 20);
}

// The forward launch's counters: split-K's per tile, then one per row of tiles, then the batch's,
// then one per column of tiles (BatchNorm's).
TEST(LayerPlan, ForwardCountersFollowTheSplitKCounters) {
  for (int rows : {1, 97, 128, 4096})
    for (auto [in, out] : {std::pair{784, 400}, {400, 40}, {400, 784}}) {
      const ForwardPlan f = plan_linear_forward(rows, in, out, Precision::kFp32, kH200Sms);
      expect_valid(f.gemm, rows, out, in);
      EXPECT_EQ(f.row_counters, f.gemm.tile_counters);
      EXPECT_EQ(f.batch_counter, f.row_counters + f.gemm.grid_m);
      EXPECT_EQ(f.column_counters, f.batch_counter + 1);
      EXPECT_EQ(f.counters, f.column_counters + f.gemm.grid_n);
      EXPECT_EQ(f.floats, f.gemm.workspace_floats);
    }
}

// dx and dW share one launch, so one tile shape; their counters and partial sums never overlap.
TEST(LayerPlan, BackwardProductsShareAShapeAndSplitTheWorkspace) {
  for (int rows : {1, 97, 128, 4096})
    for (auto [in, out] : {std::pair{784, 400}, {400, 40}, {20, 400}, {400, 784}, {13, 37}})
      for (bool input_gradient : {false, true}) {
        SCOPED_TRACE(std::to_string(rows) + " " + std::to_string(in) + "->" + std::to_string(out));
        const BackwardPlan b = plan_linear_backward(rows, in, out, input_gradient, Precision::kTf32, kH200Sms);
        expect_valid(b.dw, out, in, rows);
        EXPECT_EQ(b.dw_blocks, static_cast<int64_t>(b.dw.grid_m) * b.dw.grid_n * b.dw.splits);
        if (input_gradient) {
          expect_valid(b.dx, rows, in, out);
          EXPECT_EQ(b.dx.shape, b.dw.shape);
          EXPECT_EQ(b.dx_blocks, static_cast<int64_t>(b.dx.grid_m) * b.dx.grid_n * b.dx.splits);
        } else {
          EXPECT_EQ(b.dx_blocks, 0);
        }
        EXPECT_EQ(b.dx_counters, kBackwardLaunchCounters);
        EXPECT_EQ(b.dw_counters, b.dx_counters + b.dx.tile_counters);
        EXPECT_EQ(b.counters, b.dw_counters + b.dw.tile_counters);
        EXPECT_EQ(b.dw_floats, b.dx.workspace_floats);
        EXPECT_EQ(b.floats, b.dw_floats + b.dw.workspace_floats);
      }
}

TEST(LayerPlan, BatchOf128FillsTheGpuInEveryBackwardLaunch) {
  const ParamLayout layout = make_layout(ModelConfig{});
  for (size_t i = 0; i < layout.layers.size(); ++i) {
    const LinearSlot& l = layout.layers[i];
    const BackwardPlan b = plan_linear_backward(128, l.in, l.out, i > 0, Precision::kFp32, kH200Sms);
    EXPECT_GE(b.dx_blocks + b.dw_blocks, kH200Sms) << "layer " << i;
  }
}

TEST(GemmPlan, LinearWorkspaceCoversBothLaunches) {
  for (int rows : {1, 128, 4096}) {
    const GemmWorkspaceSize ws = linear_workspace_size(rows, 784, 400, Precision::kFp32, kH200Sms);
    const ForwardPlan f = plan_linear_forward(rows, 784, 400, Precision::kFp32, kH200Sms);
    const BackwardPlan b = plan_linear_backward(rows, 784, 400, true, Precision::kFp32, kH200Sms);
    EXPECT_GE(ws.floats, std::max(f.floats, b.floats));
    EXPECT_GE(ws.counters, std::max(f.counters, b.counters));
  }
}

TEST(GemmPlan, ModelWorkspaceCoversEveryLayer) {
  const ParamLayout layout = make_layout(ModelConfig{});
  for (int rows : {1, 128}) {
    const GemmWorkspaceSize model = model_workspace_size(layout, rows, Precision::kTf32, kH200Sms);
    for (const LinearSlot& l : layout.layers) {
      const GemmWorkspaceSize layer = linear_workspace_size(rows, l.in, l.out, Precision::kTf32, kH200Sms);
      EXPECT_GE(model.floats, layer.floats);
      EXPECT_GE(model.counters, layer.counters);
    }
    EXPECT_GT(model.floats, 0);  // batch 128 splits K somewhere
  }
}

// The largest need over every batch up to the bound, not the need at the bound: a plan is not
// monotonic in the rows (split-K gives way to larger tiles as rows grow).
TEST(GemmPlan, ModelWorkspaceUpToCoversEveryBatchUpToIt) {
  const ParamLayout layout = make_layout(ModelConfig{});
  constexpr int kBound = 40;  // at the H200's SM count, 32 rows need more split-K scratch than 40
  const GemmWorkspaceSize up_to = model_workspace_size_up_to(layout, kBound, Precision::kFp32, kH200Sms);
  int64_t largest_floats = 0, largest_counters = 0;
  for (int rows = 1; rows <= kBound; ++rows) {
    const GemmWorkspaceSize at = model_workspace_size(layout, rows, Precision::kFp32, kH200Sms);
    largest_floats = std::max(largest_floats, at.floats);
    largest_counters = std::max(largest_counters, at.counters);
  }
  EXPECT_EQ(up_to.floats, largest_floats);
  EXPECT_EQ(up_to.counters, largest_counters);
  EXPECT_GT(up_to.floats, model_workspace_size(layout, kBound, Precision::kFp32, kH200Sms).floats);
}

}  // namespace
}  // namespace vae::cuda
