// The fused linear-layer launches (kernels/linear_forward.cu, kernels/linear_backward.cu) against the
// reference ops. First the products alone: every batch size of the issue with the model's real
// widths, widths that are not multiples of any tile or of 4 (the scalar load path), one-row batches,
// uint8 pixel inputs, bitwise repeatability. Then each epilogue against the reference ops it
// replaces, at partial batches in both precisions. Every output carries sentinels past its end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gpu_test_support.hpp"
#include "kernel_checks.hpp"
#include "vae/cuda_check.hpp"
#include "vae/cuda_device.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device_buffer.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/noise_streams.hpp"
#include "vae/reference_ops.hpp"

namespace vae::cuda {
namespace {

using gpu_test::AdamState;
using gpu_test::download_checked;
using gpu_test::guarded;
using gpu_test::guarded_output;
using gpu_test::TestStream;
using kernel_checks::abs_products;
using kernel_checks::all_near;
using kernel_checks::bitwise_equal;
using kernel_checks::gemm_tolerance;
using kernel_checks::uniform_floats;
using kernel_checks::within_scaled;

struct LinearCase {
  int rows, in, out;
  bool relu;
  bool pixels = false;  // x is uint8 pixels, as the first layer reads them (its backward has no dx)
};

std::string name_of(const LinearCase& c, Precision p) {
  return std::to_string(c.rows) + "x" + std::to_string(c.in) + "->" + std::to_string(c.out) + (c.relu ? " relu" : "") +
         (c.pixels ? " pixels" : "") + (p == Precision::kTf32 ? " tf32" : " fp32");
}

// ---- one layer's data, the reference's results, the device's buffers ----------------------------

struct LayerData {
  std::vector<uint8_t> pixels;  // the first layer's input; x then holds them as the model sees them
  std::vector<float> x, w, b, dy;
};

// x in [-1, 1] (or random pixels), W and b in [-weight_scale, weight_scale], dy in [-dy_scale, dy_scale].
LayerData random_layer(const LinearCase& c, uint32_t seed, float weight_scale = 1.0f, float dy_scale = 1.0f) {
  LayerData d;
  const size_t in_count = static_cast<size_t>(c.rows) * c.in;
  if (c.pixels) {
    d.pixels = kernel_checks::random_pixels(in_count, seed);
    d.x.resize(in_count);
    for (size_t i = 0; i < in_count; ++i) d.x[i] = pixel_to_unit(d.pixels[i]);
  } else {
    d.x = uniform_floats(in_count, -1.0f, 1.0f, seed);
  }
  d.w = uniform_floats(static_cast<size_t>(c.out) * c.in, -weight_scale, weight_scale, seed + 1);
  d.b = uniform_floats(c.out, -weight_scale, weight_scale, seed + 2);
  d.dy = uniform_floats(static_cast<size_t>(c.rows) * c.out, -dy_scale, dy_scale, seed + 3);
  return d;
}

// 1/sqrt(fan), PyTorch's initial range for a layer's weights: with inputs in [-1, 1], sums over fan
// terms of about 1/3. The epilogue tests use it to keep their inputs in the range their ops'
// tolerances assume.
float fan_scale(int fan) { return 1.0f / std::sqrt(static_cast<float>(fan)); }

std::vector<float> reference_forward(const LinearCase& c, const LayerData& d) {
  std::vector<float> y(static_cast<size_t>(c.rows) * c.out);
  ref::linear_forward<float>(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), d.b.data(), y.data());
  return y;
}

// The reference's backward from y (the ReLU mask); dx unless the input is the pixels.
struct ReferenceGradients {
  std::vector<float> dy_masked, dx, dw, db;
};
ReferenceGradients reference_backward(const LinearCase& c, const LayerData& d, const std::vector<float>& y) {
  ReferenceGradients g{d.dy, std::vector<float>(c.pixels ? 0 : d.x.size()), std::vector<float>(d.w.size()),
                       std::vector<float>(c.out)};
  ref::linear_backward<float>(c.rows, c.in, c.out, c.relu, d.x.data(), d.w.data(), y.data(), g.dy_masked.data(),
                              c.pixels ? nullptr : g.dx.data(), g.dw.data(), g.db.data());
  return g;
}

// The GEMM bound (kernel_checks.hpp): a few roundings of S = Σ_k |a_k b_k| (+|bias|) per element.
std::vector<double> forward_scale(const LinearCase& c, const LayerData& d) {
  std::vector<double> scale = abs_products(c.rows, c.out, c.in, d.x, c.in, 1, d.w, 1, c.in);
  for (int r = 0; r < c.rows; ++r)
    for (int j = 0; j < c.out; ++j) scale[static_cast<size_t>(r) * c.out + j] += std::fabs(d.b[j]);
  return scale;
}

void expect_forward_near(const LinearCase& c, Precision p, const LayerData& d, const std::vector<float>& y) {
  EXPECT_TRUE(within_scaled(y, reference_forward(c, d), forward_scale(c, d), gemm_tolerance(p))) << "y";
}

// dx (unless the input is the pixels), dW and db against the reference's, each with its product's
// GEMM bound; db is a plain FP32 column sum in both precisions.
void expect_gradients_near(const LinearCase& c, Precision p, const LayerData& d, const ReferenceGradients& ref,
                           const std::vector<float>& dx, const std::vector<float>& dw, const std::vector<float>& db) {
  if (!c.pixels) {
    EXPECT_TRUE(within_scaled(dx, ref.dx, abs_products(c.rows, c.in, c.out, ref.dy_masked, c.out, 1, d.w, c.in, 1),
                              gemm_tolerance(p)))
        << "dx";
  }
  EXPECT_TRUE(within_scaled(dw, ref.dw, abs_products(c.out, c.in, c.rows, ref.dy_masked, 1, c.out, d.x, c.in, 1),
                            gemm_tolerance(p)))
      << "dW";
  std::vector<double> db_scale(c.out, 0.0);
  for (int r = 0; r < c.rows; ++r)
    for (int j = 0; j < c.out; ++j) db_scale[j] += std::fabs(ref.dy_masked[static_cast<size_t>(r) * c.out + j]);
  EXPECT_TRUE(within_scaled(db, ref.db, db_scale, gemm_tolerance(Precision::kFp32))) << "db";
}

// Split-K scratch and counters for one layer's two launches; the counters are zeroed once, as every
// owner does, and each launch must leave them zero.
struct DeviceWorkspace {
  DeviceWorkspace(const LinearCase& c, Precision precision)
      : DeviceWorkspace(linear_workspace_size(c.rows, c.in, c.out, precision, multiprocessor_count())) {}
  explicit DeviceWorkspace(const GemmWorkspaceSize& size)
      : floats(static_cast<size_t>(std::max<int64_t>(1, size.floats))),
        counters(static_cast<size_t>(std::max<int64_t>(1, size.counters))) {
    counters.zero();
  }
  GemmWorkspace view() {
    return {floats.data(), static_cast<int64_t>(floats.size()), counters.data(), static_cast<int64_t>(counters.size())};
  }
  // NaN partial sums: a launch must not depend on what the scratch held before it.
  void scramble() { floats.upload(std::vector<float>(floats.size(), std::numeric_limits<float>::quiet_NaN())); }
  DeviceBuffer<float> floats;
  DeviceBuffer<unsigned> counters;
};

// A layer's inputs on the device (W and b guarded: Adam updates them in place), and its launches'
// arguments without epilogues.
struct DeviceLayer {
  DeviceLayer(const LinearCase& layer, const LayerData& d)
      : c(layer),
        pixels(d.pixels),
        x(layer.pixels ? std::vector<float>{} : d.x),
        w(guarded(d.w)),
        b(guarded(d.b)),
        dy(d.dy) {}

  LinearForward forward(float* y) {
    return LinearForward{.rows = c.rows,
                         .in = c.in,
                         .out = c.out,
                         .activation = c.relu ? Activation::kReLU : Activation::kIdentity,
                         .x = c.pixels ? nullptr : x.data(),
                         .pixels = c.pixels ? pixels.data() : nullptr,
                         .weight = w.data(),
                         .bias = b.data(),
                         .y = y};
  }
  LinearBackward backward(const float* y, float* dx, float* dweight, float* dbias) {
    return LinearBackward{.rows = c.rows,
                          .in = c.in,
                          .out = c.out,
                          .activation = c.relu ? Activation::kReLU : Activation::kIdentity,
                          .x = c.pixels ? nullptr : x.data(),
                          .pixels = c.pixels ? pixels.data() : nullptr,
                          .weight = w.data(),
                          .bias = b.data(),
                          .y = y,
                          .dy = dy.data(),
                          .dx = dx,
                          .dweight = dweight,
                          .dbias = dbias};
  }

  LinearCase c;
  DeviceBuffer<uint8_t> pixels;
  DeviceBuffer<float> x, w, b, dy;
};

// ---- the products -------------------------------------------------------------------------------

std::vector<LinearCase> cases() {
  std::vector<LinearCase> list;
  // The default model's four layers at every batch size the issue names; under compute-sanitizer
  // (VAE_GPU_TEST_QUICK set, 10-100x slower) the tails alone.
  const bool quick = std::getenv("VAE_GPU_TEST_QUICK") != nullptr;
  const std::vector<int> batch_sizes = quick ? std::vector<int>{1, 129} : std::vector<int>{1, 20, 127, 128, 129, 400, 784, 4096};
  for (int rows : batch_sizes) {
    list.push_back({rows, 784, 400, true});
    list.push_back({rows, 400, 40, false});
    list.push_back({rows, 20, 400, true});
    list.push_back({rows, 400, 784, false});
  }
  // Odd widths: tails in every tile dimension and ld % 4 != 0, so the scalar loads run.
  list.push_back({33, 13, 37, true});
  list.push_back({5, 1, 3, false});
  list.push_back({130, 66, 65, true});
  return list;
}

// One layer's forward and backward launches, without epilogues, against the reference. The backward
// runs from the reference's y, so both sides apply the same ReLU mask.
void check_plain_layer(const LinearCase& c, Precision p, const LayerData& d) {
  const std::vector<float> ref_y = reference_forward(c, d);
  const ReferenceGradients ref = reference_backward(c, d, ref_y);
  DeviceLayer layer(c, d);
  DeviceWorkspace workspace(c, p);
  const DeviceBuffer<float> d_ref_y(ref_y);
  DeviceBuffer<float> d_y = guarded_output(ref_y.size()), d_dx = guarded_output(ref.dx.size()),
                      d_dw = guarded_output(d.w.size()), d_db = guarded_output(c.out);
  linear_forward(layer.forward(d_y.data()), p, workspace.view(), nullptr);
  linear_backward(layer.backward(d_ref_y.data(), c.pixels ? nullptr : d_dx.data(), d_dw.data(), d_db.data()), p,
                  workspace.view(), nullptr);
  expect_forward_near(c, p, d, download_checked(d_y, ref_y.size()));
  expect_gradients_near(c, p, d, ref, download_checked(d_dx, ref.dx.size()), download_checked(d_dw, d.w.size()),
                        download_checked(d_db, c.out));
  EXPECT_TRUE(bitwise_equal(layer.dy.download(), d.dy)) << "the backward must not change dy";
}

class LinearKernels : public testing::TestWithParam<Precision> {};

TEST_P(LinearKernels, MatchReferenceOnEveryShape) {
  VAE_REQUIRE_GPU();
  uint32_t seed = 3;
  for (const LinearCase& c : cases()) {
    SCOPED_TRACE(name_of(c, GetParam()));
    check_plain_layer(c, GetParam(), random_layer(c, seed += 10));
  }
}

TEST_P(LinearKernels, PixelInputsAreScaledInTheLoad) {
  VAE_REQUIRE_GPU();
  uint32_t seed = 9;
  for (int rows : {1, 127, 128, 129}) {
    const LinearCase c{rows, 784, 400, true, true};
    SCOPED_TRACE(name_of(c, GetParam()));
    check_plain_layer(c, GetParam(), random_layer(c, seed += 10, fan_scale(c.in)));
  }
}

TEST_P(LinearKernels, RepeatRunsAreBitwiseIdentical) {
  VAE_REQUIRE_GPU();
  const Precision precision = GetParam();
  const LinearCase c{128, 784, 400, true};  // split-K at batch 128: the reduction order must be fixed
  const LayerData d = random_layer(c, 1);
  DeviceLayer layer(c, d);
  DeviceWorkspace workspace(c, precision);
  DeviceBuffer<float> y(d.dy.size()), dx(d.x.size()), dw(d.w.size()), db(d.b.size());
  std::vector<float> first_y, first_dx, first_dw, first_db;
  for (int run = 0; run < 3; ++run) {
    if (run == 2) workspace.scramble();
    linear_forward(layer.forward(y.data()), precision, workspace.view(), nullptr);
    linear_backward(layer.backward(y.data(), dx.data(), dw.data(), db.data()), precision, workspace.view(), nullptr);
    if (run == 0) {
      first_y = y.download();
      first_dx = dx.download();
      first_dw = dw.download();
      first_db = db.download();
    } else {
      EXPECT_TRUE(bitwise_equal(y.download(), first_y)) << "y, run " << run;
      EXPECT_TRUE(bitwise_equal(dx.download(), first_dx)) << "dx, run " << run;
      EXPECT_TRUE(bitwise_equal(dw.download(), first_dw)) << "dW, run " << run;
      EXPECT_TRUE(bitwise_equal(db.download(), first_db)) << "db, run " << run;
    }
  }
}

TEST(LinearKernelsWorkspace, TooSmallAWorkspaceIsAnError) {
  VAE_REQUIRE_GPU();
  const LinearCase c{128, 784, 400, true};
  ASSERT_GT(linear_workspace_size(c.rows, c.in, c.out, Precision::kFp32, multiprocessor_count()).floats, 0);
  const LayerData d = random_layer(c, 2);
  DeviceLayer layer(c, d);
  DeviceBuffer<float> y(d.dy.size()), dx(d.x.size()), dw(d.w.size()), db(d.b.size());
  EXPECT_THROW(linear_forward(layer.forward(y.data()), Precision::kFp32, GemmWorkspace{}, nullptr), Error);
  EXPECT_THROW(linear_backward(layer.backward(y.data(), dx.data(), dw.data(), db.data()), Precision::kFp32,
                               GemmWorkspace{}, nullptr),
               Error);
}

// ---- the epilogues ------------------------------------------------------------------------------
// Each against the composition of reference ops it replaces. The op after the product is fed what
// the launch itself computed (its mu ‖ logvar, logits or dz), so that the epilogue is held to that
// op's own tolerance (the GPU tests of the standalone kernels, test_small_kernels_gpu.cpp), while
// the product is held to the reference's product with the GEMM bound. At partial batches (an
// epoch's last batch is one), in both precisions.

const int kPartialBatches[] = {1, 97, 129};

// A launch's outputs by name, as downloaded.
struct Outputs {
  std::map<std::string, std::vector<float>> floats;
  std::map<std::string, std::vector<double>> doubles;
};

void expect_same_bits(const Outputs& first, const Outputs& second) {
  for (const auto& [name, values] : first.floats) EXPECT_TRUE(bitwise_equal(values, second.floats.at(name))) << name;
  for (const auto& [name, values] : first.doubles) EXPECT_TRUE(bitwise_equal(values, second.doubles.at(name))) << name;
}

// -- the head: ReparamEpilogue --

struct HeadInputs {
  LinearCase c;  // out = 2 * latent: mu ‖ logvar
  int latent;
  LayerData d;
  uint64_t seed, noise_stream;
};

// The default model's head (400 -> 20 + 20), the deeper model's (256 -> 2 + 2), and odd widths whose
// Philox groups of four straddle rows; the last keyed by an evaluation stream, whose top bits are set.
std::vector<HeadInputs> head_inputs(int rows) {
  std::vector<HeadInputs> list;
  uint32_t seed = 1000 + static_cast<uint32_t>(rows);
  for (const auto& [in, latent] : {std::pair{400, 20}, std::pair{256, 2}, std::pair{13, 3}}) {
    const LinearCase c{rows, in, 2 * latent, false};
    seed += 10;
    const uint64_t stream = latent == 3 ? eval_stream(3, static_cast<uint64_t>(rows)) : train_stream(1000 + rows);
    list.push_back({c, latent, random_layer(c, seed, fan_scale(in)), 0x0123'4567'89ab'cdefull + seed, stream});
  }
  return list;
}

Outputs run_head(const HeadInputs& h, Precision p, DeviceWorkspace& workspace, cudaStream_t stream) {
  DeviceLayer layer(h.c, h.d);
  const DeviceBuffer<uint64_t> noise_stream(std::vector<uint64_t>{h.noise_stream});
  const size_t count = static_cast<size_t>(h.c.rows) * h.latent;
  DeviceBuffer<float> y = guarded_output(2 * count), eps = guarded_output(count), z = guarded_output(count);
  LinearForward f = layer.forward(y.data());
  f.reparam = ReparamEpilogue{h.latent, h.seed, noise_stream.data(), eps.data(), z.data()};
  linear_forward(f, p, workspace.view(), stream);
  Outputs got;
  got.floats["mu_logvar"] = download_checked(y, 2 * count);
  got.floats["eps"] = download_checked(eps, count);
  got.floats["z"] = download_checked(z, count);
  return got;
}

// The range the reparameterisation's tolerances assume (gpu_test_support.hpp): sigma <= e, |z| < 21.
bool in_encoder_range(const std::vector<float>& mu_logvar, int latent) {
  for (size_t i = 0; i < mu_logvar.size(); ++i) {
    const bool is_mu = static_cast<int>(i % (2 * static_cast<size_t>(latent))) < latent;
    if (is_mu ? !(std::fabs(mu_logvar[i]) <= 2.0f) : !(mu_logvar[i] <= 2.0f)) return false;
  }
  return true;
}

// ref::linear_forward, then ref::reparam_forward of the launch's mu ‖ logvar.
void check_head(const HeadInputs& h, Precision p, const Outputs& got) {
  const int rows = h.c.rows;
  const size_t count = static_cast<size_t>(rows) * h.latent;
  const std::vector<float>& mu_logvar = got.floats.at("mu_logvar");
  const std::vector<float>& eps = got.floats.at("eps");
  const std::vector<float>& z = got.floats.at("z");
  expect_forward_near(h.c, p, h.d, mu_logvar);
  ASSERT_TRUE(in_encoder_range(mu_logvar, h.latent)) << "inputs outside the range the tolerances assume";

  // eps as the standalone kernel draws it: the same Philox on the device, so the same bits.
  const DeviceBuffer<uint64_t> d_stream(std::vector<uint64_t>{h.noise_stream});
  const DeviceBuffer<float> d_mu_logvar(mu_logvar);
  DeviceBuffer<float> d_eps(count), d_z(count);
  reparam_forward(rows, h.latent, h.seed, d_stream.data(), d_mu_logvar.data(), d_eps.data(), d_z.data(), nullptr);
  EXPECT_TRUE(bitwise_equal(eps, d_eps.download())) << "eps against reparam_forward's";

  std::vector<float> ref_eps(count), ref_z(count);
  ref::reparam_forward<float>(rows, h.latent, h.seed, h.noise_stream, mu_logvar.data(), ref_eps.data(), ref_z.data());
  EXPECT_TRUE(all_near(eps, ref_eps, 0.0, gpu_test::kEpsAbsolute)) << "eps against the reference";
  std::vector<float> z_from_device_eps(count);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < h.latent; ++j) {
      const size_t i = static_cast<size_t>(r) * h.latent + j;
      const float* stats = mu_logvar.data() + static_cast<size_t>(r) * 2 * h.latent;
      z_from_device_eps[i] = reparam_sample(stats[j], stats[h.latent + j], eps[i]);
    }
  EXPECT_TRUE(all_near(z, z_from_device_eps, gpu_test::kZRelative, gpu_test::kZFromDeviceEpsAbsolute))
      << "z from the launch's eps";
  EXPECT_TRUE(all_near(z, ref_z, gpu_test::kZRelative, gpu_test::kZAbsolute)) << "z against the reference";
}

// -- the output layer: LossEpilogue --

struct LossInputs {
  LinearCase c;  // out = pixels: the logits
  int latent;
  LayerData d;
  std::vector<uint8_t> target;   // the batch's pixels
  std::vector<float> mu_logvar;  // the head's output
};

LossInputs make_loss_inputs(int rows, int in, int pixels, int latent, uint32_t seed) {
  const LinearCase c{rows, in, pixels, false};
  // Weights of 3/sqrt(in): logits of about 1, up to about 5.
  return {c, latent, random_layer(c, seed, 3.0f * fan_scale(in)),
          kernel_checks::random_pixels(static_cast<size_t>(rows) * pixels, seed + 5),
          kernel_checks::random_mu_logvar(rows, latent, seed + 6)};
}

// The default model's output layer, the deeper model's, and odd widths (tails in every tile).
std::vector<LossInputs> loss_inputs(int rows) {
  const uint32_t seed = 2000 + 100 * static_cast<uint32_t>(rows);
  return {make_loss_inputs(rows, 400, 784, 20, seed), make_loss_inputs(rows, 512, 784, 2, seed + 10),
          make_loss_inputs(rows, 13, 37, 3, seed + 20)};
}

// The output layer's launch with the loss; totals start at zero. guard: the NaN guard, none by default.
Outputs run_output_layer(const LossInputs& in, Precision p, bool with_dlogits, DeviceWorkspace& workspace,
                         cudaStream_t stream, NonfiniteGuard guard = {}) {
  const LinearCase& c = in.c;
  DeviceLayer layer(c, in.d);
  const DeviceBuffer<uint8_t> target(in.target);
  const DeviceBuffer<float> mu_logvar(in.mu_logvar);
  const size_t count = static_cast<size_t>(c.rows) * c.out;
  DeviceBuffer<float> y = guarded_output(count), dlogits = guarded_output(count);
  DeviceBuffer<double> scratch(static_cast<size_t>(loss_scratch_doubles(c.rows, c.out)));
  DeviceBuffer<double> totals(std::vector<double>{0.0, 0.0});
  LinearForward f = layer.forward(y.data());
  f.loss = LossEpilogue{target.data(), mu_logvar.data(), in.latent, with_dlogits ? dlogits.data() : nullptr,
                        scratch.data(),  totals.data(),     guard};
  linear_forward(f, p, workspace.view(), stream);
  Outputs got;
  got.floats["logits"] = download_checked(y, count);
  if (with_dlogits) got.floats["dlogits"] = download_checked(dlogits, count);
  std::vector<double> row_sums = scratch.download();
  row_sums.resize(2 * static_cast<size_t>(c.rows));
  got.doubles["row sums"] = row_sums;
  got.doubles["totals"] = totals.download();
  return got;
}

// ref::linear_forward, then ref::bce_kl_loss of the launch's logits, with the loss bounds of
// kernel_checks.hpp: each sum to kLossSumRelative of its terms' magnitudes, dlogits to kDlogitsAbsolute.
void check_loss(const LossInputs& in, Precision p, const Outputs& got) {
  const int rows = in.c.rows, pixels = in.c.out, latent = in.latent;
  const std::vector<float>& logits = got.floats.at("logits");
  expect_forward_near(in.c, p, in.d, logits);

  std::vector<float> targets(in.target.size());
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = pixel_to_unit(in.target[i]);
  std::vector<float> ref_dlogits(logits.size());
  std::vector<double> ref_rows(2 * static_cast<size_t>(rows));
  const LossSums ref_sums = ref::bce_kl_loss<float>(rows, pixels, latent, logits.data(), targets.data(),
                                                    in.mu_logvar.data(), ref_dlogits.data(), ref_rows.data());
  const std::vector<double>& row_sums = got.doubles.at("row sums");
  const std::vector<double>& totals = got.doubles.at("totals");
  double bce_scale = 0, kl_scale = 0;
  for (int r = 0; r < rows; ++r) {
    double row_bce_scale = 0, row_kl_scale = 0;
    for (int k = 0; k < pixels; ++k) {
      const size_t i = static_cast<size_t>(r) * pixels + k;
      row_bce_scale += kernel_checks::bce_magnitude(logits[i], targets[i]);
    }
    const float* stats = in.mu_logvar.data() + static_cast<size_t>(r) * 2 * latent;
    for (int j = 0; j < latent; ++j) row_kl_scale += kernel_checks::kl_magnitude(stats[j], stats[latent + j]);
    EXPECT_NEAR(row_sums[r], ref_rows[r], kernel_checks::kLossSumRelative * row_bce_scale) << "row " << r << " BCE";
    EXPECT_NEAR(row_sums[rows + r], ref_rows[rows + r], kernel_checks::kLossSumRelative * row_kl_scale)
        << "row " << r << " KL";
    bce_scale += row_bce_scale;
    kl_scale += row_kl_scale;
  }
  EXPECT_NEAR(totals[0], ref_sums.reconstruction, kernel_checks::kLossSumRelative * bce_scale) << "BCE total";
  EXPECT_NEAR(totals[1], ref_sums.kl, kernel_checks::kLossSumRelative * kl_scale) << "KL total";
  if (got.floats.count("dlogits") != 0) {
    EXPECT_TRUE(all_near(got.floats.at("dlogits"), ref_dlogits, 0.0, kernel_checks::kDlogitsAbsolute)) << "dlogits";
  }
}

// -- the first decoder layer's backward: ReparamGradEpilogue --

struct ReparamGradInputs {
  LinearCase c;  // in = latent: x is z, dx is dz
  LayerData d;
  std::vector<float> y;  // the reference's forward output: both sides apply the same ReLU mask
  std::vector<float> mu_logvar, eps;
  float beta;
};

// The default model's (20 -> 400), the deeper model's (2 -> 256) and odd widths. dy of 1/sqrt(out):
// dz of at most about 1, the range of the reparameterisation's backward tolerance.
std::vector<ReparamGradInputs> reparam_grad_inputs(int rows) {
  std::vector<ReparamGradInputs> list;
  uint32_t seed = 3000 + 100 * static_cast<uint32_t>(rows);
  for (const auto& [latent, out] : {std::pair{20, 400}, std::pair{2, 256}, std::pair{3, 37}}) {
    const LinearCase c{rows, latent, out, true};
    ReparamGradInputs in{c, random_layer(c, seed += 10, fan_scale(latent), fan_scale(out)), {}, {}, {}, 0.5f};
    in.y = reference_forward(c, in.d);
    in.mu_logvar = kernel_checks::random_mu_logvar(rows, latent, seed + 5);
    in.eps = uniform_floats(static_cast<size_t>(rows) * latent, -3.0f, 3.0f, seed + 6);
    list.push_back(std::move(in));
  }
  return list;
}

Outputs run_reparam_grad(const ReparamGradInputs& in, Precision p, DeviceWorkspace& workspace, cudaStream_t stream) {
  const LinearCase& c = in.c;
  const int latent = c.in;
  DeviceLayer layer(c, in.d);
  const DeviceBuffer<float> y(in.y), mu_logvar(in.mu_logvar), eps(in.eps);
  const size_t count = static_cast<size_t>(c.rows) * latent;
  DeviceBuffer<float> dz = guarded_output(count), dw = guarded_output(in.d.w.size()), db = guarded_output(c.out),
                      dmu_logvar = guarded_output(2 * count);
  LinearBackward b = layer.backward(y.data(), dz.data(), dw.data(), db.data());
  b.reparam = ReparamGradEpilogue{latent, in.beta, mu_logvar.data(), eps.data(), dmu_logvar.data()};
  linear_backward(b, p, workspace.view(), stream);
  Outputs got;
  got.floats["dz"] = download_checked(dz, count);
  got.floats["dW"] = download_checked(dw, in.d.w.size());
  got.floats["db"] = download_checked(db, c.out);
  got.floats["dmu_logvar"] = download_checked(dmu_logvar, 2 * count);
  return got;
}

// ref::linear_backward, then ref::reparam_backward of the launch's dz.
void check_reparam_grad(const ReparamGradInputs& in, Precision p, const Outputs& got) {
  const LinearCase& c = in.c;
  const std::vector<float>& dz = got.floats.at("dz");
  expect_gradients_near(c, p, in.d, reference_backward(c, in.d, in.y), dz, got.floats.at("dW"), got.floats.at("db"));
  std::vector<float> ref_dmu_logvar(2 * dz.size());
  ref::reparam_backward<float>(c.rows, c.in, in.beta, in.mu_logvar.data(), in.eps.data(), dz.data(),
                               ref_dmu_logvar.data());
  EXPECT_TRUE(all_near(got.floats.at("dmu_logvar"), ref_dmu_logvar, gpu_test::kReparamGradRelative,
                       gpu_test::kReparamGradAbsolute))
      << "d(mu ‖ logvar)";
}

// -- any layer's backward: AdamEpilogue --

struct AdamInputs {
  LinearCase c;
  LayerData d;
  std::vector<float> y;     // the reference's forward output (the ReLU mask)
  AdamState weight, bias;   // params d.w and d.b, with mid-training moments
  AdamHyper hyper;
  long long step;
};

AdamInputs make_adam_inputs(const LinearCase& c, uint32_t seed) {
  // dy of 1/sqrt(rows): gradients of about 1/3, so that the moments' terms stay below 1, as the Adam
  // tolerances assume.
  AdamInputs in{c, random_layer(c, seed, fan_scale(c.in), fan_scale(c.rows)), {}, {}, {}, AdamHyper{}, 5};
  in.y = reference_forward(c, in.d);
  const size_t weights = in.d.w.size(), biases = in.d.b.size();
  in.weight = AdamState{in.d.w, uniform_floats(weights, -0.1f, 0.1f, seed + 5),
                        uniform_floats(weights, 0.0f, 0.01f, seed + 6)};
  in.bias = AdamState{in.d.b, uniform_floats(biases, -0.1f, 0.1f, seed + 7),
                      uniform_floats(biases, 0.0f, 0.01f, seed + 8)};
  in.hyper.lr = 3e-3;
  in.hyper.weight_decay = 0.01;  // L2: the gradient takes in the weight as it was before the update
  return in;
}

// The head (400 -> 40, with dx: it must see W before Adam changes it), the first layer (pixels, no
// dx), and odd widths.
std::vector<AdamInputs> adam_inputs(int rows) {
  const uint32_t seed = 4000 + 100 * static_cast<uint32_t>(rows);
  return {make_adam_inputs({rows, 400, 40, false}, seed), make_adam_inputs({rows, 784, 400, true, true}, seed + 10),
          make_adam_inputs({rows, 13, 37, true}, seed + 20)};
}

Outputs run_adam(const AdamInputs& in, Precision p, DeviceWorkspace& workspace, cudaStream_t stream) {
  const LinearCase& c = in.c;
  DeviceLayer layer(c, in.d);  // W and b are updated in place
  const DeviceBuffer<float> y(in.y);
  DeviceBuffer<float> weight_m = guarded(in.weight.m), weight_v = guarded(in.weight.v), bias_m = guarded(in.bias.m),
                      bias_v = guarded(in.bias.v);
  const DeviceBuffer<AdamCoefficients<float>> coefficients(
      std::vector<AdamCoefficients<float>>{adam_coefficients<float>(in.hyper, in.step)});
  const size_t inputs = c.pixels ? 0 : in.d.x.size(), weights = in.d.w.size(), biases = in.d.b.size();
  DeviceBuffer<float> dx = guarded_output(inputs), dw = guarded_output(weights), db = guarded_output(biases);
  LinearBackward b = layer.backward(y.data(), c.pixels ? nullptr : dx.data(), dw.data(), db.data());
  b.adam = AdamEpilogue{coefficients.data(), weight_m.data(), weight_v.data(), bias_m.data(), bias_v.data()};
  linear_backward(b, p, workspace.view(), stream);
  Outputs got;
  got.floats["dx"] = download_checked(dx, inputs);
  got.floats["dW"] = download_checked(dw, weights);
  got.floats["db"] = download_checked(db, biases);
  got.floats["W"] = download_checked(layer.w, weights);
  got.floats["W m"] = download_checked(weight_m, weights);
  got.floats["W v"] = download_checked(weight_v, weights);
  got.floats["b"] = download_checked(layer.b, biases);
  got.floats["b m"] = download_checked(bias_m, biases);
  got.floats["b v"] = download_checked(bias_v, biases);
  return got;
}

// ref::linear_backward (from W before the update), then ref::adam_step on the launch's gradients.
void check_adam(const AdamInputs& in, Precision p, const Outputs& got) {
  const LinearCase& c = in.c;
  const std::vector<float>& dw = got.floats.at("dW");
  const std::vector<float>& db = got.floats.at("db");
  expect_gradients_near(c, p, in.d, reference_backward(c, in.d, in.y), got.floats.at("dx"), dw, db);
  AdamState want_weight = in.weight, want_bias = in.bias;
  ref::adam_step<float>(static_cast<int64_t>(dw.size()), in.hyper, in.step, dw.data(), want_weight.params.data(),
                        want_weight.m.data(), want_weight.v.data());
  ref::adam_step<float>(static_cast<int64_t>(db.size()), in.hyper, in.step, db.data(), want_bias.params.data(),
                        want_bias.m.data(), want_bias.v.data());
  {
    SCOPED_TRACE("Adam on W");
    gpu_test::expect_adam_states_near(AdamState{got.floats.at("W"), got.floats.at("W m"), got.floats.at("W v")},
                                      want_weight);
  }
  {
    SCOPED_TRACE("Adam on b");
    gpu_test::expect_adam_states_near(AdamState{got.floats.at("b"), got.floats.at("b m"), got.floats.at("b v")},
                                      want_bias);
  }
}

// -- the tests --

class FusedEpilogues : public testing::TestWithParam<Precision> {};

TEST_P(FusedEpilogues, HeadForwardDrawsEpsAndZAsReparamForward) {
  VAE_REQUIRE_GPU();
  const Precision p = GetParam();
  TestStream stream;
  for (int rows : kPartialBatches)
    for (const HeadInputs& head : head_inputs(rows)) {
      SCOPED_TRACE(name_of(head.c, p));
      DeviceWorkspace workspace(head.c, p);
      check_head(head, p, run_head(head, p, workspace, stream.get()));
    }
}

TEST_P(FusedEpilogues, OutputForwardComputesTheLossAsBceKlLoss) {
  VAE_REQUIRE_GPU();
  const Precision p = GetParam();
  TestStream stream;
  std::vector<LossInputs> runs;
  for (int rows : kPartialBatches)
    for (LossInputs& in : loss_inputs(rows)) runs.push_back(std::move(in));
  // A full 784-image batch of the default model: 64x64 tiles on an H200 (169 of them for 132 SMs).
  runs.push_back(make_loss_inputs(784, 400, 784, 20, 2500));
  for (const LossInputs& in : runs) {
    SCOPED_TRACE(name_of(in.c, p) + ", latent " + std::to_string(in.latent));
    DeviceWorkspace workspace(in.c, p);
    const Outputs with_gradient = run_output_layer(in, p, true, workspace, stream.get());
    check_loss(in, p, with_gradient);
    // Without dlogits (evaluation): the same logits and sums, to the bit.
    const Outputs sums_only = run_output_layer(in, p, false, workspace, stream.get());
    EXPECT_TRUE(bitwise_equal(sums_only.floats.at("logits"), with_gradient.floats.at("logits"))) << "logits";
    EXPECT_TRUE(bitwise_equal(sums_only.doubles.at("row sums"), with_gradient.doubles.at("row sums"))) << "row sums";
    EXPECT_TRUE(bitwise_equal(sums_only.doubles.at("totals"), with_gradient.doubles.at("totals"))) << "totals";
  }
}

// A NaN weight makes a column of logits, the BCE and the totals NaN: the guard records the step that
// launch read, and later steps do not move it. Finite sums leave it alone.
TEST_P(FusedEpilogues, OutputForwardNanGuardNamesTheStep) {
  VAE_REQUIRE_GPU();
  const Precision p = GetParam();
  TestStream stream;
  LossInputs in = make_loss_inputs(97, 400, 784, 20, 2700);
  DeviceWorkspace workspace(in.c, p);
  DeviceBuffer<long long> step(std::vector<long long>{7}), first_bad_step(std::vector<long long>{0});
  const NonfiniteGuard guard{step.data(), first_bad_step.data()};
  run_output_layer(in, p, true, workspace, stream.get(), guard);
  EXPECT_EQ(first_bad_step.download()[0], 0) << "finite sums";

  in.d.w[static_cast<size_t>(5) * in.c.in + 17] = std::numeric_limits<float>::quiet_NaN();  // output column 5
  step.upload(std::vector<long long>{8});
  const Outputs poisoned = run_output_layer(in, p, true, workspace, stream.get(), guard);
  EXPECT_TRUE(std::isnan(poisoned.doubles.at("totals")[0]));
  EXPECT_EQ(first_bad_step.download()[0], 8);
  step.upload(std::vector<long long>{9});
  run_output_layer(in, p, true, workspace, stream.get(), guard);
  EXPECT_EQ(first_bad_step.download()[0], 8) << "the first bad step stays";
}

TEST_P(FusedEpilogues, FirstDecoderBackwardWritesTheReparamGradient) {
  VAE_REQUIRE_GPU();
  const Precision p = GetParam();
  TestStream stream;
  for (int rows : kPartialBatches)
    for (const ReparamGradInputs& in : reparam_grad_inputs(rows)) {
      SCOPED_TRACE(name_of(in.c, p));
      DeviceWorkspace workspace(in.c, p);
      check_reparam_grad(in, p, run_reparam_grad(in, p, workspace, stream.get()));
    }
}

TEST_P(FusedEpilogues, BackwardAppliesAdamAsAdamStep) {
  VAE_REQUIRE_GPU();
  const Precision p = GetParam();
  TestStream stream;
  std::vector<AdamInputs> runs;
  for (int rows : kPartialBatches)
    for (AdamInputs& in : adam_inputs(rows)) runs.push_back(std::move(in));
  // The default model's output layer at 784 images: dx and dW in 64x64 tiles on an H200 (91 + 91
  // tiles for 132 SMs).
  runs.push_back(make_adam_inputs({784, 400, 784, false}, 4500));
  for (const AdamInputs& in : runs) {
    SCOPED_TRACE(name_of(in.c, p));
    DeviceWorkspace workspace(in.c, p);
    check_adam(in, p, run_adam(in, p, workspace, stream.get()));
  }
}

// The coefficients StepAdvance derived against the host's. Those without pow are the same roundings
// of the same doubles on both sides; step_size and bias2_sqrt go through pow, whose device and glibc
// versions may differ by a double ulp, and decay_factor through a product that either side may fuse,
// so those are held to 4 float ulps (a double ulp almost never moves the float rounding).
void expect_coefficients_equal(const AdamCoefficients<float>& got, const AdamCoefficients<float>& want) {
  EXPECT_EQ(got.beta1, want.beta1);
  EXPECT_EQ(got.one_minus_beta1, want.one_minus_beta1);
  EXPECT_EQ(got.beta2, want.beta2);
  EXPECT_EQ(got.one_minus_beta2, want.one_minus_beta2);
  EXPECT_EQ(got.eps, want.eps);
  EXPECT_EQ(got.weight_decay, want.weight_decay);
  EXPECT_EQ(got.decoupled, want.decoupled);
  EXPECT_FLOAT_EQ(got.step_size, want.step_size);
  EXPECT_FLOAT_EQ(got.bias2_sqrt, want.bias2_sqrt);
  EXPECT_FLOAT_EQ(got.decay_factor, want.decay_factor);
}

// On the first layer's forward (the step's first launch), three steps in a row, with its product
// unchanged; without a coefficients buffer the step and the stream still advance.
TEST_P(FusedEpilogues, FirstForwardAdvancesTheStep) {
  VAE_REQUIRE_GPU();
  const Precision p = GetParam();
  TestStream stream;
  AdamHyper hyper;
  hyper.lr = 3e-3;
  hyper.weight_decay = 0.01;
  hyper.decoupled = true;  // AdamW: every coefficient matters, and decoupled is true
  uint32_t seed = 5000;
  for (int rows : kPartialBatches) {
    const LinearCase c{rows, 784, 400, true, true};
    SCOPED_TRACE(name_of(c, p));
    const LayerData d = random_layer(c, seed += 10, fan_scale(c.in));
    DeviceLayer layer(c, d);
    DeviceWorkspace workspace(c, p);
    DeviceBuffer<float> y = guarded_output(d.dy.size());
    DeviceBuffer<long long> step(std::vector<long long>{41});
    DeviceBuffer<uint64_t> noise_stream(std::vector<uint64_t>{0});
    DeviceBuffer<AdamCoefficients<float>> coefficients(std::vector<AdamCoefficients<float>>(1));
    LinearForward f = layer.forward(y.data());
    f.advance = StepAdvance{step.data(), noise_stream.data(), hyper, coefficients.data()};
    for (long long next = 42; next <= 44; ++next) {
      linear_forward(f, p, workspace.view(), stream.get());
      EXPECT_EQ(step.download()[0], next);
      EXPECT_EQ(noise_stream.download()[0], train_stream(static_cast<uint64_t>(next))) << "step " << next;
      SCOPED_TRACE("coefficients of step " + std::to_string(next));
      expect_coefficients_equal(coefficients.download()[0], adam_coefficients<float>(hyper, next));
    }
    expect_forward_near(c, p, d, download_checked(y, d.dy.size()));

    f.advance.adam_coefficients = nullptr;
    linear_forward(f, p, workspace.view(), stream.get());
    EXPECT_EQ(step.download()[0], 45);
    EXPECT_EQ(noise_stream.download()[0], train_stream(45));
  }
}

// Each epilogue twice on the same inputs and workspace (its partial sums scrambled in between):
// the same bits, Adam's updated weights and moments included. At 129 rows the default model's
// head, output layer and first decoder layer split K on an H200 in every product they run, so the
// reductions' order must be fixed.
TEST_P(FusedEpilogues, SameInputsGiveTheSameBits) {
  VAE_REQUIRE_GPU();
  const Precision p = GetParam();
  TestStream stream;
  const int rows = 129;
  auto twice = [&](const char* what, const LinearCase& c, auto run) {
    SCOPED_TRACE(std::string(what) + " " + name_of(c, p));
    DeviceWorkspace workspace(c, p);
    const Outputs first = run(workspace);
    workspace.scramble();
    expect_same_bits(first, run(workspace));
  };
  const HeadInputs head = head_inputs(rows)[0];
  twice("head", head.c, [&](DeviceWorkspace& w) { return run_head(head, p, w, stream.get()); });
  const LossInputs loss = std::move(loss_inputs(rows)[0]);
  twice("loss", loss.c, [&](DeviceWorkspace& w) { return run_output_layer(loss, p, true, w, stream.get()); });
  const ReparamGradInputs decoder = std::move(reparam_grad_inputs(rows)[0]);
  twice("reparam gradient", decoder.c,
        [&](DeviceWorkspace& w) { return run_reparam_grad(decoder, p, w, stream.get()); });
  for (const AdamInputs& adam : adam_inputs(rows))
    twice("Adam", adam.c, [&](DeviceWorkspace& w) { return run_adam(adam, p, w, stream.get()); });
}

std::string precision_name(const testing::TestParamInfo<Precision>& info) {
  return info.param == Precision::kTf32 ? "tf32" : "fp32";
}

INSTANTIATE_TEST_SUITE_P(BothPrecisions, LinearKernels, testing::Values(Precision::kFp32, Precision::kTf32),
                         precision_name);
INSTANTIATE_TEST_SUITE_P(BothPrecisions, FusedEpilogues, testing::Values(Precision::kFp32, Precision::kTf32),
                         precision_name);

}  // namespace
}  // namespace vae::cuda
