// plan_gemm and the layer plans: the launch shapes of kernels/linear_forward.cu and linear_backward.cu.
#include "vae/gemm_plan.hpp"

#include "vae/layout.hpp"

#include <algorithm>

namespace vae::cuda {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t large_tiles(int64_t m, int64_t n) {
  const int edge = tile_edge(TileShape::kLarge);
  return ceil_div(m, edge) * ceil_div(n, edge);
}

}  // namespace

GemmPlan plan_gemm(int m, int n, int k, Precision /*precision*/, int sm_count) {
  const int64_t sms = std::max(sm_count, 1);
  return plan_gemm_shaped(m, n, k, large_tiles(m, n) >= sms ? TileShape::kLarge : TileShape::kSmall, sm_count);
}

GemmPlan plan_gemm_shaped(int m, int n, int k, TileShape shape, int sm_count) {
  GemmPlan plan;
  const int64_t sms = std::max(sm_count, 1);
  plan.shape = shape;
  const int edge = tile_edge(plan.shape);
  plan.grid_m = static_cast<int>(ceil_div(m, edge));
  plan.grid_n = static_cast<int>(ceil_div(n, edge));

  const int64_t k_tiles = std::max<int64_t>(ceil_div(k, kTileK), 1);
  const int64_t output_tiles = static_cast<int64_t>(plan.grid_m) * plan.grid_n;
  int64_t splits = output_tiles >= sms ? 1 : ceil_div(sms, output_tiles);
  splits = std::clamp<int64_t>(splits, 1, std::min<int64_t>(kMaxSplits, k_tiles));
  // Even out the K ranges, then drop splits that would be left empty.
  const int64_t tiles_per_split = ceil_div(k_tiles, splits);
  plan.splits = static_cast<int>(ceil_div(k_tiles, tiles_per_split));
  plan.k_per_split = static_cast<int>(tiles_per_split * kTileK);
  plan.workspace_floats = plan.splits > 1 ? static_cast<int64_t>(plan.splits) * m * n : 0;
  plan.tile_counters = plan.splits > 1 ? output_tiles : 0;
  return plan;
}

ForwardPlan plan_linear_forward(int rows, int in, int out, Precision precision, int sm_count) {
  ForwardPlan plan;
  plan.gemm = plan_gemm(rows, out, in, precision, sm_count);
  plan.row_counters = plan.gemm.tile_counters;
  plan.batch_counter = plan.row_counters + plan.gemm.grid_m;
  plan.column_counters = plan.batch_counter + 1;
  plan.counters = plan.column_counters + plan.gemm.grid_n;
  plan.floats = plan.gemm.workspace_floats;
  return plan;
}

BackwardPlan plan_linear_backward(int rows, int in, int out, bool input_gradient, Precision /*precision*/,
                                  int sm_count) {
  BackwardPlan plan;
  const int64_t sms = std::max(sm_count, 1);
  const int64_t large = (input_gradient ? large_tiles(rows, in) : 0) + large_tiles(out, in);
  const TileShape shape = large >= sms ? TileShape::kLarge : TileShape::kSmall;
  if (input_gradient) plan.dx = plan_gemm_shaped(rows, in, out, shape, sm_count);
  plan.dw = plan_gemm_shaped(out, in, rows, shape, sm_count);
  auto blocks = [](const GemmPlan& p) { return static_cast<int64_t>(p.grid_m) * p.grid_n * p.splits; };
  plan.dx_blocks = blocks(plan.dx);
  plan.dw_blocks = blocks(plan.dw);
  plan.dx_counters = kBackwardLaunchCounters;
  plan.dw_counters = plan.dx_counters + plan.dx.tile_counters;
  plan.counters = plan.dw_counters + plan.dw.tile_counters;
  plan.dw_floats = plan.dx.workspace_floats;
  plan.floats = plan.dw_floats + plan.dw.workspace_floats;
  return plan;
}

GemmWorkspaceSize linear_workspace_size(int rows, int in, int out, Precision precision, int sm_count) {
  const ForwardPlan forward = plan_linear_forward(rows, in, out, precision, sm_count);
  const BackwardPlan backward = plan_linear_backward(rows, in, out, true, precision, sm_count);
  GemmWorkspaceSize size{forward.floats, forward.counters};
  size.cover({backward.floats, backward.counters});
  return size;
}

GemmWorkspaceSize model_workspace_size(const ParamLayout& layout, int rows, Precision precision, int sm_count) {
  GemmWorkspaceSize size;
  for (const LinearSlot& l : layout.layers) size.cover(linear_workspace_size(rows, l.in, l.out, precision, sm_count));
  return size;
}

GemmWorkspaceSize model_workspace_size_up_to(const ParamLayout& layout, int max_rows, Precision precision,
                                             int sm_count) {
  GemmWorkspaceSize size;
  for (int rows = 1; rows <= max_rows; ++rows) size.cover(model_workspace_size(layout, rows, precision, sm_count));
  return size;
}

}  // namespace vae::cuda
