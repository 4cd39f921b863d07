// The GEMM launch plan, checked on the host: every output tile covered, K split into even,
// non-empty ranges, enough blocks to fill the H200's 132 SMs at batch 128, and the workspace that
// needs.
#include <gtest/gtest.h>

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

TEST(GemmPlan, LinearWorkspaceCoversAllThreeProducts) {
  for (int rows : {1, 128, 4096}) {
    const GemmWorkspaceSize ws = linear_workspace_size(rows, 784, 400, Precision::kFp32, kH200Sms);
    for (const GemmPlan& p : {plan_gemm(rows, 400, 784, Precision::kFp32, kH200Sms),
                              plan_gemm(rows, 784, 400, Precision::kFp32, kH200Sms),
                              plan_gemm(400, 784, rows, Precision::kFp32, kH200Sms)}) {
      EXPECT_GE(ws.floats, p.workspace_floats);
      EXPECT_GE(ws.counters, p.tile_counters);
    }
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

}  // namespace
}  // namespace vae::cuda
