// plan_gemm: the launch shape of the linear-layer GEMM kernels (kernels/linear_relu.cu).
#include "vae/gemm_plan.hpp"

#include "vae/layout.hpp"

#include <algorithm>

namespace vae::cuda {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

GemmPlan plan_gemm(int m, int n, int k, Precision /*precision*/, int sm_count) {
  GemmPlan plan;
  const int64_t sms = std::max(sm_count, 1);
  auto tiles = [&](TileShape shape) { return ceil_div(m, tile_edge(shape)) * ceil_div(n, tile_edge(shape)); };
  plan.shape = tiles(TileShape::kLarge) >= sms ? TileShape::kLarge : TileShape::kSmall;
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

GemmWorkspaceSize linear_workspace_size(int rows, int in, int out, Precision precision, int sm_count) {
  GemmWorkspaceSize size;
  for (const GemmPlan& plan : {plan_gemm(rows, out, in, precision, sm_count), plan_gemm(rows, in, out, precision, sm_count),
                               plan_gemm(out, in, rows, precision, sm_count)})
    size.cover({plan.workspace_floats, plan.tile_counters});
  return size;
}

GemmWorkspaceSize model_workspace_size(const ParamLayout& layout, int rows, Precision precision, int sm_count) {
  GemmWorkspaceSize size;
  for (const LinearSlot& l : layout.layers) size.cover(linear_workspace_size(rows, l.in, l.out, precision, sm_count));
  return size;
}

}  // namespace vae::cuda
