// The linear+bias+ReLU kernels (kernels/linear_relu.cu) on the CPU emulator against the reference op:
// forward, dx, dW and db in both precisions, on both tile shapes, with and without split-K, on the
// models' layers, odd widths and uint8 pixels; a NaN kept by the ReLU and stopped by its mask;
// repeatability; the workspace check. Every buffer has its exact size, so ASan sees any overrun.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "kernel_checks.hpp"
#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/reference_ops.hpp"

namespace vae::cuda {
namespace {

using kernel_checks::abs_products;
using kernel_checks::bitwise_equal;
using kernel_checks::gemm_tolerance;
using kernel_checks::uniform_floats;
using kernel_checks::within_scaled;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Under TSan (VAE_EMU_QUICK, 5-15x slower) each case runs a few small shapes only.
bool quick() { return std::getenv("VAE_EMU_QUICK") != nullptr; }

struct LinearCase {
  int rows, in, out;
  bool relu;
  bool pixels = false;  // x is uint8 pixels, as the first layer reads them (its backward has no dx)
};

std::string name_of(const LinearCase& c) {
  return std::to_string(c.rows) + "x" + std::to_string(c.in) + "->" + std::to_string(c.out) + (c.relu ? " relu" : "") +
         (c.pixels ? " pixels" : "");
}
std::string name_of(Precision p) { return p == Precision::kTf32 ? "tf32" : "fp32"; }

// Which of a layer's launches a check makes. A case that exists for one product's launch plan
// skips the others where they would cost more than they add.
enum class Launches { kForwardAndBackward, kForward, kBackward, kBackwardWithoutDx };

// The three products of a layer as the launcher plans them, C[m, n] = A[m, k] · B[k, n]: forward
// (rows x out over in), input gradient dx (rows x in over out), weight gradient dW (out x in over rows).
struct LayerPlans {
  GemmPlan forward, input_grad, weight_grad;
};
LayerPlans plans_of(const LinearCase& c, Precision p) {
  const int sms = multiprocessor_count();
  return {plan_gemm(c.rows, c.out, c.in, p, sms), plan_gemm(c.rows, c.in, c.out, p, sms),
          plan_gemm(c.out, c.in, c.rows, p, sms)};
}

// Split-K scratch of exactly the size the layer asks for (none at all when nothing splits): partial
// sums that start as NaN, so a partial never stored shows, and tile counters that start at zero.
struct Workspace {
  Workspace(const LinearCase& c, Precision p) : Workspace(linear_workspace_size(c.rows, c.in, c.out, p, multiprocessor_count())) {}
  explicit Workspace(const GemmWorkspaceSize& size)
      : storage(static_cast<size_t>(size.floats), kNaN), counters(static_cast<size_t>(size.counters), 0u) {}
  GemmWorkspace view() {
    return {storage.empty() ? nullptr : storage.data(), static_cast<int64_t>(storage.size()),
            counters.empty() ? nullptr : counters.data(), static_cast<int64_t>(counters.size())};
  }
  std::vector<float> storage;
  std::vector<unsigned> counters;
};

// One layer's inputs: x (and the pixels it came from), W, b and the upstream gradient dy.
struct LayerData {
  std::vector<uint8_t> pixels;
  std::vector<float> x, w, b, dy;
};
LayerData random_layer(const LinearCase& c, uint32_t seed) {
  LayerData d;
  const size_t in_count = static_cast<size_t>(c.rows) * c.in;
  if (c.pixels) {
    d.pixels = kernel_checks::random_pixels(in_count, seed);
    d.x.resize(in_count);
    for (size_t i = 0; i < in_count; ++i) d.x[i] = pixel_to_unit(d.pixels[i]);
  } else {
    d.x = uniform_floats(in_count, -1.0f, 1.0f, seed);
  }
  d.w = uniform_floats(static_cast<size_t>(c.out) * c.in, -1.0f, 1.0f, seed + 1);
  d.b = uniform_floats(c.out, -1.0f, 1.0f, seed + 2);
  d.dy = uniform_floats(static_cast<size_t>(c.rows) * c.out, -1.0f, 1.0f, seed + 3);
  return d;
}

// S of the forward product plus |bias|: the scale of y's rounding error.
std::vector<double> forward_scale(const LinearCase& c, const LayerData& d) {
  std::vector<double> scale = abs_products(c.rows, c.out, c.in, d.x, c.in, 1, d.w, 1, c.in);
  for (int r = 0; r < c.rows; ++r)
    for (int j = 0; j < c.out; ++j) scale[static_cast<size_t>(r) * c.out + j] += std::fabs(d.b[j]);
  return scale;
}
std::vector<double> bias_grad_scale(const LinearCase& c, const std::vector<float>& dy_masked) {
  std::vector<double> scale(c.out, 0.0);
  for (int r = 0; r < c.rows; ++r)
    for (int j = 0; j < c.out; ++j) scale[j] += std::fabs(dy_masked[static_cast<size_t>(r) * c.out + j]);
  return scale;
}

// The kernels' forward against the reference's y; outputs start as NaN, so an element the kernels
// never write fails too.
void check_forward(const LinearCase& c, Precision p, const LayerData& d, const std::vector<float>& ref_y) {
  Workspace workspace(c, p);
  std::vector<float> y(ref_y.size(), kNaN);
  if (c.pixels)
    linear_forward_pixels(c.rows, c.in, c.out, c.relu, d.pixels.data(), d.w.data(), d.b.data(), y.data(), p,
                          workspace.view(), nullptr);
  else
    linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data(), p, workspace.view(),
                   nullptr);
  EXPECT_TRUE(within_scaled(y, ref_y, forward_scale(c, d), gemm_tolerance(p))) << "y";
}

// The kernels' backward (dx unless without_dx or pixels, dW, db) against the reference's, both from
// the same y so that both apply the same ReLU mask.
void check_backward(const LinearCase& c, Precision p, const LayerData& d, const std::vector<float>& y,
                    bool without_dx = false) {
  const bool with_dx = !without_dx && !c.pixels;
  std::vector<float> dy_masked = d.dy;  // the reference masks in place
  std::vector<float> ref_dx(d.x.size()), ref_dw(d.w.size()), ref_db(c.out);
  ref::linear_backward<float>(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), y.data(), dy_masked.data(),
                              with_dx ? ref_dx.data() : nullptr, ref_dw.data(), ref_db.data());

  Workspace workspace(c, p);
  std::vector<float> dx(with_dx ? d.x.size() : 0, kNaN), dw(d.w.size(), kNaN), db(c.out, kNaN);
  const std::vector<float> dy = d.dy;
  if (c.pixels)
    linear_backward_pixels(c.rows, c.in, c.out, c.relu, d.pixels.data(), y.data(), dy.data(), dw.data(), db.data(), p,
                           workspace.view(), nullptr);
  else
    linear_backward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), y.data(), dy.data(),
                    with_dx ? dx.data() : nullptr, dw.data(), db.data(), p, workspace.view(), nullptr);
  EXPECT_TRUE(bitwise_equal(dy, d.dy)) << "the kernels must not change dy";
  if (with_dx) {
    EXPECT_TRUE(within_scaled(dx, ref_dx, abs_products(c.rows, c.in, c.out, dy_masked, c.out, 1, d.w, c.in, 1),
                              gemm_tolerance(p)))
        << "dx";
  }
  EXPECT_TRUE(within_scaled(dw, ref_dw, abs_products(c.out, c.in, c.rows, dy_masked, 1, c.out, d.x, c.in, 1),
                            gemm_tolerance(p)))
      << "dW";
  // db is a plain FP32 column sum in both precisions.
  EXPECT_TRUE(within_scaled(db, ref_db, bias_grad_scale(c, dy_masked), gemm_tolerance(Precision::kFp32))) << "db";
}

// One layer on random data against the reference.
void check_layer(const LinearCase& c, Precision p, uint32_t seed,
                 Launches launches = Launches::kForwardAndBackward) {
  SCOPED_TRACE(name_of(c) + " " + name_of(p));
  const LayerData d = random_layer(c, seed);
  std::vector<float> ref_y(static_cast<size_t>(c.rows) * c.out);
  ref::linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), ref_y.data());
  if (launches == Launches::kForwardAndBackward || launches == Launches::kForward) check_forward(c, p, d, ref_y);
  if (launches != Launches::kForward) check_backward(c, p, d, ref_y, launches == Launches::kBackwardWithoutDx);
}

// ---- the cases --------------------------------------------------------------------------------------

// Shapes chosen for the launch plans they get on 132 SMs (LaunchPlans.CasesCoverEveryPlan checks
// them): 64x64 tiles for each product in turn (just the 132 tiles that fill the SMs, with tails in
// both dimensions), and 32x32 tiles with and without split-K; K = 20 in each product.
struct PlanCase {
  LinearCase layer;
  Launches launches;
};
std::vector<PlanCase> plan_cases(bool quick_mode) {
  std::vector<PlanCase> cases = {{{760, 20, 700, true}, Launches::kForward},             // forward: 64x64, K = 20
                                 {{760, 700, 20, false}, Launches::kBackward},           // dx: 64x64, K = 20; dW split
                                 {{20, 700, 760, true}, Launches::kBackwardWithoutDx}};  // dW: 64x64, K = 20
  if (quick_mode) {
    cases.push_back({{33, 64, 40, true}, Launches::kForwardAndBackward});  // all three split
  } else {
    cases.push_back({{128, 1056, 13, true}, Launches::kForwardAndBackward});  // dx: 32x32 tiles fill the SMs
    cases.push_back({{96, 400, 40, true}, Launches::kForwardAndBackward});    // all three split
  }
  return cases;
}

// Tails in every tile dimension and ld % 4 != 0 (the scalar loads), a width of 2, one-row batches,
// odd pixel rows.
std::vector<LinearCase> odd_cases(bool quick_mode) {
  if (quick_mode) return {{33, 13, 37, true}, {5, 1, 3, false}, {7, 2, 2, true}, {5, 13, 7, true, true}};
  return {{33, 13, 37, true},      {5, 1, 3, false},   {130, 66, 65, true}, {7, 2, 2, true},
          {1, 2, 2, false},        {1, 13, 37, true},  {129, 20, 2, true},  {2, 129, 5, false},
          {5, 13, 7, true, true},  {3, 784, 2, false, true}, {33, 64, 40, true, true}};
}

// ---- tests ------------------------------------------------------------------------------------------

// The pixel path: the first layer reads uint8 pixels and scales them by 1/255 as it loads them.
std::vector<LinearCase> pixel_cases(bool quick_mode) {
  if (quick_mode) return {{5, 13, 7, true, true}, {33, 64, 40, true, true}};
  return {{1, 784, 400, true, true},  {129, 784, 40, true, true}, {96, 784, 20, false, true},
          {5, 13, 7, true, true},     {3, 784, 2, false, true},   {33, 64, 40, true, true}};
}

// The cases above are picked for the plans an H200 gets; this keeps them honest as the planner
// changes: every product must meet 64x64 tiles, and 32x32 tiles with and without split-K.
TEST(LaunchPlans, CasesCoverEveryPlanOfEveryProduct) {
  ASSERT_EQ(multiprocessor_count(), 132) << "the emulated device is an H200";
  for (const bool quick_mode : {false, true})
    for (const Precision p : {Precision::kFp32, Precision::kTf32}) {
      SCOPED_TRACE(std::string(quick_mode ? "quick " : "full ") + name_of(p));
      std::vector<PlanCase> runs = plan_cases(quick_mode);
      for (const LinearCase& c : odd_cases(quick_mode)) runs.push_back({c, Launches::kForwardAndBackward});
      for (const LinearCase& c : pixel_cases(quick_mode)) runs.push_back({c, Launches::kForwardAndBackward});
      struct Seen {
        bool large = false, small_split = false, small_whole = false;
      } seen[3];
      for (const PlanCase& run : runs) {
        const LinearCase& c = run.layer;
        const LayerPlans plans = plans_of(c, p);
        const bool launched[3] = {
            run.launches == Launches::kForwardAndBackward || run.launches == Launches::kForward,
            !c.pixels && (run.launches == Launches::kForwardAndBackward || run.launches == Launches::kBackward),
            run.launches != Launches::kForward};
        const GemmPlan* products[3] = {&plans.forward, &plans.input_grad, &plans.weight_grad};
        for (int i = 0; i < 3; ++i) {
          if (!launched[i]) continue;
          const bool large = products[i]->shape == TileShape::kLarge;
          seen[i].large |= large;
          seen[i].small_split |= !large && products[i]->splits > 1;
          seen[i].small_whole |= !large && products[i]->splits == 1;
        }
      }
      const char* names[3] = {"forward", "dx", "dW"};
      for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(seen[i].large) << names[i] << ": no case with 64x64 tiles";
        EXPECT_TRUE(seen[i].small_split) << names[i] << ": no case with 32x32 tiles and split-K";
        EXPECT_TRUE(seen[i].small_whole) << names[i] << ": no case with 32x32 tiles and no split";
      }
    }
}

class LinearKernels : public testing::TestWithParam<Precision> {};

TEST_P(LinearKernels, MatchReferenceOnEveryLaunchPlan) {
  uint32_t seed = 10;
  for (const PlanCase& run : plan_cases(quick())) check_layer(run.layer, GetParam(), seed += 10, run.launches);
}

TEST_P(LinearKernels, MatchReferenceOnOddWidths) {
  uint32_t seed = 100;
  for (const LinearCase& c : odd_cases(quick())) check_layer(c, GetParam(), seed += 10);
}

TEST_P(LinearKernels, PixelInputsMatchReference) {
  uint32_t seed = 300;
  for (const LinearCase& c : pixel_cases(quick())) check_layer(c, GetParam(), seed += 10);
}

// Pointers off the 16-byte grid take the scalar loads even where ld % 4 == 0.
TEST_P(LinearKernels, MatchReferenceFromMisalignedPointers) {
  const Precision p = GetParam();
  const LinearCase c{33, 64, 40, true};
  SCOPED_TRACE(name_of(c) + " " + name_of(p));
  const LayerData d = random_layer(c, 7);
  std::vector<float> ref_y(static_cast<size_t>(c.rows) * c.out);
  ref::linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), ref_y.data());
  std::vector<float> dy_masked = d.dy, ref_dx(d.x.size()), ref_dw(d.w.size()), ref_db(c.out);
  ref::linear_backward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), ref_y.data(), dy_masked.data(),
                       ref_dx.data(), ref_dw.data(), ref_db.data());

  // Each array one float past an aligned allocation's start; it still ends where the allocation does.
  auto shifted = [](const std::vector<float>& v) {
    std::vector<float> storage(v.size() + 1, kNaN);
    std::copy(v.begin(), v.end(), storage.begin() + 1);
    return storage;
  };
  auto unshifted = [](const std::vector<float>& storage) { return std::vector<float>(storage.begin() + 1, storage.end()); };
  const std::vector<float> x = shifted(d.x), w = shifted(d.w), dy = shifted(d.dy), y_in = shifted(ref_y);
  std::vector<float> y = shifted(ref_y), dx = shifted(d.x), dw = shifted(d.w);
  std::fill(y.begin(), y.end(), kNaN);
  std::fill(dx.begin(), dx.end(), kNaN);
  std::fill(dw.begin(), dw.end(), kNaN);
  std::vector<float> db(c.out, kNaN);
  Workspace workspace(c, p);
  linear_forward(c.rows, c.in, c.out, c.relu, x.data() + 1, w.data() + 1, d.b.data(), y.data() + 1, p,
                 workspace.view(), nullptr);
  linear_backward(c.rows, c.in, c.out, c.relu, x.data() + 1, w.data() + 1, y_in.data() + 1, dy.data() + 1,
                  dx.data() + 1, dw.data() + 1, db.data(), p, workspace.view(), nullptr);
  EXPECT_TRUE(within_scaled(unshifted(y), ref_y, forward_scale(c, d), gemm_tolerance(p))) << "y";
  EXPECT_TRUE(within_scaled(unshifted(dx), ref_dx,
                            abs_products(c.rows, c.in, c.out, dy_masked, c.out, 1, d.w, c.in, 1), gemm_tolerance(p)))
      << "dx";
  EXPECT_TRUE(within_scaled(unshifted(dw), ref_dw,
                            abs_products(c.out, c.in, c.rows, dy_masked, 1, c.out, d.x, c.in, 1), gemm_tolerance(p)))
      << "dW";
  EXPECT_TRUE(within_scaled(db, ref_db, bias_grad_scale(c, dy_masked), gemm_tolerance(Precision::kFp32))) << "db";
}

// A NaN born in a ReLU layer (from a NaN input or weight) stays NaN in y, as the reference and
// PyTorch keep it, so that it reaches the loss and the NaN guard; the old `v > 0 ? v : 0` turned it
// into 0. Both epilogues apply the ReLU: the GEMM's own (no split) and the split-K reduction's.
TEST_P(LinearKernels, ReluKeepsNaN) {
  const Precision p = GetParam();
  const std::vector<LinearCase> cases = {{33, 13, 37, true}, {33, 64, 40, true}, {760, 20, 700, true}};
  bool split_seen = false, whole_seen = false, large_seen = false;
  uint32_t seed = 500;
  for (const LinearCase& c : cases) {
    SCOPED_TRACE(name_of(c) + " " + name_of(p));
    const GemmPlan plan = plans_of(c, p).forward;
    (plan.splits > 1 ? split_seen : whole_seen) = true;
    large_seen |= plan.shape == TileShape::kLarge;
    LayerData d = random_layer(c, seed += 10);
    // Biases so negative that every finite output is clipped to 0: a NaN turned into 0 would hide.
    std::fill(d.b.begin(), d.b.end(), -1e6f);
    const int nan_row = c.rows / 2, nan_col = c.out - 1;
    d.x[static_cast<size_t>(nan_row) * c.in + c.in / 2] = kNaN;
    d.w[static_cast<size_t>(nan_col) * c.in] = kNaN;

    const size_t out_count = static_cast<size_t>(c.rows) * c.out;
    std::vector<float> ref_y(out_count), y(out_count, -1.0f);
    ref::linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), ref_y.data());
    size_t ref_nans = 0;
    for (float v : ref_y) ref_nans += std::isnan(v);
    ASSERT_EQ(ref_nans, static_cast<size_t>(c.rows + c.out - 1)) << "the reference keeps the NaN's row and column";

    Workspace workspace(c, p);
    linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data(), p, workspace.view(),
                   nullptr);
    size_t nans = 0, zeros = 0;
    for (size_t i = 0; i < out_count; ++i) {
      nans += std::isnan(y[i]);
      zeros += y[i] == 0.0f && !std::isnan(ref_y[i]);
    }
    EXPECT_EQ(nans, ref_nans) << (plan.splits > 1 ? "the split-K reduction" : "the GEMM epilogue")
                              << " dropped NaNs";
    EXPECT_EQ(zeros, out_count - ref_nans) << "the finite outputs are all clipped to 0";
    for (int j = 0; j < c.out; ++j) EXPECT_TRUE(std::isnan(y[static_cast<size_t>(nan_row) * c.out + j])) << j;
    for (int r = 0; r < c.rows; ++r) EXPECT_TRUE(std::isnan(y[static_cast<size_t>(r) * c.out + nan_col])) << r;
  }
  EXPECT_TRUE(split_seen && whole_seen && large_seen) << "both epilogues and both tile shapes";
}

// The ReLU's backward passes nothing where y is NaN (y > 0 is false), as the reference and PyTorch's
// threshold_backward mask it, so the gradients stay finite. dy is large there: a mask that let it
// through would show.
TEST_P(LinearKernels, ReluMaskStopsGradientWhereYIsNaN) {
  const Precision p = GetParam();
  // Vector and scalar loads of dy and y, split and unsplit products.
  const std::vector<LinearCase> cases = {{33, 64, 40, true}, {33, 13, 37, true}, {5, 1, 3, true},
                                         {33, 64, 40, true, true}};
  uint32_t seed = 700;
  for (const LinearCase& c : cases) {
    SCOPED_TRACE(name_of(c) + " " + name_of(p));
    LayerData d = random_layer(c, seed += 10);
    std::vector<float> y(static_cast<size_t>(c.rows) * c.out);
    ref::linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data());
    for (size_t i = 0; i < y.size(); i += 3) {
      y[i] = kNaN;
      d.dy[i] = 1e6f;
    }
    check_backward(c, p, d, y);
  }
}

// Split-K partial sums are reduced in split order: two runs agree bit for bit, whatever the
// workspace and the outputs held before.
TEST_P(LinearKernels, SplitKRunsAreBitwiseRepeatable) {
  const Precision p = GetParam();
  const LinearCase c = quick() ? LinearCase{33, 64, 40, true} : LinearCase{96, 400, 40, true};
  const LayerPlans plans = plans_of(c, p);
  ASSERT_GT(plans.forward.splits, 1);
  ASSERT_GT(plans.input_grad.splits, 1);
  ASSERT_GT(plans.weight_grad.splits, 1);
  const LayerData d = random_layer(c, 1);
  Workspace workspace(c, p);
  struct Outputs {
    std::vector<float> y, dx, dw, db;
  };
  auto run = [&](float fill) {
    std::fill(workspace.storage.begin(), workspace.storage.end(), fill);
    Outputs o{std::vector<float>(d.dy.size(), fill), std::vector<float>(d.x.size(), fill),
              std::vector<float>(d.w.size(), fill), std::vector<float>(d.b.size(), fill)};
    linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), o.y.data(), p, workspace.view(),
                   nullptr);
    linear_backward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), o.y.data(), d.dy.data(), o.dx.data(),
                    o.dw.data(), o.db.data(), p, workspace.view(), nullptr);
    return o;
  };
  const Outputs first = run(kNaN), second = run(12345.0f);
  EXPECT_TRUE(bitwise_equal(first.y, second.y)) << "y";
  EXPECT_TRUE(bitwise_equal(first.dx, second.dx)) << "dx";
  EXPECT_TRUE(bitwise_equal(first.dw, second.dw)) << "dW";
  EXPECT_TRUE(bitwise_equal(first.db, second.db)) << "db";
  for (const std::vector<float>* v : {&first.y, &first.dx, &first.dw, &first.db})
    for (float e : *v) ASSERT_FALSE(std::isnan(e)) << "every output is written";
}

TEST_P(LinearKernels, TooSmallAWorkspaceIsAnError) {
  const Precision p = GetParam();
  const LinearCase c{33, 64, 40, true};
  const LayerPlans plans = plans_of(c, p);
  ASSERT_GT(plans.forward.workspace_floats, 0);
  ASSERT_GT(plans.input_grad.workspace_floats, 0);
  ASSERT_GT(plans.weight_grad.workspace_floats, 0);
  const LayerData d = random_layer(c, 3);
  const std::vector<uint8_t> pixels(d.x.size());
  std::vector<float> y(d.dy.size()), dx(d.x.size()), dw(d.w.size()), db(c.out);
  EXPECT_THROW(linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data(), p,
                              GemmWorkspace{}, nullptr),
               Error);
  // One float short of what the forward product needs; then enough floats but one counter short.
  std::vector<float> short_storage(static_cast<size_t>(plans.forward.workspace_floats) - 1);
  std::vector<unsigned> counters(static_cast<size_t>(plans.forward.tile_counters), 0u);
  const GemmWorkspace one_short{short_storage.data(), static_cast<int64_t>(short_storage.size()), counters.data(),
                                static_cast<int64_t>(counters.size())};
  EXPECT_THROW(linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data(), p, one_short,
                              nullptr),
               Error);
  std::vector<float> storage(static_cast<size_t>(plans.forward.workspace_floats));
  const GemmWorkspace one_counter_short{storage.data(), static_cast<int64_t>(storage.size()), counters.data(),
                                        static_cast<int64_t>(counters.size()) - 1};
  EXPECT_THROW(linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data(), p,
                              one_counter_short, nullptr),
               Error);
  EXPECT_THROW(linear_forward_pixels(c.rows, c.in, c.out, c.relu, pixels.data(), d.w.data(), d.b.data(), y.data(), p,
                                     GemmWorkspace{}, nullptr),
               Error);
  EXPECT_THROW(linear_backward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), y.data(), d.dy.data(), dx.data(),
                               dw.data(), db.data(), p, GemmWorkspace{}, nullptr),
               Error);
  EXPECT_THROW(linear_backward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), y.data(), d.dy.data(), nullptr,
                               dw.data(), db.data(), p, GemmWorkspace{}, nullptr),
               Error);
  EXPECT_THROW(linear_backward_pixels(c.rows, c.in, c.out, c.relu, pixels.data(), y.data(), d.dy.data(), dw.data(),
                                      db.data(), p, GemmWorkspace{}, nullptr),
               Error);
}

// dx == nullptr: a backward that needs no input gradient.
TEST_P(LinearKernels, BackwardWithoutInputGradient) {
  check_layer({33, 64, 40, true}, GetParam(), 41, Launches::kBackwardWithoutDx);
  check_layer({33, 13, 37, false}, GetParam(), 51, Launches::kBackwardWithoutDx);
}

std::string precision_name(const testing::TestParamInfo<Precision>& info) { return name_of(info.param); }

INSTANTIATE_TEST_SUITE_P(BothPrecisions, LinearKernels, testing::Values(Precision::kFp32, Precision::kTf32),
                         precision_name);

// The models' layers take minutes under TSan and add no barrier pattern the cases above lack.
#if !defined(__SANITIZE_THREAD__)

// The default model (784-400-20) and `--hidden 512,256 --latent 2`: encoder layers (the first reads
// the pixels), then the decoder's; the layer into mu ‖ logvar and the output layer have no ReLU.
std::vector<LinearCase> model_layers(const std::string& model, int rows) {
  if (model == "default")
    return {{rows, 784, 400, true, true}, {rows, 400, 40, false}, {rows, 20, 400, true}, {rows, 400, 784, false}};
  return {{rows, 784, 512, true, true}, {rows, 512, 256, true}, {rows, 256, 4, false},
          {rows, 2, 256, true},         {rows, 256, 512, true}, {rows, 512, 784, false}};
}
// The layers on the latent side (a width of at most 40): cheap enough to run at every batch size.
std::vector<LinearCase> latent_side_layers(int rows) {
  std::vector<LinearCase> layers;
  for (const std::string model : {"default", "deep"})
    for (const LinearCase& c : model_layers(model, rows))
      if (std::min(c.in, c.out) <= 40) layers.push_back(c);
  return layers;
}
const int kBatches[] = {1, 96, 128, 129};

// Every layer of both models at batch 1 in both precisions; at 96, 128 and 129 the default model in
// FP32 and the deeper one in TF32 at 129 (every layer at every batch in both precisions would take
// minutes); the latent-side layers, where the narrow tails are, at every batch in both.
struct ModelRun {
  Precision precision;
  const char* model;
  int rows;
};
const ModelRun kModelRuns[] = {{Precision::kFp32, "default", 1},   {Precision::kFp32, "default", 96},
                               {Precision::kFp32, "default", 128}, {Precision::kFp32, "default", 129},
                               {Precision::kFp32, "deep", 1},      {Precision::kTf32, "default", 1},
                               {Precision::kTf32, "deep", 1},      {Precision::kTf32, "deep", 129}};

void PrintTo(const ModelRun& run, std::ostream* os) {
  *os << name_of(run.precision) << ", " << run.model << " model, batch " << run.rows;
}

class ModelLayers : public testing::TestWithParam<ModelRun> {};

TEST_P(ModelLayers, MatchReference) {
  const ModelRun& run = GetParam();
  uint32_t seed = 1000 + static_cast<uint32_t>(run.rows);
  for (const LinearCase& c : model_layers(run.model, run.rows)) check_layer(c, run.precision, seed += 10);
}

INSTANTIATE_TEST_SUITE_P(Runs, ModelLayers, testing::ValuesIn(kModelRuns),
                         [](const testing::TestParamInfo<ModelRun>& info) {
                           return name_of(info.param.precision) + "_" + info.param.model + "_batch" +
                                  std::to_string(info.param.rows);
                         });

TEST_P(LinearKernels, LatentSideLayersMatchReferenceAtEveryBatch) {
  uint32_t seed = 2000;
  for (int rows : kBatches)
    for (const LinearCase& c : latent_side_layers(rows)) check_layer(c, GetParam(), seed += 10);
}

#endif  // !defined(__SANITIZE_THREAD__)

}  // namespace
}  // namespace vae::cuda
