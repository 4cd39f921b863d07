// The fused linear-layer launches (kernels/linear_forward.cu and linear_backward.cu, on the tile GEMM of
// gemm_tile.cuh) on the CPU emulator against the reference ops. First the products alone: forward, dx,
// dW and db in both precisions, on both tile shapes, with and without split-K, on the models' layers,
// odd widths and uint8 pixels; a NaN kept by the ReLU and stopped by its mask. Then each epilogue
// against the composition of the reference ops it replaces: the step's advance, the head's
// reparameterisation, the output layer's loss (and its NaN guard), the first decoder layer's
// reparameterisation gradient and Adam on the weights, over partial batches and split-K; the seed
// model's LeakyReLU, signed pixels, Gaussian loss and BatchNorm (its forward epilogue and its backward
// kernel, batch_norm.cu). After every launch the workspace counters are zero again; same inputs give the same bits; a too-small workspace
// and a bad combination of epilogues are errors. Every buffer has its exact size, so ASan sees any overrun.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "emulator.hpp"
#include "kernel_checks.hpp"
#include "vae/config.hpp"
#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/noise_streams.hpp"
#include "vae/reference_ops.hpp"

namespace vae::cuda {
namespace {

using kernel_checks::abs_products;
using kernel_checks::all_near;
using kernel_checks::bitwise_equal;
using kernel_checks::gemm_tolerance;
using kernel_checks::random_mu_logvar;
using kernel_checks::random_pixels;
using kernel_checks::uniform_floats;
using kernel_checks::within_scaled;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The epilogues' element math is the same element_math expression as the reference's, compiled
// with other flags (the reference's build fuses some multiply-adds, see test_emu_small_kernels.cpp):
// results agree to four ulps of the magnitude of their terms.
constexpr double kTermRoundings = 4 * 0x1p-23;

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

// The three products of a layer as the launchers plan them, C[m, n] = A[m, k] · B[k, n]: forward
// (rows x out over in), input gradient dx (rows x in over out), weight gradient dW (out x in over
// rows); the backward's two share one tile shape, chosen for both together.
struct LayerPlans {
  GemmPlan forward, input_grad, weight_grad;
};
LayerPlans plans_of(const LinearCase& c, Precision p, bool with_dx = true) {
  const int sms = multiprocessor_count();
  const BackwardPlan backward = plan_linear_backward(c.rows, c.in, c.out, with_dx && !c.pixels, p, sms);
  return {plan_linear_forward(c.rows, c.in, c.out, p, sms).gemm, backward.dx, backward.dw};
}

// Which plans a set of cases met: the split-K reduction's epilogue, the unsplit one, 64x64 tiles.
struct PlansSeen {
  bool large = false, split = false, whole = false;
  void note(const GemmPlan& plan) {
    large |= plan.shape == TileShape::kLarge;
    (plan.splits > 1 ? split : whole) = true;
  }
  // Quick mode leaves the 64x64 tiles out: they take 132 blocks at least.
  ::testing::AssertionResult complete() const {
    if (split && whole && (large || quick())) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the cases miss a plan: split-K " << split << ", unsplit " << whole
                                         << ", 64x64 tiles " << large;
  }
};

// Split-K scratch and counters of exactly the size the layer asks for: partial sums that start as
// NaN, so a partial never stored shows, and counters that start at zero, as their owner leaves them.
struct Workspace {
  Workspace(const LinearCase& c, Precision p)
      : Workspace(linear_workspace_size(c.rows, c.in, c.out, p, multiprocessor_count())) {}
  explicit Workspace(const GemmWorkspaceSize& size)
      : storage(static_cast<size_t>(size.floats), kNaN), counters(static_cast<size_t>(size.counters), 0u) {}
  GemmWorkspace view() {
    return {storage.empty() ? nullptr : storage.data(), static_cast<int64_t>(storage.size()),
            counters.empty() ? nullptr : counters.data(), static_cast<int64_t>(counters.size())};
  }
  // Every launch must leave the counters zero: the next launch (or graph replay) starts from them.
  ::testing::AssertionResult counters_zero() const {
    for (size_t i = 0; i < counters.size(); ++i)
      if (counters[i] != 0)
        return ::testing::AssertionFailure() << "counter " << i << " of " << counters.size() << " is "
                                             << counters[i] << " after the launch";
    return ::testing::AssertionSuccess();
  }
  std::vector<float> storage;
  std::vector<unsigned> counters;
};

// The launchers, each followed by the check that the launch left every counter zero.
void run_forward(const LinearForward& f, Precision p, Workspace& workspace) {
  linear_forward(f, p, workspace.view(), nullptr);
  EXPECT_TRUE(workspace.counters_zero()) << "forward";
}
void run_backward(const LinearBackward& b, Precision p, Workspace& workspace) {
  linear_backward(b, p, workspace.view(), nullptr);
  EXPECT_TRUE(workspace.counters_zero()) << "backward";
}

// The block order the emulator runs every launch in, while one lives (0, by index, again after):
// shuffled orders change which block arrives last at a split-K tile, a row of tiles or a launch's end.
struct BlockOrder {
  explicit BlockOrder(uint64_t seed) { emu::set_block_order(seed); }
  ~BlockOrder() { emu::set_block_order(0); }
  BlockOrder(const BlockOrder&) = delete;
  BlockOrder& operator=(const BlockOrder&) = delete;
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
    d.pixels = random_pixels(in_count, seed);
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

// The launch descriptions with the layer's input (x or its pixels) and parameters filled in, no epilogue.
LinearForward forward_of(const LinearCase& c, const LayerData& d, float* y) {
  LinearForward f;
  f.rows = c.rows, f.in = c.in, f.out = c.out, f.activation = c.relu ? Activation::kReLU : Activation::kIdentity;
  if (c.pixels)
    f.pixels = d.pixels.data();
  else
    f.x = d.x.data();
  f.weight = d.w.data();
  f.bias = d.b.data();
  f.y = y;
  return f;
}
// weight and bias are the caller's copies: Adam updates them in place.
LinearBackward backward_of(const LinearCase& c, const LayerData& d, std::vector<float>& weight,
                           std::vector<float>& bias, const float* y, const float* dy, float* dx, float* dweight,
                           float* dbias) {
  LinearBackward b;
  b.rows = c.rows, b.in = c.in, b.out = c.out, b.activation = c.relu ? Activation::kReLU : Activation::kIdentity;
  if (c.pixels)
    b.pixels = d.pixels.data();
  else
    b.x = d.x.data();
  b.weight = weight.data();
  b.bias = bias.data();
  b.y = y;
  b.dy = dy;
  b.dx = dx;
  b.dweight = dweight;
  b.dbias = dbias;
  return b;
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

std::vector<float> reference_forward(const LinearCase& c, const LayerData& d) {
  std::vector<float> y(static_cast<size_t>(c.rows) * c.out);
  ref::linear_forward(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data());
  return y;
}

// The reference's backward (dx unless with_dx is false) and the masked dy its error bounds need.
struct ReferenceBackward {
  std::vector<float> dy_masked, dx, dw, db;
};
ReferenceBackward reference_backward(const LinearCase& c, const LayerData& d, const std::vector<float>& y,
                                     bool with_dx) {
  ReferenceBackward r{d.dy, std::vector<float>(with_dx ? d.x.size() : 0), std::vector<float>(d.w.size()),
                      std::vector<float>(c.out)};
  ref::linear_backward<float>(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), y.data(), r.dy_masked.data(),
                              with_dx ? r.dx.data() : nullptr, r.dw.data(), r.db.data());
  return r;
}

// The kernels' dx (when given), dW and db against the reference's.
void expect_gradients(const LinearCase& c, Precision p, const LayerData& d, const ReferenceBackward& want,
                      const std::vector<float>* dx, const std::vector<float>& dw, const std::vector<float>& db) {
  if (dx != nullptr) {
    EXPECT_TRUE(within_scaled(*dx, want.dx, abs_products(c.rows, c.in, c.out, want.dy_masked, c.out, 1, d.w, c.in, 1),
                              gemm_tolerance(p)))
        << "dx";
  }
  EXPECT_TRUE(within_scaled(dw, want.dw, abs_products(c.out, c.in, c.rows, want.dy_masked, 1, c.out, d.x, c.in, 1),
                            gemm_tolerance(p)))
      << "dW";
  // db is a plain FP32 column sum in both precisions.
  EXPECT_TRUE(within_scaled(db, want.db, bias_grad_scale(c, want.dy_masked), gemm_tolerance(Precision::kFp32)))
      << "db";
}

// The kernels' forward against the reference's y; outputs start as NaN, so an element the kernels
// never write fails too.
void check_forward(const LinearCase& c, Precision p, const LayerData& d, const std::vector<float>& ref_y) {
  Workspace workspace(c, p);
  std::vector<float> y(ref_y.size(), kNaN);
  run_forward(forward_of(c, d, y.data()), p, workspace);
  EXPECT_TRUE(within_scaled(y, ref_y, forward_scale(c, d), gemm_tolerance(p))) << "y";
}

// The kernels' backward (dx unless without_dx or pixels, dW, db) against the reference's, both from
// the same y so that both apply the same ReLU mask. Without Adam, W, b and dy are left as they were.
void check_backward(const LinearCase& c, Precision p, const LayerData& d, const std::vector<float>& y,
                    bool without_dx = false) {
  const bool with_dx = !without_dx && !c.pixels;
  const ReferenceBackward want = reference_backward(c, d, y, with_dx);
  Workspace workspace(c, p);
  std::vector<float> dx(with_dx ? d.x.size() : 0, kNaN), dw(d.w.size(), kNaN), db(c.out, kNaN);
  std::vector<float> w = d.w, b = d.b;
  const std::vector<float> dy = d.dy;
  run_backward(backward_of(c, d, w, b, y.data(), dy.data(), with_dx ? dx.data() : nullptr, dw.data(), db.data()), p,
               workspace);
  EXPECT_TRUE(bitwise_equal(dy, d.dy)) << "the kernels must not change dy";
  EXPECT_TRUE(bitwise_equal(w, d.w) && bitwise_equal(b, d.b)) << "without Adam, W and b stay as they are";
  expect_gradients(c, p, d, want, with_dx ? &dx : nullptr, dw, db);
}

// One layer on random data against the reference.
void check_layer(const LinearCase& c, Precision p, uint32_t seed, Launches launches = Launches::kForwardAndBackward) {
  SCOPED_TRACE(name_of(c) + " " + name_of(p));
  const LayerData d = random_layer(c, seed);
  const std::vector<float> ref_y = reference_forward(c, d);
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

// The pixel path: the first layer reads uint8 pixels and scales them by 1/255 as it loads them.
std::vector<LinearCase> pixel_cases(bool quick_mode) {
  if (quick_mode) return {{5, 13, 7, true, true}, {33, 64, 40, true, true}};
  return {{1, 784, 400, true, true},  {129, 784, 40, true, true}, {96, 784, 20, false, true},
          {5, 13, 7, true, true},     {3, 784, 2, false, true},   {33, 64, 40, true, true}};
}

// ---- the products alone ------------------------------------------------------------------------------

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
        const LayerPlans plans = plans_of(c, p, run.launches != Launches::kBackwardWithoutDx);
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
  const std::vector<float> ref_y = reference_forward(c, d);
  const ReferenceBackward want = reference_backward(c, d, ref_y, true);

  // Each array one float past an aligned allocation's start; it still ends where the allocation does.
  auto shifted = [](const std::vector<float>& v) {
    std::vector<float> storage(v.size() + 1, kNaN);
    std::copy(v.begin(), v.end(), storage.begin() + 1);
    return storage;
  };
  auto unshifted = [](const std::vector<float>& storage) {
    return std::vector<float>(storage.begin() + 1, storage.end());
  };
  const std::vector<float> x = shifted(d.x), dy = shifted(d.dy), y_in = shifted(ref_y);
  std::vector<float> w = shifted(d.w), y = shifted(ref_y), dx = shifted(d.x), dw = shifted(d.w);
  std::fill(y.begin(), y.end(), kNaN);
  std::fill(dx.begin(), dx.end(), kNaN);
  std::fill(dw.begin(), dw.end(), kNaN);
  std::vector<float> b = d.b, db(c.out, kNaN);
  Workspace workspace(c, p);
  LinearForward f = forward_of(c, d, y.data() + 1);
  f.x = x.data() + 1;
  f.weight = w.data() + 1;
  run_forward(f, p, workspace);
  LinearBackward lb = backward_of(c, d, w, b, y_in.data() + 1, dy.data() + 1, dx.data() + 1, dw.data() + 1, db.data());
  lb.x = x.data() + 1;
  lb.weight = w.data() + 1;
  run_backward(lb, p, workspace);
  EXPECT_TRUE(within_scaled(unshifted(y), ref_y, forward_scale(c, d), gemm_tolerance(p))) << "y";
  const std::vector<float> dx_got = unshifted(dx);
  expect_gradients(c, p, d, want, &dx_got, unshifted(dw), db);
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
    const std::vector<float> ref_y = reference_forward(c, d);
    std::vector<float> y(out_count, -1.0f);
    size_t ref_nans = 0;
    for (float v : ref_y) ref_nans += std::isnan(v);
    ASSERT_EQ(ref_nans, static_cast<size_t>(c.rows + c.out - 1)) << "the reference keeps the NaN's row and column";

    Workspace workspace(c, p);
    run_forward(forward_of(c, d, y.data()), p, workspace);
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
    std::vector<float> y = reference_forward(c, d);
    for (size_t i = 0; i < y.size(); i += 3) {
      y[i] = kNaN;
      d.dy[i] = 1e6f;
    }
    check_backward(c, p, d, y);
  }
}

// Split-K partial sums are reduced in split order: two runs agree bit for bit, whatever the
// workspace and the outputs held before and whichever block arrives last.
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
  auto run = [&](float fill, uint64_t block_order) {
    BlockOrder order(block_order);
    std::fill(workspace.storage.begin(), workspace.storage.end(), fill);
    Outputs o{std::vector<float>(d.dy.size(), fill), std::vector<float>(d.x.size(), fill),
              std::vector<float>(d.w.size(), fill), std::vector<float>(d.b.size(), fill)};
    std::vector<float> w = d.w, b = d.b;
    run_forward(forward_of(c, d, o.y.data()), p, workspace);
    run_backward(backward_of(c, d, w, b, o.y.data(), d.dy.data(), o.dx.data(), o.dw.data(), o.db.data()), p,
                 workspace);
    return o;
  };
  const Outputs first = run(kNaN, 0);
  for (const uint64_t order : {0, 777}) {
    SCOPED_TRACE("block order " + std::to_string(order));
    const Outputs second = run(12345.0f, order);
    EXPECT_TRUE(bitwise_equal(first.y, second.y)) << "y";
    EXPECT_TRUE(bitwise_equal(first.dx, second.dx)) << "dx";
    EXPECT_TRUE(bitwise_equal(first.dw, second.dw)) << "dW";
    EXPECT_TRUE(bitwise_equal(first.db, second.db)) << "db";
  }
  for (const std::vector<float>* v : {&first.y, &first.dx, &first.dw, &first.db})
    for (float e : *v) ASSERT_FALSE(std::isnan(e)) << "every output is written";
}

// dx == nullptr: a backward that needs no input gradient.
TEST_P(LinearKernels, BackwardWithoutInputGradient) {
  check_layer({33, 64, 40, true}, GetParam(), 41, Launches::kBackwardWithoutDx);
  check_layer({33, 13, 37, false}, GetParam(), 51, Launches::kBackwardWithoutDx);
}

std::string precision_name(const testing::TestParamInfo<Precision>& info) { return name_of(info.param); }

INSTANTIATE_TEST_SUITE_P(BothPrecisions, LinearKernels, testing::Values(Precision::kFp32, Precision::kTf32),
                         precision_name);

// ---- the epilogues ----------------------------------------------------------------------------------
// Each against the composition of the reference ops it replaces. Where an epilogue's input is the
// launch's own product (the head's mu ‖ logvar, the logits, dz, dW and db), the product is held to
// the reference's within the GEMM bound and the epilogue's result to the reference op applied to the
// kernels' product, so that each bound says what it is about.

class FusedEpilogues : public testing::TestWithParam<Precision> {};

AdamHyper adam_hyper(const std::string& kind) {
  AdamHyper hyper;
  if (kind != "adam") {
    hyper.lr = 3e-3;
    hyper.weight_decay = 0.01;
    hyper.decoupled = kind == "adamw";
  }
  return hyper;
}

// Field by field, bit for bit: the kernel derives them with the very function the test calls.
::testing::AssertionResult same_coefficients(const AdamCoefficients<float>& got, const AdamCoefficients<float>& want) {
  using C = AdamCoefficients<float>;
  const float C::*fields[] = {&C::beta1,        &C::one_minus_beta1, &C::beta2,     &C::one_minus_beta2, &C::eps,
                              &C::weight_decay, &C::step_size,       &C::bias2_sqrt, &C::decay_factor};
  for (size_t i = 0; i < std::size(fields); ++i)
    if (std::memcmp(&(got.*fields[i]), &(want.*fields[i]), sizeof(float)) != 0)
      return ::testing::AssertionFailure() << "coefficient " << i << " is " << got.*fields[i] << ", want "
                                           << want.*fields[i];
  if (got.decoupled != want.decoupled) return ::testing::AssertionFailure() << "decoupled differs";
  return ::testing::AssertionSuccess();
}

// ---- the first launch of a step: StepAdvance --------------------------------------------------------

// The first layer (pixel input) at partial batches, split and not, and one layer of floats.
std::vector<LinearCase> advance_cases() {
  if (quick()) return {{5, 13, 7, true, true}, {33, 64, 40, true, true}};
  return {{1, 784, 400, true, true}, {129, 784, 400, true, true}, {97, 64, 40, true, true},
          {33, 13, 7, true, true},   {97, 20, 400, true},         {768, 20, 704, true, true}};
}

// ++step once per launch, whatever its number of blocks; the noise stream of that step; Adam's
// coefficients for it; and the layer's own output as without the epilogue.
TEST_P(FusedEpilogues, StepAdvanceCountsKeysTheNoiseAndDerivesAdamCoefficients) {
  const Precision p = GetParam();
  const char* kinds[] = {"adam", "adam_l2", "adamw"};
  const long long starts[] = {0, 1, 41, 999};
  PlansSeen seen;
  uint32_t seed = 3000;
  int index = 0;
  for (const LinearCase& c : advance_cases()) {
    const long long start = starts[index % 4];
    const AdamHyper hyper = adam_hyper(kinds[index++ % 3]);
    SCOPED_TRACE(name_of(c) + " " + name_of(p) + ", from step " + std::to_string(start));
    seen.note(plans_of(c, p).forward);
    const LayerData d = random_layer(c, seed += 10);
    std::vector<long long> step{start};
    std::vector<uint64_t> stream{12345};
    std::vector<AdamCoefficients<float>> coefficients(1);
    std::memset(static_cast<void*>(coefficients.data()), 0xFF, sizeof(AdamCoefficients<float>));
    std::vector<float> y(static_cast<size_t>(c.rows) * c.out, kNaN);
    Workspace workspace(c, p);
    LinearForward f = forward_of(c, d, y.data());
    f.advance = StepAdvance{step.data(), stream.data(), hyper, coefficients.data()};
    run_forward(f, p, workspace);
    EXPECT_EQ(step[0], start + 1);
    EXPECT_EQ(stream[0], train_stream(static_cast<uint64_t>(start + 1)));
    EXPECT_TRUE(same_coefficients(coefficients[0], adam_coefficients<float>(hyper, start + 1)));
    EXPECT_TRUE(within_scaled(y, reference_forward(c, d), forward_scale(c, d), gemm_tolerance(p))) << "y";
  }
  EXPECT_TRUE(seen.complete());

  // Without somewhere to put Adam's coefficients: the step and the stream only.
  const LinearCase c{5, 13, 7, true, true};
  const LayerData d = random_layer(c, 9);
  std::vector<long long> step{7};
  std::vector<uint64_t> stream{0};
  std::vector<float> y(static_cast<size_t>(c.rows) * c.out, kNaN);
  Workspace workspace(c, p);
  LinearForward f = forward_of(c, d, y.data());
  f.advance = StepAdvance{step.data(), stream.data(), AdamHyper{}, nullptr};
  run_forward(f, p, workspace);
  EXPECT_EQ(step[0], 8);
  EXPECT_EQ(stream[0], train_stream(8));
}

// ---- the head: ReparamEpilogue ----------------------------------------------------------------------

struct HeadCase {
  int rows, in, latent;
};
// The models' heads (400 -> 2 x 20, 256 -> 2 x 2) at partial batches (split-K), an unsplit one, and
// 64x64 tiles; latent 3, so that rows do not start on a Philox group.
std::vector<HeadCase> head_cases() {
  if (quick()) return {{33, 64, 3}, {5, 13, 2}};
  return {{1, 400, 20}, {97, 400, 20}, {129, 400, 20}, {1, 256, 2},
          {97, 256, 2}, {129, 256, 2}, {33, 13, 3},    {768, 20, 352}};
}

// The head's launch with the reparameterisation: mu ‖ logvar, eps and z, each of its exact size.
struct HeadRun {
  HeadCase shape;
  LinearCase layer;
  LayerData data;
  uint64_t noise_seed;
  std::vector<uint64_t> stream;
  std::vector<float> y, eps, z;
  HeadRun(const HeadCase& h, uint32_t seed)
      : shape(h),
        layer{h.rows, h.in, 2 * h.latent, false},
        data(random_layer(layer, seed)),
        noise_seed(0x0123'4567'89ab'cdefull + seed),
        stream{seed % 2 ? train_stream(1000 + seed) : eval_stream(3, seed)} {}
  size_t count() const { return static_cast<size_t>(shape.rows) * shape.latent; }
  void run(Precision p, Workspace& workspace) {
    y.assign(static_cast<size_t>(shape.rows) * layer.out, kNaN);
    eps.assign(count(), kNaN);
    z.assign(count(), kNaN);
    LinearForward f = forward_of(layer, data, y.data());
    f.reparam = ReparamEpilogue{shape.latent, noise_seed, stream.data(), eps.data(), z.data()};
    run_forward(f, p, workspace);
  }
};

// eps bit for bit (the emulated kernel draws with the reference's own Philox code), z to float
// rounding of its terms |mu| + |sigma eps|, from the mu ‖ logvar the kernel wrote.
void check_head(const HeadCase& h, Precision p, uint32_t seed, PlansSeen& seen) {
  HeadRun run(h, seed);
  SCOPED_TRACE(name_of(run.layer) + ", latent " + std::to_string(h.latent) + " " + name_of(p));
  seen.note(plans_of(run.layer, p).forward);
  Workspace workspace(run.layer, p);
  run.run(p, workspace);
  EXPECT_TRUE(within_scaled(run.y, reference_forward(run.layer, run.data), forward_scale(run.layer, run.data),
                            gemm_tolerance(p)))
      << "mu ‖ logvar";
  std::vector<float> ref_eps(run.count()), ref_z(run.count());
  ref::reparam_forward<float>(h.rows, h.latent, run.noise_seed, run.stream[0], run.y.data(), ref_eps.data(),
                              ref_z.data());
  EXPECT_TRUE(bitwise_equal(run.eps, ref_eps)) << "eps";
  std::vector<double> z_terms(run.count());
  for (int r = 0; r < h.rows; ++r)
    for (int j = 0; j < h.latent; ++j) {
      const float* stats = run.y.data() + static_cast<size_t>(r) * 2 * h.latent;
      const size_t i = static_cast<size_t>(r) * h.latent + j;
      z_terms[i] = std::fabs(stats[j]) + std::exp(0.5 * stats[h.latent + j]) * std::fabs(ref_eps[i]);
    }
  EXPECT_TRUE(within_scaled(run.z, ref_z, z_terms, kTermRoundings)) << "z";
}

TEST_P(FusedEpilogues, HeadReparameterisationMatchesReference) {
  PlansSeen seen;
  uint32_t seed = 4000;
  for (const HeadCase& h : head_cases()) check_head(h, GetParam(), seed += 11, seen);
  EXPECT_TRUE(seen.complete());
}

// ---- the seed model's layers: LeakyReLU, pixels on [-1, 1] ---------------------------------------------

// A hidden layer with LeakyReLU (or ReLU through the same path), and the first layer reading the
// Gaussian likelihood's pixels on [-1, 1], against the reference's composition: ref::linear_forward
// then ref::activation_forward; ref::activation_backward then ref::linear_backward.
struct ActivationCase {
  LinearCase layer;  // layer.relu unused: the activation is below
  Activation activation;
  float negative_slope;
  bool signed_pixels;
};
std::vector<ActivationCase> activation_cases() {
  const Activation leaky = Activation::kLeakyReLU;
  if (quick())
    return {{{33, 64, 40, false}, leaky, 0.2f, false},
            {{5, 13, 7, false, true}, leaky, 0.01f, true},
            {{33, 64, 40, false, true}, Activation::kReLU, 0.0f, true}};
  return {{{33, 64, 40, false}, leaky, 0.2f, false},     {{33, 13, 37, false}, leaky, 0.01f, false},
          {{130, 66, 65, false}, leaky, 0.1f, false},    {{760, 20, 700, false}, leaky, 0.1f, false},
          {{144, 392, 196, false}, leaky, 0.1f, false},  {{129, 784, 40, false, true}, leaky, 0.1f, true},
          {{5, 13, 7, false, true}, leaky, 0.2f, true},  {{33, 64, 40, false, true}, Activation::kReLU, 0.0f, true},
          {{144, 784, 392, false, true}, leaky, 0.1f, true}};
}

void check_activation_layer(const ActivationCase& a, Precision p, uint32_t seed, PlansSeen& seen) {
  const LinearCase& c = a.layer;
  SCOPED_TRACE(name_of(c) + " " + name_of(p) + (a.activation == Activation::kReLU ? " relu" : " leaky relu") +
               (a.signed_pixels ? ", signed pixels" : ""));
  seen.note(plans_of(c, p).forward);
  LayerData d = random_layer(c, seed);
  if (a.signed_pixels)
    for (size_t i = 0; i < d.x.size(); ++i) d.x[i] = pixel_to_signed(d.pixels[i]);
  const size_t count = static_cast<size_t>(c.rows) * c.out;
  std::vector<float> ref_y(count);
  ref::linear_forward<float>(c.rows, c.in, c.out, false, d.x.data(), d.w.data(), d.b.data(), ref_y.data());
  ref::activation_forward<float>(static_cast<int64_t>(count), a.activation, a.negative_slope, ref_y.data());

  Workspace workspace(c, p);
  std::vector<float> y(count, kNaN);
  LinearForward f = forward_of(c, d, y.data());
  f.activation = a.activation;
  f.negative_slope = a.negative_slope;
  f.signed_pixels = a.signed_pixels;
  run_forward(f, p, workspace);
  // Both activations are 1-Lipschitz: the product's bound holds for y.
  EXPECT_TRUE(within_scaled(y, ref_y, forward_scale(c, d), gemm_tolerance(p))) << "y";
  size_t negative = 0;
  for (float v : ref_y) negative += v < 0.0f;
  if (a.activation == Activation::kLeakyReLU) {
    EXPECT_GT(negative, count / 8) << "negative outputs pass, scaled";
  }

  // The backward from the reference's y, so that both take the same branch of the mask.
  const bool with_dx = !c.pixels;
  ReferenceBackward want{d.dy, std::vector<float>(with_dx ? d.x.size() : 0), std::vector<float>(d.w.size()),
                         std::vector<float>(c.out)};
  ref::activation_backward<float>(static_cast<int64_t>(count), a.activation, a.negative_slope, ref_y.data(),
                                  want.dy_masked.data());
  ref::linear_backward<float>(c.rows, c.in, c.out, false, d.x.data(), d.w.data(), ref_y.data(), want.dy_masked.data(),
                              with_dx ? want.dx.data() : nullptr, want.dw.data(), want.db.data());
  std::vector<float> dx(with_dx ? d.x.size() : 0, kNaN), dw(d.w.size(), kNaN), db(c.out, kNaN);
  std::vector<float> w = d.w, b = d.b;
  LinearBackward lb = backward_of(c, d, w, b, ref_y.data(), d.dy.data(), with_dx ? dx.data() : nullptr, dw.data(),
                                  db.data());
  lb.activation = a.activation;
  lb.negative_slope = a.negative_slope;
  lb.signed_pixels = a.signed_pixels;
  run_backward(lb, p, workspace);
  expect_gradients(c, p, d, want, with_dx ? &dx : nullptr, dw, db);
}

TEST_P(FusedEpilogues, LeakyReluAndSignedPixelsMatchReference) {
  PlansSeen seen;
  uint32_t seed = 2500;
  for (const ActivationCase& a : activation_cases()) check_activation_layer(a, GetParam(), seed += 10, seen);
  EXPECT_TRUE(seen.complete());
}

// ---- the output layer: LossEpilogue -----------------------------------------------------------------

struct OutputCase {
  int rows, in, pixels, latent;
};
// The models' output layers (400 -> 784, 512 -> 784) at partial batches (split-K), a tail of one
// column in the last column tile, an unsplit one, and 64x64 tiles.
std::vector<OutputCase> output_cases() {
  if (quick()) return {{33, 64, 100, 3}, {5, 13, 37, 2}};
  return {{1, 400, 784, 20}, {129, 400, 784, 20}, {97, 512, 784, 2},
          {33, 20, 257, 3},  {5, 13, 37, 1},      {768, 20, 784, 20}};
}
std::string name_of(const OutputCase& o) {
  return std::to_string(o.rows) + "x" + std::to_string(o.in) + "->" + std::to_string(o.pixels) + ", latent " +
         std::to_string(o.latent);
}

// The output layer's launch with the loss: its inputs, and its outputs each of their exact size.
struct LossRun {
  OutputCase shape;
  LinearCase layer;
  LayerData data;
  std::vector<uint8_t> target;
  std::vector<float> mu_logvar;
  std::vector<float> y, dlogits;
  std::vector<double> scratch, totals{0.5, 0.25};
  Likelihood likelihood = Likelihood::kBernoulli;
  float alpha = 1.0f, grad_scale = 1.0f;  // kGaussian's
  LossRun(const OutputCase& o, uint32_t seed)
      : shape(o),
        layer{o.rows, o.in, o.pixels, false},
        data(random_layer(layer, seed)),
        target(random_pixels(count(), seed + 5)),
        mu_logvar(random_mu_logvar(o.rows, o.latent, seed + 6)) {}
  size_t count() const { return static_cast<size_t>(shape.rows) * shape.pixels; }
  // Outputs and scratch start as NaN; the batch's sums are added to totals.
  void run(Precision p, Workspace& workspace, bool with_dlogits, NonfiniteGuard guard = {}) {
    y.assign(count(), kNaN);
    dlogits.assign(with_dlogits ? count() : 0, kNaN);
    scratch.assign(static_cast<size_t>(loss_scratch_doubles(shape.rows, shape.pixels)),
                   std::numeric_limits<double>::quiet_NaN());
    LinearForward f = forward_of(layer, data, y.data());
    f.loss = LossEpilogue{target.data(),  mu_logvar.data(), shape.latent, with_dlogits ? dlogits.data() : nullptr,
                          scratch.data(), totals.data(),    guard,        likelihood,
                          alpha,          grad_scale};
    run_forward(f, p, workspace);
  }
};

// The logits against the reference's product, then everything else against ref::bce_kl_loss on the
// logits the kernel wrote: dlogits, each row's BCE and KL sums (scratch[0, 2 rows)), and the totals
// (totals_before plus the batch's sums), to kLossSumRelative of their terms' magnitudes.
void expect_loss_matches_reference(const LossRun& run, Precision p, const std::vector<double>& totals_before) {
  const OutputCase& o = run.shape;
  EXPECT_TRUE(within_scaled(run.y, reference_forward(run.layer, run.data), forward_scale(run.layer, run.data),
                            gemm_tolerance(p)))
      << "logits";
  std::vector<float> targets(run.count()), ref_dlogits(run.count());
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = pixel_to_unit(run.target[i]);
  std::vector<double> ref_rows(2 * static_cast<size_t>(o.rows));
  const LossSums want = ref::bce_kl_loss<float>(o.rows, o.pixels, o.latent, run.y.data(), targets.data(),
                                                run.mu_logvar.data(), ref_dlogits.data(), ref_rows.data());
  if (!run.dlogits.empty()) {
    EXPECT_TRUE(all_near(run.dlogits, ref_dlogits, 0.0, kernel_checks::kDlogitsAbsolute)) << "dlogits";
  }

  double bce_scale = 0, kl_scale = 0;
  int row_failures = 0;
  for (int r = 0; r < o.rows; ++r) {
    double row_bce_scale = 0, row_kl_scale = 0;
    for (int j = 0; j < o.pixels; ++j) {
      const size_t i = static_cast<size_t>(r) * o.pixels + j;
      row_bce_scale += kernel_checks::bce_magnitude(run.y[i], targets[i]);
    }
    const float* stats = run.mu_logvar.data() + static_cast<size_t>(r) * 2 * o.latent;
    for (int j = 0; j < o.latent; ++j) row_kl_scale += kernel_checks::kl_magnitude(stats[j], stats[o.latent + j]);
    const bool bce_ok = std::fabs(run.scratch[r] - ref_rows[r]) <= kernel_checks::kLossSumRelative * row_bce_scale;
    const bool kl_ok = std::fabs(run.scratch[o.rows + r] - ref_rows[o.rows + r]) <=
                       kernel_checks::kLossSumRelative * row_kl_scale;
    if ((!bce_ok || !kl_ok) && row_failures++ < 5)
      ADD_FAILURE() << "row " << r << ": BCE " << run.scratch[r] << ", want " << ref_rows[r] << "; KL "
                    << run.scratch[o.rows + r] << ", want " << ref_rows[o.rows + r];
    bce_scale += row_bce_scale;
    kl_scale += row_kl_scale;
  }
  EXPECT_EQ(row_failures, 0) << "rows whose sums in scratch differ from the reference's";
  EXPECT_NEAR(run.totals[0], totals_before[0] + want.reconstruction, kernel_checks::kLossSumRelative * bce_scale) << "BCE total";
  EXPECT_NEAR(run.totals[1], totals_before[1] + want.kl, kernel_checks::kLossSumRelative * kl_scale) << "KL total";
}

TEST_P(FusedEpilogues, OutputLayerLossMatchesReference) {
  const Precision p = GetParam();
  PlansSeen seen;
  uint32_t seed = 5000;
  for (const OutputCase& o : output_cases()) {
    SCOPED_TRACE(name_of(o) + " " + name_of(p));
    LossRun run(o, seed += 13);
    seen.note(plans_of(run.layer, p).forward);
    Workspace workspace(run.layer, p);
    std::vector<long long> step{9}, first_bad_step{0};
    const std::vector<double> before = run.totals;
    run.run(p, workspace, true, {step.data(), first_bad_step.data()});
    expect_loss_matches_reference(run, p, before);
    EXPECT_EQ(first_bad_step[0], 0) << "a finite batch does not set the NaN guard";
  }
  EXPECT_TRUE(seen.complete());
}

// Fewer cases for the loss's variants: the rows and tiles of a batch of 129 MNIST images, split
// and unsplit, a tail column.
std::vector<OutputCase> loss_variant_cases() {
  if (quick()) return output_cases();
  return {{129, 64, 784, 20}, {33, 20, 257, 3}, {5, 13, 37, 1}};
}

// Evaluation passes no dlogits: the same logits and sums, bit for bit, and nothing else written.
TEST_P(FusedEpilogues, OutputLayerLossWithoutDlogitsGivesTheSameSums) {
  const Precision p = GetParam();
  PlansSeen seen;
  uint32_t seed = 5500;
  for (const OutputCase& o : loss_variant_cases()) {
    SCOPED_TRACE(name_of(o) + " " + name_of(p));
    LossRun run(o, seed += 13);
    seen.note(plans_of(run.layer, p).forward);
    Workspace workspace(run.layer, p);
    run.run(p, workspace, true);
    const std::vector<float> y = run.y;
    const std::vector<double> rows(run.scratch.begin(), run.scratch.begin() + 2 * o.rows), totals = run.totals;
    run.totals = {0.5, 0.25};
    run.run(p, workspace, false);
    expect_loss_matches_reference(run, p, {0.5, 0.25});
    EXPECT_TRUE(bitwise_equal(run.y, y)) << "logits";
    EXPECT_TRUE(bitwise_equal(std::vector<double>(run.scratch.begin(), run.scratch.begin() + 2 * o.rows), rows))
        << "row sums";
    EXPECT_TRUE(bitwise_equal(run.totals, totals)) << "totals";
  }
  EXPECT_TRUE(seen.split && seen.whole);
}

// The NaN guard: a NaN logit (here a NaN input, which poisons the last row's logits) makes the totals
// NaN, and the guard records the step it reads; a finite batch before leaves it unset, one after
// leaves the record alone.
TEST_P(FusedEpilogues, OutputLayerNanGuardRecordsTheStep) {
  const Precision p = GetParam();
  PlansSeen seen;
  uint32_t seed = 6000;
  for (const OutputCase& o : loss_variant_cases()) {
    SCOPED_TRACE(name_of(o) + " " + name_of(p));
    LossRun finite(o, seed += 13), poisoned(o, seed);
    poisoned.data.x[static_cast<size_t>(o.rows) * o.in - 1] = kNaN;
    seen.note(plans_of(finite.layer, p).forward);
    Workspace workspace(finite.layer, p);
    std::vector<long long> step{5}, first_bad_step{0};
    const NonfiniteGuard guard{step.data(), first_bad_step.data()};
    finite.run(p, workspace, true, guard);
    EXPECT_EQ(first_bad_step[0], 0) << "a finite batch is not flagged";
    step[0] = 6;
    poisoned.run(p, workspace, true, guard);
    EXPECT_EQ(first_bad_step[0], 6) << "the step of the batch with a NaN logit";
    EXPECT_TRUE(std::isnan(poisoned.totals[0])) << "BCE total";
    EXPECT_FALSE(std::isnan(poisoned.totals[1])) << "KL total";
    const size_t last_row = static_cast<size_t>(o.rows - 1) * o.pixels;
    for (size_t i = 0; i < poisoned.count(); ++i)
      ASSERT_EQ(std::isnan(poisoned.dlogits[i]), i >= last_row) << "dlogits[" << i << "]";
    step[0] = 7;
    finite.totals = {0.0, 0.0};
    finite.run(p, workspace, true, guard);
    EXPECT_EQ(first_bad_step[0], 6) << "a later finite batch must not move the record";
  }
  EXPECT_TRUE(seen.split && seen.whole);
}

// ---- the Gaussian likelihood's loss (the seed's VAE) ------------------------------------------------

// The loss epilogue with the Gaussian likelihood against ref::gaussian_kl_loss on the logits the
// kernel wrote and the targets on [-1, 1] (pixel_to_signed): dlogits at alpha / pixels / rows, each
// row's reconstruction (alpha times the mean squared error) and KL sums, the totals.
void expect_gaussian_loss_matches_reference(const LossRun& run, Precision p, const std::vector<double>& totals_before) {
  const OutputCase& o = run.shape;
  EXPECT_TRUE(within_scaled(run.y, reference_forward(run.layer, run.data), forward_scale(run.layer, run.data),
                            gemm_tolerance(p)))
      << "logits";
  std::vector<float> targets(run.count()), ref_dlogits(run.count());
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = pixel_to_signed(run.target[i]);
  std::vector<double> ref_rows(2 * static_cast<size_t>(o.rows));
  const LossSums want =
      ref::gaussian_kl_loss<float>(o.rows, o.pixels, o.latent, run.alpha, run.grad_scale, run.y.data(), targets.data(),
                                   run.mu_logvar.data(), ref_dlogits.data(), ref_rows.data());
  if (!run.dlogits.empty()) {
    // 2 (tanh(a) - t)(1 - tanh(a)^2) is at most 4 in magnitude; tanhf may differ by an ulp or two.
    const double weight = std::fabs(run.alpha / static_cast<double>(o.pixels) * run.grad_scale);
    EXPECT_TRUE(within_scaled(run.dlogits, ref_dlogits, std::vector<double>(run.count(), 8 * weight), kTermRoundings))
        << "dlogits";
  }
  double reconstruction_scale = 0, kl_scale = 0;
  int row_failures = 0;
  for (int r = 0; r < o.rows; ++r) {
    // Each squared error is at most 4; the row's term is alpha times their mean.
    const double row_scale = 4.0 * run.alpha;
    double row_kl_scale = 0;
    const float* stats = run.mu_logvar.data() + static_cast<size_t>(r) * 2 * o.latent;
    for (int j = 0; j < o.latent; ++j) row_kl_scale += kernel_checks::kl_magnitude(stats[j], stats[o.latent + j]);
    const bool ok = std::fabs(run.scratch[r] - ref_rows[r]) <= kernel_checks::kLossSumRelative * row_scale &&
                    std::fabs(run.scratch[o.rows + r] - ref_rows[o.rows + r]) <=
                        kernel_checks::kLossSumRelative * row_kl_scale;
    if (!ok && row_failures++ < 5)
      ADD_FAILURE() << "row " << r << ": reconstruction " << run.scratch[r] << ", want " << ref_rows[r] << "; KL "
                    << run.scratch[o.rows + r] << ", want " << ref_rows[o.rows + r];
    reconstruction_scale += row_scale;
    kl_scale += row_kl_scale;
  }
  EXPECT_EQ(row_failures, 0) << "rows whose sums in scratch differ from the reference's";
  EXPECT_NEAR(run.totals[0], totals_before[0] + want.reconstruction, kernel_checks::kLossSumRelative * reconstruction_scale)
      << "reconstruction total";
  EXPECT_NEAR(run.totals[1], totals_before[1] + want.kl, kernel_checks::kLossSumRelative * kl_scale) << "KL total";
}

// A Gaussian output layer: weights scaled by 1/sqrt(in), so that the logits are O(1) and the Tanh
// is not saturated everywhere (its gradient would vanish and hide mistakes).
LossRun gaussian_run(const OutputCase& o, uint32_t seed, float alpha) {
  LossRun run(o, seed);
  for (float& w : run.data.w) w /= std::sqrt(static_cast<float>(o.in));
  run.likelihood = Likelihood::kGaussian;
  run.alpha = alpha;
  run.grad_scale = static_cast<float>(loss_gradient_scale(Likelihood::kGaussian, o.rows));
  return run;
}

TEST_P(FusedEpilogues, GaussianLossMatchesReference) {
  const Precision p = GetParam();
  PlansSeen seen;
  uint32_t seed = 5700;
  const float alphas[] = {1.0f, 1024.0f, 0.5f};
  int index = 0;
  for (const OutputCase& o : output_cases()) {
    SCOPED_TRACE(name_of(o) + " " + name_of(p) + ", Gaussian");
    LossRun run = gaussian_run(o, seed += 13, alphas[index++ % 3]);
    seen.note(plans_of(run.layer, p).forward);
    Workspace workspace(run.layer, p);
    std::vector<long long> step{9}, first_bad_step{0};
    const std::vector<double> before = run.totals;
    run.run(p, workspace, true, {step.data(), first_bad_step.data()});
    expect_gaussian_loss_matches_reference(run, p, before);
    EXPECT_EQ(first_bad_step[0], 0) << "a finite batch does not set the NaN guard";
    size_t moving = 0;
    for (float g : run.dlogits) moving += g != 0.0f;
    EXPECT_GT(moving, run.count() / 2) << "the Tanh is not saturated: the gradient tests something";

    // Evaluation (no dlogits) gives the same sums, and any block order the same bits.
    const std::vector<float> y = run.y;
    const std::vector<double> scratch = run.scratch, totals = run.totals;
    BlockOrder order(31);
    run.totals = before;
    run.run(p, workspace, false);
    EXPECT_TRUE(bitwise_equal(run.y, y)) << "logits";
    EXPECT_TRUE(bitwise_equal(std::vector<double>(run.scratch.begin(), run.scratch.begin() + 2 * o.rows),
                              std::vector<double>(scratch.begin(), scratch.begin() + 2 * o.rows)))
        << "row sums";
    EXPECT_TRUE(bitwise_equal(run.totals, totals)) << "totals";
  }
  EXPECT_TRUE(seen.complete());
}

// ---- the first decoder layer's backward: ReparamGradEpilogue ----------------------------------------

struct DecoderCase {
  int rows, latent, out;
  float beta;
};
// The models' first decoder layers (2 x 20 -> 400, 2 x 2 -> 256, ReLU) at partial batches, whose dz
// product is split, an unsplit one and 64x64 tiles (a layer this wide is what it takes to fill 132
// SMs with them; one row keeps it cheap).
std::vector<DecoderCase> decoder_cases() {
  if (quick()) return {{33, 3, 64, 1.0f}, {5, 2, 13, 0.5f}};
  return {{1, 20, 400, 1.0f}, {97, 20, 400, 0.5f}, {129, 20, 400, 2.0f}, {1, 2, 256, 0.0f},
          {97, 2, 256, 1.0f}, {129, 2, 256, 1.0f}, {33, 3, 13, 1.0f},    {3, 20, 8448, 1.0f}};
}

// dz, dW and db against the reference's backward; d(mu ‖ logvar) against ref::reparam_backward on
// the dz the kernel wrote, to float rounding of its terms.
void check_decoder(const DecoderCase& dc, Precision p, uint32_t seed, PlansSeen& seen) {
  const LinearCase c{dc.rows, dc.latent, dc.out, true};
  SCOPED_TRACE(name_of(c) + ", beta " + std::to_string(dc.beta) + " " + name_of(p));
  seen.note(plans_of(c, p).input_grad);
  const LayerData d = random_layer(c, seed);
  const std::vector<float> y = reference_forward(c, d);
  const size_t count = static_cast<size_t>(dc.rows) * dc.latent;
  const std::vector<float> mu_logvar = random_mu_logvar(dc.rows, dc.latent, seed + 7);
  const std::vector<float> eps = uniform_floats(count, -3.0f, 3.0f, seed + 8);
  const ReferenceBackward want = reference_backward(c, d, y, true);

  Workspace workspace(c, p);
  std::vector<float> dz(count, kNaN), dw(d.w.size(), kNaN), db(c.out, kNaN), dmu_logvar(2 * count, kNaN);
  std::vector<float> w = d.w, b = d.b;
  LinearBackward lb = backward_of(c, d, w, b, y.data(), d.dy.data(), dz.data(), dw.data(), db.data());
  lb.reparam = ReparamGradEpilogue{dc.latent, dc.beta, mu_logvar.data(), eps.data(), dmu_logvar.data()};
  run_backward(lb, p, workspace);
  expect_gradients(c, p, d, want, &dz, dw, db);

  std::vector<float> ref_dmu_logvar(2 * count);
  ref::reparam_backward<float>(dc.rows, dc.latent, dc.beta, mu_logvar.data(), eps.data(), dz.data(),
                               ref_dmu_logvar.data());
  // S = |dz| + beta |mu| for mu; |dz eps sigma| / 2 + beta (exp(logvar) + 1) / 2 for logvar.
  std::vector<double> terms(2 * count);
  for (int r = 0; r < dc.rows; ++r)
    for (int j = 0; j < dc.latent; ++j) {
      const size_t i = static_cast<size_t>(r) * dc.latent + j, mu = 2 * static_cast<size_t>(r) * dc.latent + j;
      const double logvar = mu_logvar[mu + dc.latent], g = std::fabs(dz[i]);
      terms[mu] = g + dc.beta * std::fabs(mu_logvar[mu]);
      terms[mu + dc.latent] =
          0.5 * g * std::fabs(eps[i]) * std::exp(0.5 * logvar) + 0.5 * dc.beta * (std::exp(logvar) + 1);
    }
  EXPECT_TRUE(within_scaled(dmu_logvar, ref_dmu_logvar, terms, kTermRoundings)) << "d(mu ‖ logvar)";
}

TEST_P(FusedEpilogues, DecoderReparameterisationGradientMatchesReference) {
  PlansSeen seen;
  uint32_t seed = 7000;
  for (const DecoderCase& dc : decoder_cases()) check_decoder(dc, GetParam(), seed += 17, seen);
  EXPECT_TRUE(seen.complete());
}

// ---- Adam on the layer's parameters: AdamEpilogue ---------------------------------------------------

struct AdamState {
  std::vector<float> params, m, v;
};
// S for one update of each element: the magnitudes of the terms that m, v and the parameter sum.
struct AdamTerms {
  std::vector<double> params, m, v;
};
AdamTerms adam_terms(const AdamHyper& hyper, long long step, const std::vector<float>& grads, const AdamState& s) {
  const AdamCoefficients<double> c = adam_coefficients<double>(hyper, step);
  AdamTerms terms;
  for (size_t i = 0; i < grads.size(); ++i) {
    const double p = std::fabs(s.params[i]);
    const double g = std::fabs(grads[i]) + (hyper.decoupled ? 0.0 : c.weight_decay * p);
    const double m = c.beta1 * std::fabs(s.m[i]) + c.one_minus_beta1 * g;
    const double v = c.beta2 * s.v[i] + c.one_minus_beta2 * g * g;
    terms.m.push_back(m);
    terms.v.push_back(v);
    terms.params.push_back(p + c.step_size * m / (std::sqrt(v) / c.bias2_sqrt + c.eps));
  }
  return terms;
}

// Mid-training moments for n parameters.
AdamState adam_state(const std::vector<float>& params, uint32_t seed) {
  return {params, uniform_floats(params.size(), -0.1f, 0.1f, seed),
          uniform_floats(params.size(), 0.0f, 0.01f, seed + 1)};
}

// ref::adam_step on the gradients the kernels wrote, against the kernels' update.
void expect_adam_update(const char* what, const AdamHyper& hyper, long long step, const std::vector<float>& grads,
                        const AdamState& start, const AdamState& got) {
  AdamState want = start;
  ref::adam_step<float>(static_cast<int64_t>(grads.size()), hyper, step, grads.data(), want.params.data(),
                        want.m.data(), want.v.data());
  const AdamTerms terms = adam_terms(hyper, step, grads, start);
  EXPECT_TRUE(within_scaled(got.params, want.params, terms.params, kTermRoundings)) << what;
  EXPECT_TRUE(within_scaled(got.m, want.m, terms.m, kTermRoundings)) << what << " m";
  EXPECT_TRUE(within_scaled(got.v, want.v, terms.v, kTermRoundings)) << what << " v";
  size_t changed = 0;
  for (size_t i = 0; i < grads.size(); ++i) changed += got.params[i] != start.params[i];
  EXPECT_GT(changed, grads.size() / 2) << what << ": updated at all";
}

struct AdamCase {
  LinearCase layer;
  long long step;
  const char* kind;
};
// The default model's layers at partial batches (the first reads pixels and has no dx), a dW split
// along the batch, and 64x64 tiles; each at a step past the first, with each kind of weight decay.
std::vector<AdamCase> adam_cases() {
  if (quick())
    return {{{33, 64, 40, true}, 2, "adam"}, {{5, 13, 7, true, true}, 3, "adamw"}, {{7, 2, 2, false}, 1000, "adam_l2"}};
  return {{{1, 784, 400, true, true}, 2, "adam"},  {{129, 784, 400, true, true}, 3, "adamw"},
          {{97, 400, 40, false}, 1000, "adam_l2"}, {{129, 20, 400, true}, 2, "adamw"},
          {{97, 400, 784, false}, 5, "adam"},      {{33, 13, 37, true}, 7, "adam_l2"},
          {{3, 20, 8448, true}, 2, "adam"}};
}

// dx (from W before the update: the dx blocks read W while the dW blocks update it), dW and db
// against the reference's backward; then W, b and their moments against ref::adam_step with the
// coefficients the step derived, on the dW and db the kernels wrote.
void check_adam(const AdamCase& a, Precision p, uint32_t seed, PlansSeen& seen) {
  const LinearCase& c = a.layer;
  SCOPED_TRACE(name_of(c) + " " + name_of(p) + ", " + a.kind + " at step " + std::to_string(a.step));
  seen.note(plans_of(c, p).weight_grad);
  const bool with_dx = !c.pixels;
  const LayerData d = random_layer(c, seed);
  const std::vector<float> y = reference_forward(c, d);
  const ReferenceBackward want = reference_backward(c, d, y, with_dx);
  const AdamHyper hyper = adam_hyper(a.kind);
  const std::vector<AdamCoefficients<float>> coefficients{adam_coefficients<float>(hyper, a.step)};
  const AdamState weight_start = adam_state(d.w, seed + 20), bias_start = adam_state(d.b, seed + 30);

  AdamState weight = weight_start, bias = bias_start;
  Workspace workspace(c, p);
  std::vector<float> dx(with_dx ? d.x.size() : 0, kNaN), dw(d.w.size(), kNaN), db(c.out, kNaN);
  LinearBackward lb = backward_of(c, d, weight.params, bias.params, y.data(), d.dy.data(),
                                  with_dx ? dx.data() : nullptr, dw.data(), db.data());
  lb.adam = AdamEpilogue{coefficients.data(), weight.m.data(), weight.v.data(), bias.m.data(), bias.v.data()};
  run_backward(lb, p, workspace);
  expect_gradients(c, p, d, want, with_dx ? &dx : nullptr, dw, db);
  expect_adam_update("W", hyper, a.step, dw, weight_start, weight);
  expect_adam_update("b", hyper, a.step, db, bias_start, bias);
}

TEST_P(FusedEpilogues, AdamOnWeightsMatchesReference) {
  PlansSeen seen;
  uint32_t seed = 8000;
  for (const AdamCase& a : adam_cases()) check_adam(a, GetParam(), seed += 19, seen);
  EXPECT_TRUE(seen.complete());
}

// ---- same bits, in any block order ------------------------------------------------------------------

// Every epilogue's sums run in a fixed order, so the same inputs give the same bits, whatever the
// workspace held and whichever block arrives last at a tile or a row of tiles (the shuffled orders).
TEST_P(FusedEpilogues, SameInputsGiveTheSameBitsInAnyBlockOrder) {
  const Precision p = GetParam();
  const uint64_t orders[] = {0, 0, 4242};
  const float fills[] = {kNaN, 12345.0f, -1.0f};

  {  // the loss (and its logits and dlogits)
    LossRun run(quick() ? OutputCase{33, 64, 100, 3} : OutputCase{129, 64, 300, 20}, 17);
    ASSERT_GT(plans_of(run.layer, p).forward.splits, 1);
    ASSERT_GT(plans_of(run.layer, p).forward.grid_n, 1);
    Workspace workspace(run.layer, p);
    std::vector<std::vector<float>> y, dlogits;
    std::vector<std::vector<double>> scratch, totals;
    for (int i = 0; i < 3; ++i) {
      BlockOrder order(orders[i]);
      std::fill(workspace.storage.begin(), workspace.storage.end(), fills[i]);
      run.totals = {0.5, 0.25};
      run.run(p, workspace, true);
      y.push_back(run.y), dlogits.push_back(run.dlogits), scratch.push_back(run.scratch), totals.push_back(run.totals);
    }
    for (int i = 1; i < 3; ++i) {
      SCOPED_TRACE("loss, run " + std::to_string(i));
      EXPECT_TRUE(bitwise_equal(y[i], y[0])) << "logits";
      EXPECT_TRUE(bitwise_equal(dlogits[i], dlogits[0])) << "dlogits";
      EXPECT_TRUE(bitwise_equal(scratch[i], scratch[0])) << "scratch";
      EXPECT_TRUE(bitwise_equal(totals[i], totals[0])) << "totals";
    }
  }
  {  // the reparameterisation
    HeadRun run(quick() ? HeadCase{33, 64, 3} : HeadCase{129, 64, 20}, 18);
    ASSERT_GT(plans_of(run.layer, p).forward.splits, 1);
    Workspace workspace(run.layer, p);
    std::vector<std::vector<float>> outputs;
    for (int i = 0; i < 3; ++i) {
      BlockOrder order(orders[i]);
      std::fill(workspace.storage.begin(), workspace.storage.end(), fills[i]);
      run.run(p, workspace);
      outputs.push_back(run.y), outputs.push_back(run.eps), outputs.push_back(run.z);
    }
    for (size_t i = 3; i < outputs.size(); ++i) EXPECT_TRUE(bitwise_equal(outputs[i], outputs[i % 3])) << "head " << i;
  }
  {  // a backward with both of its epilogues: dz, d(mu ‖ logvar), dW, db, and Adam's W, b, m and v
    const LinearCase c = quick() ? LinearCase{33, 3, 64, true} : LinearCase{129, 20, 400, true};
    const LayerPlans plans = plans_of(c, p);
    ASSERT_GT(plans.input_grad.splits, 1);
    ASSERT_GT(plans.weight_grad.splits, 1);
    const LayerData d = random_layer(c, 19);
    const std::vector<float> y = reference_forward(c, d);
    const std::vector<float> mu_logvar = random_mu_logvar(c.rows, c.in, 20);
    const std::vector<float> eps = uniform_floats(d.x.size(), -3.0f, 3.0f, 21);
    const AdamHyper hyper = adam_hyper("adamw");
    const std::vector<AdamCoefficients<float>> coefficients{adam_coefficients<float>(hyper, 4)};
    Workspace workspace(c, p);
    std::vector<std::vector<float>> outputs;
    for (int i = 0; i < 3; ++i) {
      BlockOrder order(orders[i]);
      std::fill(workspace.storage.begin(), workspace.storage.end(), fills[i]);
      AdamState weight = adam_state(d.w, 22), bias = adam_state(d.b, 23);
      std::vector<float> dz(d.x.size(), fills[i]), dw(d.w.size(), fills[i]), db(c.out, fills[i]),
          dmu_logvar(2 * d.x.size(), fills[i]);
      LinearBackward lb = backward_of(c, d, weight.params, bias.params, y.data(), d.dy.data(), dz.data(), dw.data(),
                                      db.data());
      lb.reparam = ReparamGradEpilogue{c.in, 1.0f, mu_logvar.data(), eps.data(), dmu_logvar.data()};
      lb.adam = AdamEpilogue{coefficients.data(), weight.m.data(), weight.v.data(), bias.m.data(), bias.v.data()};
      run_backward(lb, p, workspace);
      for (std::vector<float>* v : {&dz, &dmu_logvar, &dw, &db, &weight.params, &weight.m, &weight.v, &bias.params,
                                    &bias.m, &bias.v})
        outputs.push_back(std::move(*v));
    }
    const size_t per_run = outputs.size() / 3;
    for (size_t i = per_run; i < outputs.size(); ++i)
      EXPECT_TRUE(bitwise_equal(outputs[i], outputs[i % per_run])) << "backward output " << i % per_run << ", run "
                                                                   << i / per_run;
    for (size_t i = 0; i < per_run; ++i)
      for (float e : outputs[i]) ASSERT_FALSE(std::isnan(e)) << "backward output " << i << " is written";
  }
}

// ---- BatchNorm1d: the forward epilogue and the backward kernel ---------------------------------------

// A hidden layer with BatchNorm: linear, BatchNorm1d, then the activation. Partial batches (2 rows
// included), odd widths, split and unsplit products, 64x64 tiles, the first layer's signed pixels.
struct BatchNormCase {
  LinearCase layer;  // layer.relu unused
  Activation activation;
  float negative_slope;
};
std::vector<BatchNormCase> batch_norm_cases() {
  const Activation leaky = Activation::kLeakyReLU;
  if (quick())
    return {{{33, 64, 40, false}, leaky, 0.1f}, {{2, 13, 7, false}, leaky, 0.2f}, {{5, 13, 37, false, true}, Activation::kReLU, 0.0f}};
  return {{{33, 64, 40, false}, leaky, 0.1f},       {{2, 13, 7, false}, leaky, 0.2f},
          {{2, 400, 37, false}, Activation::kReLU, 0.0f}, {{130, 66, 65, false}, leaky, 0.1f},
          {{144, 784, 392, false, true}, leaky, 0.1f},    {{144, 392, 196, false}, leaky, 0.1f},
          {{97, 20, 700, false}, leaky, 0.01f},           {{760, 20, 700, false}, leaky, 0.1f}};
}
std::string name_of(const BatchNormCase& b) {
  return name_of(b.layer) + (b.activation == Activation::kReLU ? " batchnorm relu" : " batchnorm leaky relu");
}

// One BatchNorm layer's data: the linear layer's, gamma and beta near 1 and 0, running statistics
// mid-training.
struct BatchNormData {
  LayerData linear;
  std::vector<float> gamma, beta, running_mean, running_var;
};
BatchNormData random_batch_norm(const BatchNormCase& b, uint32_t seed) {
  const LinearCase& c = b.layer;
  BatchNormData d{random_layer(c, seed), uniform_floats(c.out, 0.5f, 1.5f, seed + 11),
                  uniform_floats(c.out, -0.5f, 0.5f, seed + 12), uniform_floats(c.out, -0.2f, 0.2f, seed + 13),
                  uniform_floats(c.out, 0.5f, 2.0f, seed + 14)};
  if (c.pixels)  // the Gaussian likelihood's data, as the seed's first layer reads them
    for (size_t i = 0; i < d.linear.x.size(); ++i) d.linear.x[i] = pixel_to_signed(d.linear.pixels[i]);
  return d;
}

// The forward launch's outputs, each of its exact size; running statistics start as the data's.
struct BatchNormForwardRun {
  std::vector<float> pre, y, mean, invstd, running_mean, running_var;
};
BatchNormForwardRun run_batch_norm_forward(const BatchNormCase& b, const BatchNormData& d, bool training, Precision p,
                                           Workspace& workspace) {
  const LinearCase& c = b.layer;
  const size_t count = static_cast<size_t>(c.rows) * c.out;
  BatchNormForwardRun r{std::vector<float>(count, kNaN), std::vector<float>(count, kNaN),
                        std::vector<float>(c.out, kNaN), std::vector<float>(c.out, kNaN), d.running_mean,
                        d.running_var};
  LinearForward f = forward_of(c, d.linear, r.y.data());
  f.activation = b.activation;
  f.negative_slope = b.negative_slope;
  f.signed_pixels = c.pixels;
  f.batch_norm = BatchNormEpilogue{training,      kBatchNormMomentum,    kBatchNormEps,
                                   d.gamma.data(), d.beta.data(),        r.running_mean.data(),
                                   r.running_var.data(), r.pre.data(),   r.mean.data(),
                                   r.invstd.data()};
  run_forward(f, p, workspace);
  return r;
}

// h against the reference's product; then mean, 1/sqrt(var + eps), the running statistics and y
// against ref::batch_norm_forward_training (or _eval) and ref::activation_forward on the h the kernel
// wrote: the statistics are the same double sums in the same row order, y the same float formula.
void check_batch_norm_forward(const BatchNormCase& b, Precision p, uint32_t seed, bool training, PlansSeen& seen) {
  const LinearCase& c = b.layer;
  SCOPED_TRACE(name_of(b) + " " + name_of(p) + (training ? ", training" : ", evaluation"));
  seen.note(plans_of(c, p).forward);
  const BatchNormData d = random_batch_norm(b, seed);
  Workspace workspace(c, p);
  const BatchNormForwardRun got = run_batch_norm_forward(b, d, training, p, workspace);
  EXPECT_TRUE(within_scaled(got.pre, reference_forward(c, d.linear), forward_scale(c, d.linear), gemm_tolerance(p)))
      << "h";

  const size_t count = got.pre.size();
  std::vector<float> y(count), mean(c.out, kNaN), invstd(c.out, kNaN), running_mean = d.running_mean,
                                running_var = d.running_var;
  if (training)
    ref::batch_norm_forward_training<float>(c.rows, c.out, kBatchNormMomentum, kBatchNormEps, got.pre.data(),
                                            d.gamma.data(), d.beta.data(), y.data(), mean.data(), invstd.data(),
                                            running_mean.data(), running_var.data());
  else
    ref::batch_norm_forward_eval<float>(c.rows, c.out, kBatchNormEps, got.pre.data(), d.gamma.data(), d.beta.data(),
                                        d.running_mean.data(), d.running_var.data(), y.data());
  ref::activation_forward<float>(static_cast<int64_t>(count), b.activation, b.negative_slope, y.data());
  if (training) {
    EXPECT_TRUE(all_near(got.mean, mean, 1e-6, 1e-12)) << "batch mean";
    EXPECT_TRUE(all_near(got.invstd, invstd, 1e-6, 0.0)) << "batch invstd";
    EXPECT_TRUE(all_near(got.running_mean, running_mean, 1e-6, 1e-12)) << "running mean";
    EXPECT_TRUE(all_near(got.running_var, running_var, 1e-6, 0.0)) << "running var";
  } else {
    EXPECT_TRUE(bitwise_equal(got.running_mean, d.running_mean) && bitwise_equal(got.running_var, d.running_var))
        << "evaluation leaves the running statistics";
  }
  // |x̂ gamma| + |beta| bounds y's terms.
  std::vector<double> scale(count);
  for (int r = 0; r < c.rows; ++r)
    for (int j = 0; j < c.out; ++j) {
      const size_t i = static_cast<size_t>(r) * c.out + j;
      const double m = training ? mean[j] : d.running_mean[j];
      const double s = training ? invstd[j] : 1.0 / std::sqrt(d.running_var[j] + kBatchNormEps);
      scale[i] = (std::fabs(got.pre[i]) + std::fabs(m)) * s * std::fabs(d.gamma[j]) + std::fabs(d.beta[j]);
    }
  EXPECT_TRUE(within_scaled(got.y, y, scale, kTermRoundings)) << "y";
}

TEST_P(FusedEpilogues, BatchNormForwardMatchesReferenceInTrainingAndEvaluation) {
  PlansSeen seen;
  uint32_t seed = 9000;
  for (const BatchNormCase& b : batch_norm_cases()) {
    check_batch_norm_forward(b, GetParam(), seed += 10, true, seen);
    check_batch_norm_forward(b, GetParam(), seed, false, seen);
  }
  EXPECT_TRUE(seen.complete());
}

// The statistics are summed by whichever block of a column of tiles arrives last, in row order: the
// same bits in any block order, whatever the workspace held.
TEST_P(FusedEpilogues, BatchNormForwardGivesTheSameBitsInAnyBlockOrder) {
  const Precision p = GetParam();
  const BatchNormCase b = quick() ? BatchNormCase{{33, 64, 40, false}, Activation::kLeakyReLU, 0.1f}
                                  : BatchNormCase{{144, 392, 196, false}, Activation::kLeakyReLU, 0.1f};
  ASSERT_GT(plans_of(b.layer, p).forward.splits, 1);
  ASSERT_GT(plans_of(b.layer, p).forward.grid_m, 1);
  const BatchNormData d = random_batch_norm(b, 77);
  Workspace workspace(b.layer, p);
  std::vector<BatchNormForwardRun> runs;
  const uint64_t orders[] = {0, 0, 4242};
  const float fills[] = {kNaN, 12345.0f, -1.0f};
  for (int i = 0; i < 3; ++i) {
    BlockOrder order(orders[i]);
    std::fill(workspace.storage.begin(), workspace.storage.end(), fills[i]);
    runs.push_back(run_batch_norm_forward(b, d, true, p, workspace));
  }
  for (int i = 1; i < 3; ++i) {
    SCOPED_TRACE("run " + std::to_string(i));
    EXPECT_TRUE(bitwise_equal(runs[i].pre, runs[0].pre)) << "h";
    EXPECT_TRUE(bitwise_equal(runs[i].y, runs[0].y)) << "y";
    EXPECT_TRUE(bitwise_equal(runs[i].mean, runs[0].mean)) << "mean";
    EXPECT_TRUE(bitwise_equal(runs[i].invstd, runs[0].invstd)) << "invstd";
    EXPECT_TRUE(bitwise_equal(runs[i].running_mean, runs[0].running_mean)) << "running mean";
    EXPECT_TRUE(bitwise_equal(runs[i].running_var, runs[0].running_var)) << "running var";
  }
}

// The backward kernel against ref::activation_backward then ref::batch_norm_backward, and with the
// optimizer Adam on gamma and beta against ref::adam_step on the dgamma and dbeta it wrote.
void check_batch_norm_backward(int rows, int features, Activation activation, float slope, bool adam, uint32_t seed) {
  SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(features) + (adam ? ", Adam" : ""));
  const size_t count = static_cast<size_t>(rows) * features;
  const std::vector<float> h = uniform_floats(count, -2.0f, 3.0f, seed);
  const std::vector<float> dy = uniform_floats(count, -1.0f, 1.0f, seed + 1);
  const std::vector<float> gamma = uniform_floats(features, 0.5f, 1.5f, seed + 2);
  const std::vector<float> beta = uniform_floats(features, -0.5f, 0.5f, seed + 3);
  std::vector<float> y(count), mean(features), invstd(features), rm(features, 0.0f), rv(features, 1.0f);
  ref::batch_norm_forward_training<float>(rows, features, kBatchNormMomentum, kBatchNormEps, h.data(), gamma.data(),
                                          beta.data(), y.data(), mean.data(), invstd.data(), rm.data(), rv.data());
  ref::activation_forward<float>(static_cast<int64_t>(count), activation, slope, y.data());

  std::vector<float> dyp = dy, dh_ref(count), dgamma_ref(features), dbeta_ref(features);
  ref::activation_backward<float>(static_cast<int64_t>(count), activation, slope, y.data(), dyp.data());
  ref::batch_norm_backward<float>(rows, features, h.data(), gamma.data(), mean.data(), invstd.data(), dyp.data(),
                                  dh_ref.data(), dgamma_ref.data(), dbeta_ref.data());

  const AdamHyper hyper = adam_hyper("adam");
  const std::vector<AdamCoefficients<float>> coefficients{adam_coefficients<float>(hyper, 3)};
  const AdamState gamma_start = adam_state(gamma, seed + 4), beta_start = adam_state(beta, seed + 5);
  AdamState g = gamma_start, bt = beta_start;
  std::vector<float> dh(count, kNaN), dgamma(features, kNaN), dbeta(features, kNaN);
  BatchNormBackward b{rows,        features,    activation,  slope,       h.data(),  y.data(), dy.data(),
                      mean.data(), invstd.data(), g.params.data(), bt.params.data(), dh.data(), dgamma.data(),
                      dbeta.data(), {}};
  if (adam) b.adam = AdamEpilogue{coefficients.data(), g.m.data(), g.v.data(), bt.m.data(), bt.v.data()};
  batch_norm_backward(b, nullptr);

  // Sums of magnitudes bound the double sums' and the float formula's roundings.
  std::vector<double> sum_dy(features, 0.0), sum_dy_xhat(features, 0.0);
  for (int r = 0; r < rows; ++r)
    for (int f = 0; f < features; ++f) {
      const size_t i = static_cast<size_t>(r) * features + f;
      sum_dy[f] += std::fabs(dyp[i]);
      sum_dy_xhat[f] += std::fabs(dyp[i] * (h[i] - mean[f]) * invstd[f]);
    }
  std::vector<double> dh_scale(count);
  for (int r = 0; r < rows; ++r)
    for (int f = 0; f < features; ++f) {
      const size_t i = static_cast<size_t>(r) * features + f;
      const double xhat = std::fabs((h[i] - mean[f]) * invstd[f]);
      dh_scale[i] = std::fabs(gamma[f] * invstd[f]) * (std::fabs(dyp[i]) + (sum_dy[f] + xhat * sum_dy_xhat[f]) / rows);
    }
  EXPECT_TRUE(within_scaled(dh, dh_ref, dh_scale, kTermRoundings)) << "dh";
  EXPECT_TRUE(within_scaled(dgamma, dgamma_ref, sum_dy_xhat, kTermRoundings)) << "dgamma";
  EXPECT_TRUE(within_scaled(dbeta, dbeta_ref, sum_dy, kTermRoundings)) << "dbeta";
  if (adam) {
    expect_adam_update("gamma", hyper, 3, dgamma, gamma_start, g);
    expect_adam_update("beta", hyper, 3, dbeta, beta_start, bt);
  } else {
    EXPECT_TRUE(bitwise_equal(g.params, gamma) && bitwise_equal(bt.params, beta)) << "without Adam, gamma and beta stay";
  }
}

TEST(BatchNormBackward, MatchesReference) {
  uint32_t seed = 9500;
  check_batch_norm_backward(2, 7, Activation::kLeakyReLU, 0.2f, false, seed += 10);
  check_batch_norm_backward(33, 40, Activation::kReLU, 0.0f, true, seed += 10);
  check_batch_norm_backward(97, 65, Activation::kLeakyReLU, 0.1f, true, seed += 10);
  if (!quick()) {
    check_batch_norm_backward(144, 392, Activation::kLeakyReLU, 0.1f, true, seed += 10);
    check_batch_norm_backward(129, 1, Activation::kLeakyReLU, 0.01f, false, seed += 10);
  }
}

// ---- the launchers' checks -------------------------------------------------------------------------

// A launch with exactly the workspace it needs runs; with no workspace, one float short (where it
// needs floats) or one counter short, it is an error before anything runs.
template <class Launch>
void expect_workspace_checked(const std::string& what, int64_t floats, int64_t counters, Launch launch) {
  SCOPED_TRACE(what + ": needs " + std::to_string(floats) + " floats, " + std::to_string(counters) + " counters");
  std::vector<float> storage(static_cast<size_t>(floats), kNaN);
  std::vector<unsigned> counter_storage(static_cast<size_t>(counters), 0u);
  auto view = [&](int64_t f, int64_t n) {
    return GemmWorkspace{f > 0 ? storage.data() : nullptr, f, n > 0 ? counter_storage.data() : nullptr, n};
  };
  ASSERT_GT(counters, 0) << "every fused launch counts something";
  EXPECT_THROW(launch(GemmWorkspace{}), Error);
  if (floats > 0) {
    EXPECT_THROW(launch(view(floats - 1, counters)), Error);
  }
  EXPECT_THROW(launch(view(floats, counters - 1)), Error);
  EXPECT_NO_THROW(launch(view(floats, counters)));
  for (unsigned v : counter_storage) ASSERT_EQ(v, 0u) << "the counters are left zero";
}

TEST_P(FusedEpilogues, TooSmallAWorkspaceIsAnError) {
  const Precision p = GetParam();
  const int sms = multiprocessor_count();
  // Every product split, then none split (the epilogues still count rows of tiles and blocks).
  for (const LinearCase& c : {LinearCase{33, 64, 40, false}, LinearCase{5, 13, 6, false}}) {
    SCOPED_TRACE(name_of(c) + " " + name_of(p));
    const ForwardPlan forward = plan_linear_forward(c.rows, c.in, c.out, p, sms);
    const BackwardPlan backward = plan_linear_backward(c.rows, c.in, c.out, true, p, sms);
    const bool split = forward.gemm.splits > 1;
    EXPECT_EQ(split, backward.dx.splits > 1 && backward.dw.splits > 1);
    const GemmWorkspaceSize size = linear_workspace_size(c.rows, c.in, c.out, p, sms);
    EXPECT_EQ(size.floats, std::max(forward.floats, backward.floats));
    EXPECT_EQ(size.counters, std::max(forward.counters, backward.counters));

    const LayerData d = random_layer(c, 3);
    std::vector<float> y(d.dy.size()), dx(d.x.size()), dw(d.w.size()), db(c.out), eps(d.dy.size() / 2),
        z(d.dy.size() / 2), dlogits(d.dy.size());
    std::vector<float> w = d.w, b = d.b;
    const std::vector<uint64_t> stream{train_stream(1)};
    const std::vector<uint8_t> target = random_pixels(d.dy.size(), 4);
    const std::vector<float> mu_logvar = random_mu_logvar(c.rows, 2, 5);
    std::vector<double> scratch(static_cast<size_t>(loss_scratch_doubles(c.rows, c.out))), totals(2);
    const std::vector<AdamCoefficients<float>> coefficients{adam_coefficients<float>(AdamHyper{}, 2)};
    AdamState weight = adam_state(d.w, 6), bias = adam_state(d.b, 7);

    expect_workspace_checked("forward", forward.floats, forward.counters, [&](GemmWorkspace ws) {
      linear_forward(forward_of(c, d, y.data()), p, ws, nullptr);
    });
    expect_workspace_checked("forward with the loss", forward.floats, forward.counters, [&](GemmWorkspace ws) {
      LinearForward f = forward_of(c, d, y.data());
      f.loss = LossEpilogue{target.data(), mu_logvar.data(), 2, dlogits.data(), scratch.data(), totals.data(), {}};
      linear_forward(f, p, ws, nullptr);
    });
    expect_workspace_checked("forward with the reparameterisation", forward.floats, forward.counters,
                             [&](GemmWorkspace ws) {
                               LinearForward f = forward_of(c, d, y.data());
                               f.reparam = ReparamEpilogue{c.out / 2, 1, stream.data(), eps.data(), z.data()};
                               linear_forward(f, p, ws, nullptr);
                             });
    expect_workspace_checked("forward with BatchNorm", forward.floats, forward.counters, [&](GemmWorkspace ws) {
      std::vector<float> gamma(c.out, 1.0f), beta(c.out, 0.0f), running_mean(c.out, 0.0f), running_var(c.out, 1.0f),
          pre(d.dy.size()), batch_mean(c.out), batch_invstd(c.out);
      LinearForward f = forward_of(c, d, y.data());
      f.batch_norm = BatchNormEpilogue{true,          kBatchNormMomentum,  kBatchNormEps,       gamma.data(),
                                       beta.data(),   running_mean.data(), running_var.data(), pre.data(),
                                       batch_mean.data(), batch_invstd.data()};
      linear_forward(f, p, ws, nullptr);
    });
    expect_workspace_checked("backward", backward.floats, backward.counters, [&](GemmWorkspace ws) {
      linear_backward(backward_of(c, d, w, b, y.data(), d.dy.data(), dx.data(), dw.data(), db.data()), p, ws, nullptr);
    });
    expect_workspace_checked("backward with Adam", backward.floats, backward.counters, [&](GemmWorkspace ws) {
      LinearBackward lb = backward_of(c, d, weight.params, bias.params, y.data(), d.dy.data(), dx.data(), dw.data(),
                                      db.data());
      lb.adam = AdamEpilogue{coefficients.data(), weight.m.data(), weight.v.data(), bias.m.data(), bias.v.data()};
      linear_backward(lb, p, ws, nullptr);
    });
    const BackwardPlan without_dx = plan_linear_backward(c.rows, c.in, c.out, false, p, sms);
    expect_workspace_checked("backward without dx", without_dx.floats, without_dx.counters, [&](GemmWorkspace ws) {
      linear_backward(backward_of(c, d, w, b, y.data(), d.dy.data(), nullptr, dw.data(), db.data()), p, ws, nullptr);
    });
  }
}

INSTANTIATE_TEST_SUITE_P(BothPrecisions, FusedEpilogues, testing::Values(Precision::kFp32, Precision::kTf32),
                         precision_name);

// Combinations the launchers refuse, before anything runs: nothing is written, the step not advanced.
TEST(FusedLaunchers, RejectBadCombinations) {
  const Precision p = Precision::kFp32;
  const LinearCase c{5, 13, 6, false}, pixel_layer{5, 13, 6, false, true};
  const LayerData d = random_layer(c, 1), pixel_data = random_layer(pixel_layer, 2);
  Workspace workspace(c, p);
  std::vector<float> y(d.dy.size(), kNaN), eps(d.dy.size() / 2, kNaN), z(eps.size(), kNaN);
  std::vector<float> dx(d.x.size(), kNaN), dw(d.w.size(), kNaN), db(c.out, kNaN), dmu_logvar(2 * d.x.size(), kNaN);
  std::vector<long long> step{3};
  std::vector<uint64_t> stream{train_stream(3)};
  const std::vector<uint8_t> target = random_pixels(d.dy.size(), 3);
  const std::vector<float> mu_logvar = random_mu_logvar(c.rows, 3, 4);
  std::vector<double> scratch(static_cast<size_t>(loss_scratch_doubles(c.rows, c.out))), totals(2, 0.0);
  const LossEpilogue loss{target.data(), mu_logvar.data(), 3, nullptr, scratch.data(), totals.data(), {}};
  auto forward_refused = [&](const LinearForward& f, const char* why) {
    EXPECT_THROW(linear_forward(f, p, workspace.view(), nullptr), Error) << why;
  };

  LinearForward both = forward_of(c, d, y.data());
  both.pixels = pixel_data.pixels.data();
  forward_refused(both, "both x and pixels");
  LinearForward neither = forward_of(c, d, y.data());
  neither.x = nullptr;
  forward_refused(neither, "neither x nor pixels");
  LinearForward wrong_width = forward_of(c, d, y.data());
  wrong_width.reparam = ReparamEpilogue{2, 1, stream.data(), eps.data(), z.data()};  // out 6 != 2 * 2
  forward_refused(wrong_width, "reparameterisation with out != 2 * latent");
  LinearForward pixel_loss = forward_of(pixel_layer, pixel_data, y.data());
  pixel_loss.loss = loss;
  forward_refused(pixel_loss, "the loss on a pixel-input layer");
  LinearForward head_advancing = forward_of(c, d, y.data());
  head_advancing.reparam = ReparamEpilogue{3, 1, stream.data(), eps.data(), z.data()};
  head_advancing.advance = StepAdvance{step.data(), stream.data(), AdamHyper{}, nullptr};
  forward_refused(head_advancing, "the step advancing in the head's own launch");
  LinearForward output_advancing = forward_of(c, d, y.data());
  output_advancing.loss = loss;
  output_advancing.advance = StepAdvance{step.data(), stream.data(), AdamHyper{}, nullptr};
  forward_refused(output_advancing, "the step advancing in the output layer's own launch");
  LinearForward empty = forward_of({0, 13, 6, false}, d, y.data());
  empty.advance = StepAdvance{step.data(), stream.data(), AdamHyper{}, nullptr};
  forward_refused(empty, "an epilogue on an empty batch");
  LinearForward negative = forward_of({5, 13, -6, false}, d, y.data());
  forward_refused(negative, "a negative size");
  std::vector<float> gamma(c.out, 1.0f), beta(c.out, 0.0f), running_mean(c.out, 0.0f), running_var(c.out, 1.0f),
      pre(d.dy.size(), kNaN), batch_mean(c.out, kNaN), batch_invstd(c.out, kNaN);
  const BatchNormEpilogue batch_norm{true,          kBatchNormMomentum,  kBatchNormEps,       gamma.data(),
                                     beta.data(),   running_mean.data(), running_var.data(), pre.data(),
                                     batch_mean.data(), batch_invstd.data()};
  LinearForward one_row_norm = forward_of({1, 13, 6, false}, d, y.data());
  one_row_norm.batch_norm = batch_norm;
  forward_refused(one_row_norm, "BatchNorm in training on one row");
  LinearForward output_norm = forward_of(c, d, y.data());
  output_norm.batch_norm = batch_norm;
  output_norm.loss = loss;
  forward_refused(output_norm, "BatchNorm on the output layer");
  LinearForward no_stats = forward_of(c, d, y.data());
  no_stats.batch_norm = batch_norm;
  no_stats.batch_norm.batch_invstd = nullptr;
  forward_refused(no_stats, "BatchNorm in training with nowhere for the batch's statistics");
  for (float v : pre) ASSERT_TRUE(std::isnan(v)) << "a refused launch wrote h";
  for (float v : y) ASSERT_TRUE(std::isnan(v)) << "a refused launch wrote y";
  for (float v : z) ASSERT_TRUE(std::isnan(v)) << "a refused launch wrote z";
  EXPECT_EQ(step[0], 3) << "a refused launch advanced the step";
  EXPECT_EQ(totals, std::vector<double>(2, 0.0)) << "a refused launch added to the totals";

  std::vector<float> w = d.w, b = d.b, wm(w.size()), wv(w.size()), bm(b.size()), bv(b.size());
  const std::vector<AdamCoefficients<float>> coefficients{adam_coefficients<float>(AdamHyper{}, 2)};
  const std::vector<float> layer_y = reference_forward(c, d);
  auto backward = [&](const LinearCase& layer, const LayerData& data, float* input_grad) {
    return backward_of(layer, data, w, b, layer_y.data(), d.dy.data(), input_grad, dw.data(), db.data());
  };
  auto backward_refused = [&](const LinearBackward& lb, const char* why) {
    EXPECT_THROW(linear_backward(lb, p, workspace.view(), nullptr), Error) << why;
  };
  LinearBackward both_inputs = backward(c, d, dx.data());
  both_inputs.pixels = pixel_data.pixels.data();
  backward_refused(both_inputs, "both x and pixels");
  backward_refused(backward(pixel_layer, pixel_data, dx.data()), "a gradient for the pixels");
  LinearBackward wrong_latent = backward(c, d, dx.data());
  wrong_latent.reparam = ReparamGradEpilogue{3, 1.0f, mu_logvar.data(), eps.data(), dmu_logvar.data()};  // in 13
  backward_refused(wrong_latent, "the reparameterisation's gradient with in != latent");
  const LinearCase decoder{5, 3, 6, true};
  const LayerData decoder_data = random_layer(decoder, 5);
  LinearBackward without_dz = backward_of(decoder, decoder_data, w, b, layer_y.data(), d.dy.data(), nullptr,
                                          dw.data(), db.data());
  without_dz.reparam = ReparamGradEpilogue{3, 1.0f, mu_logvar.data(), eps.data(), dmu_logvar.data()};
  backward_refused(without_dz, "the reparameterisation's gradient without dz");
  LinearBackward one_moment = backward(c, d, dx.data());
  one_moment.adam = AdamEpilogue{coefficients.data(), wm.data(), wv.data(), bm.data(), nullptr};
  backward_refused(one_moment, "Adam without the bias's second moment");
  for (const std::vector<float>* v : {&dx, &dw, &db, &dmu_logvar})
    for (float e : *v) ASSERT_TRUE(std::isnan(e)) << "a refused launch wrote a gradient";
  EXPECT_TRUE(bitwise_equal(w, d.w) && bitwise_equal(b, d.b)) << "a refused launch changed the parameters";
  EXPECT_TRUE(workspace.counters_zero());
}

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
