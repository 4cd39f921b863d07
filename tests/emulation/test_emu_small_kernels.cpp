// The small kernels on the CPU emulator against their reference ops: the loss (BCE+KL with its
// block sum and NaN guard), the reparameterisation, Adam and AdamW, and the per-step device state
// and batch gather. Every buffer has its exact size, so ASan sees any overrun. The loss and its block
// sum use shared memory and run under TSan too; the rest have none and run in the ASan build only.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernel_checks.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device/block_reduce.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/element_math.hpp"
#include "vae/noise_streams.hpp"
#include "vae/reference_ops.hpp"

namespace vae {
namespace {

using kernel_checks::all_near;
using kernel_checks::bitwise_equal;
using kernel_checks::random_mu_logvar;
using kernel_checks::random_pixels;
using kernel_checks::uniform_floats;
using kernel_checks::within_scaled;

// Under TSan (VAE_EMU_QUICK, 5-15x slower) each case runs a few small shapes only.
bool quick() { return std::getenv("VAE_EMU_QUICK") != nullptr; }

// ---- the block sum ------------------------------------------------------------------------------------

// Two block sums per block through one scratch, a barrier between, as the loss kernels use them.
template <int kThreads>
__global__ void two_block_sums(const double* __restrict__ a, const double* __restrict__ b, double* __restrict__ sums) {
  __shared__ typename ShuffleBlockSum<kThreads>::TempStorage scratch;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const double sum_a = ShuffleBlockSum<kThreads>(scratch).Sum(a[i]);
  __syncthreads();  // scratch is reused by the second reduction
  const double sum_b = ShuffleBlockSum<kThreads>(scratch).Sum(b[i]);
  if (threadIdx.x == 0) {
    sums[2 * blockIdx.x] = sum_a;
    sums[2 * blockIdx.x + 1] = sum_b;
  }
}

// CUB's order written out on the host: lane 0 of a warp ends with the pairwise tree of its 32 values
// (the shfl.down steps 1, 2, 4, 8, 16 add neighbours, then pairs of pairs, ...), and the warp sums
// are then added left to right in warp order.
double pairwise(const double* v, int n) { return n == 1 ? v[0] : pairwise(v, n / 2) + pairwise(v + n / 2, n / 2); }
double cub_order_sum(const double* v, int threads) {
  double total = pairwise(v, 32);
  for (int warp = 1; warp < threads / 32; ++warp) total += pairwise(v + warp * 32, 32);
  return total;
}

// Doubles of both signs whose exponents span 2^-40 .. 2^40: the order of addition changes the sum.
std::vector<double> wide_doubles(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> mantissa(1.0, 2.0);
  std::uniform_int_distribution<int> exponent(-40, 40);
  std::vector<double> values(count);
  for (double& x : values) x = (rng() % 2 ? 1 : -1) * std::ldexp(mantissa(rng), exponent(rng));
  return values;
}

template <int kThreads>
void check_block_sums(int blocks, uint32_t seed) {
  SCOPED_TRACE(std::to_string(kThreads) + " threads");
  const size_t count = static_cast<size_t>(blocks) * kThreads;
  const std::vector<double> a = wide_doubles(count, seed), b = wide_doubles(count, seed + 1);
  std::vector<double> sums(2 * static_cast<size_t>(blocks));
  launch_kernel(two_block_sums<kThreads>, blocks, kThreads, nullptr, a.data(), b.data(), sums.data());
  int order_matters = 0;
  for (int block = 0; block < blocks; ++block) {
    for (int which = 0; which < 2; ++which) {
      const double* v = (which == 0 ? a : b).data() + static_cast<size_t>(block) * kThreads;
      const double expected = cub_order_sum(v, kThreads);
      const double got = sums[2 * block + which];
      EXPECT_EQ(std::bit_cast<uint64_t>(got), std::bit_cast<uint64_t>(expected))
          << "block " << block << " sum " << which << ": " << got << " vs " << expected;
      order_matters += std::accumulate(v, v + kThreads, 0.0) != expected;
    }
  }
  // Not vacuous: on these values a plain left-to-right sum gives other doubles.
  EXPECT_GT(order_matters, blocks) << "the values do not tell summation orders apart";
}

TEST(BlockSum, AddsInCubOrderBitForBit) {
  check_block_sums<256>(quick() ? 3 : 12, 1);
  check_block_sums<64>(quick() ? 3 : 12, 2);
  check_block_sums<32>(3, 3);
}

// ---- BCE-with-logits + KL -----------------------------------------------------------------------------

struct LossShape {
  int rows, pixels, latent;
};

// One batch's inputs (targets = pixels / 255, as the reference takes them) and the kernel's outputs,
// each buffer of its exact size.
struct LossCase {
  LossShape shape;
  std::vector<float> logits, targets, mu_logvar;
  std::vector<uint8_t> pixels;
  std::vector<float> dlogits;
  std::vector<double> row_scratch, totals{0.0, 0.0};

  LossCase(LossShape s, uint32_t seed) : shape(s) {
    const size_t n = count();
    logits = uniform_floats(n, -8.0f, 8.0f, seed);
    // Saturated and zero logits, where the stable forms matter.
    for (size_t i = 0; i < n; i += 97) logits[i] = 40.0f;
    for (size_t i = 45; i < n; i += 89) logits[i] = -40.0f;
    for (size_t i = 30; i < n; i += 101) logits[i] = 0.0f;
    pixels = random_pixels(n, seed + 1);
    targets.resize(n);
    for (size_t i = 0; i < n; ++i) targets[i] = pixel_to_unit(pixels[i]);
    mu_logvar = random_mu_logvar(s.rows, s.latent, seed + 2);
    dlogits.assign(n, std::numeric_limits<float>::quiet_NaN());
    row_scratch.assign(2 * static_cast<size_t>(s.rows), std::numeric_limits<double>::quiet_NaN());
  }
  size_t count() const { return static_cast<size_t>(shape.rows) * shape.pixels; }

  void run(bool with_dlogits, cuda::NonfiniteGuard guard = {}) {
    cuda::bce_kl_loss(shape.rows, shape.pixels, shape.latent, logits.data(), pixels.data(), mu_logvar.data(),
                      with_dlogits ? dlogits.data() : nullptr, row_scratch.data(), totals.data(), guard, nullptr);
  }
};

std::string name_of(const LossShape& s) {
  return "rows " + std::to_string(s.rows) + ", pixels " + std::to_string(s.pixels) + ", latent " +
         std::to_string(s.latent);
}

// MNIST batches at the sizes the issue names, pixel counts below, at and past the 256 threads and
// odd, a single pixel, latent 20, 2 and wider than a block.
std::vector<LossShape> loss_shapes() {
  if (quick()) return {{1, 784, 20}, {129, 784, 20}, {129, 257, 2}, {3, 13, 3}, {1, 1000, 300}};
  return {{1, 784, 20},  {96, 784, 20}, {128, 784, 20}, {129, 784, 20}, {129, 784, 2}, {96, 783, 2},
          {3, 13, 3},    {129, 257, 2}, {5, 256, 20},   {2, 1, 1},      {1, 1000, 300}};
}

TEST(BceKlLoss, MatchesReferenceAcrossShapes) {
  uint32_t case_index = 0;
  for (const LossShape& shape : loss_shapes()) {
    ++case_index;
    SCOPED_TRACE(name_of(shape));
    LossCase loss(shape, 1000 * case_index);
    std::vector<float> ref_dlogits(loss.count());
    std::vector<double> ref_rows(2 * static_cast<size_t>(shape.rows));
    const LossSums ref_sums = ref::bce_kl_loss<float>(shape.rows, shape.pixels, shape.latent, loss.logits.data(),
                                                      loss.targets.data(), loss.mu_logvar.data(), ref_dlogits.data(),
                                                      ref_rows.data());
    loss.run(true);
    EXPECT_TRUE(all_near(loss.dlogits, ref_dlogits, 0.0, kernel_checks::kDlogitsAbsolute)) << "dlogits";

    // The row scratch holds each row's BCE sum in [0, rows) and its KL sum in [rows, 2 * rows).
    double bce_scale = 0, kl_scale = 0;
    for (int r = 0; r < shape.rows; ++r) {
      double row_bce_scale = 0, row_kl_scale = 0;
      for (int p = 0; p < shape.pixels; ++p) {
        const size_t i = static_cast<size_t>(r) * shape.pixels + p;
        row_bce_scale += kernel_checks::bce_magnitude(loss.logits[i], loss.targets[i]);
      }
      const float* stats = loss.mu_logvar.data() + static_cast<size_t>(r) * 2 * shape.latent;
      for (int j = 0; j < shape.latent; ++j) row_kl_scale += kernel_checks::kl_magnitude(stats[j], stats[shape.latent + j]);
      EXPECT_NEAR(loss.row_scratch[r], ref_rows[r], kernel_checks::kLossSumRelative * row_bce_scale) << "row " << r << " BCE";
      EXPECT_NEAR(loss.row_scratch[shape.rows + r], ref_rows[shape.rows + r],
                  kernel_checks::kLossSumRelative * row_kl_scale)
          << "row " << r << " KL";
      bce_scale += row_bce_scale;
      kl_scale += row_kl_scale;
    }
    EXPECT_NEAR(loss.totals[0], ref_sums.reconstruction, kernel_checks::kLossSumRelative * bce_scale) << "BCE total";
    EXPECT_NEAR(loss.totals[1], ref_sums.kl, kernel_checks::kLossSumRelative * kl_scale) << "KL total";
  }
}

TEST(BceKlLoss, AddsToTheTotalsAcrossCalls) {
  LossCase loss(quick() ? LossShape{3, 13, 3} : LossShape{129, 784, 20}, 6);
  loss.run(true);
  const std::vector<double> once = loss.totals;
  loss.totals = {10.0, 20.0};
  loss.run(true);
  loss.run(true);
  // The batch sums reproduce bit for bit, so each call adds exactly the same doubles.
  EXPECT_EQ(loss.totals[0], (10.0 + once[0]) + once[0]);
  EXPECT_EQ(loss.totals[1], (20.0 + once[1]) + once[1]);
}

// Evaluation passes no dlogits: the same sums, and no gradient written (there is nowhere to write).
TEST(BceKlLoss, NullDlogitsGivesTheSameSums) {
  LossCase loss(quick() ? LossShape{3, 13, 3} : LossShape{129, 784, 20}, 7);
  loss.run(true);
  const std::vector<double> totals = loss.totals, rows = loss.row_scratch;
  loss.totals = {0.0, 0.0};
  std::fill(loss.row_scratch.begin(), loss.row_scratch.end(), std::numeric_limits<double>::quiet_NaN());
  loss.run(false);
  EXPECT_TRUE(bitwise_equal(loss.totals, totals));
  EXPECT_TRUE(bitwise_equal(loss.row_scratch, rows));
}

// The NaN guard: the first call whose running totals are not finite records the step it read, and
// later calls (finite or not, totals reset or not) leave that record alone.
TEST(BceKlLoss, NanGuardRecordsTheFirstBadStep) {
  const LossShape shape = quick() ? LossShape{3, 13, 3} : LossShape{129, 784, 20};
  std::vector<long long> step{5}, first_bad_step{0};
  const cuda::NonfiniteGuard guard{step.data(), first_bad_step.data()};
  LossCase finite(shape, 8), poisoned_logit(shape, 9), poisoned_logvar(shape, 10);
  // The last pixel of the last row: every row and thread must reach the guard.
  poisoned_logit.logits.back() = std::numeric_limits<float>::quiet_NaN();
  poisoned_logvar.mu_logvar.back() = std::numeric_limits<float>::quiet_NaN();

  finite.run(true, guard);
  EXPECT_EQ(first_bad_step[0], 0) << "a finite batch is not flagged";
  step[0] = 6;
  poisoned_logit.totals = finite.totals;
  poisoned_logit.run(true, guard);
  EXPECT_EQ(first_bad_step[0], 6);
  EXPECT_TRUE(std::isnan(poisoned_logit.totals[0]));
  step[0] = 7;
  finite.totals = poisoned_logit.totals;
  finite.run(true, guard);
  EXPECT_EQ(first_bad_step[0], 6) << "a later batch must not move the record";
  step[0] = 8;
  finite.totals = {0.0, 0.0};
  finite.run(true, guard);
  EXPECT_EQ(first_bad_step[0], 6) << "nor a later finite epoch";

  // A NaN in the encoder's statistics reaches the guard through the KL sum.
  std::vector<long long> kl_bad_step{0};
  step[0] = 11;
  poisoned_logvar.run(false, {step.data(), kl_bad_step.data()});
  EXPECT_TRUE(std::isnan(poisoned_logvar.totals[1]));
  EXPECT_EQ(kl_bad_step[0], 11);
}

// In emulation the kernel draws its normals with the very CPU code the reference uses, so eps agrees
// bit for bit. Everything else is the same element_math expression on both sides, compiled with
// other flags: the reference's build (-march=native) fuses some multiply-adds into one rounding
// where the kernels' build does not (nvcc fuses its own), which moves a result by a rounding or two
// of the terms it adds, many ulps of the result where they cancel. So results must agree to four
// ulps of the magnitude S of their terms (4 · 2⁻²³ · S, about 5e-7 S): anything beyond rounding shows.
constexpr double kTermRoundings = 4 * 0x1p-23;

// ---- Adam ---------------------------------------------------------------------------------------------

struct AdamState {
  std::vector<float> params, m, v;
};

// Past what the capped grid covers in one sweep (132 SMs x 16 blocks x 256 threads = 540,672 threads,
// four elements each on the vector path), so the grid-stride loop wraps, and not a multiple of 4.
constexpr int64_t kAdamSize = 2'200'001;

AdamHyper adam_hyper(const std::string& kind) {
  AdamHyper hyper;
  if (kind != "adam") {
    hyper.lr = 3e-3;
    hyper.weight_decay = 0.01;
    hyper.decoupled = kind == "adamw";
  }
  return hyper;
}

class AdamStep : public testing::TestWithParam<std::string> {};

// Against the reference on a buffer the grid sweeps more than once: too big for TSan, whose run has
// the small test further down.
#if !defined(__SANITIZE_THREAD__)
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

// From mid-training moments, one update at step 1, 2 and 1000, the step read from memory.
TEST_P(AdamStep, MatchesReferenceAtSteps1And2And1000) {
  const AdamHyper hyper = adam_hyper(GetParam());
  const size_t n = static_cast<size_t>(kAdamSize);
  const AdamState start{uniform_floats(n, -1.0f, 1.0f, 11), uniform_floats(n, -0.1f, 0.1f, 12),
                        uniform_floats(n, 0.0f, 0.01f, 13)};
  std::vector<float> grads = uniform_floats(n, -1.0f, 1.0f, 14);
  for (size_t i = 0; i < n; i += 17) grads[i] = 0.0f;  // parameters a batch does not touch
  std::vector<float> previous_params;
  for (const long long step : {1LL, 2LL, 1000LL}) {
    SCOPED_TRACE("step " + std::to_string(step));
    AdamState device = start, expected = start;
    const std::vector<long long> step_in_memory{step};
    cuda::adam_step(kAdamSize, hyper, step_in_memory.data(), grads.data(), device.params.data(), device.m.data(),
                    device.v.data(), nullptr);
    ref::adam_step<float>(kAdamSize, hyper, step, grads.data(), expected.params.data(), expected.m.data(),
                          expected.v.data());
    const AdamTerms terms = adam_terms(hyper, step, grads, start);
    EXPECT_TRUE(within_scaled(device.params, expected.params, terms.params, kTermRoundings)) << "params";
    EXPECT_TRUE(within_scaled(device.m, expected.m, terms.m, kTermRoundings)) << "m";
    EXPECT_TRUE(within_scaled(device.v, expected.v, terms.v, kTermRoundings)) << "v";
    // The last element, past the first sweep of the grid, was updated at all.
    EXPECT_NE(device.params.back(), start.params.back());
    if (!previous_params.empty()) {
      size_t differ = 0;
      for (size_t i = 0; i < n; ++i) differ += device.params[i] != previous_params[i];
      EXPECT_GT(differ, n / 2) << "the step number must change the update";
    }
    previous_params = device.params;
  }
}
#endif

// Buffers that are not 16-byte aligned take the scalar loop; each element's update is the same
// formula either way, so the results are the same bits.
TEST_P(AdamStep, MisalignedBuffersGiveTheSameBits) {
  const AdamHyper hyper = adam_hyper(GetParam());
  const size_t n = 4099;  // the vector loop, then a tail of 3
  const std::vector<float> params = uniform_floats(n + 1, -1.0f, 1.0f, 21), m = uniform_floats(n + 1, -0.1f, 0.1f, 22),
                           v = uniform_floats(n + 1, 0.0f, 0.01f, 23), grads = uniform_floats(n + 1, -1.0f, 1.0f, 24);
  const std::vector<long long> step{3};
  std::vector<float> p_aligned(params.begin(), params.end() - 1), m_aligned(m.begin(), m.end() - 1),
      v_aligned(v.begin(), v.end() - 1), g_aligned(grads.begin(), grads.end() - 1);
  cuda::adam_step(static_cast<int64_t>(n), hyper, step.data(), g_aligned.data(), p_aligned.data(), m_aligned.data(),
                  v_aligned.data(), nullptr);
  // The same values one float further on: 4-byte aligned only.
  std::vector<float> p_shifted(n + 1), m_shifted(n + 1), v_shifted(n + 1), g_shifted(n + 1);
  std::copy(params.begin(), params.end() - 1, p_shifted.begin() + 1);
  std::copy(m.begin(), m.end() - 1, m_shifted.begin() + 1);
  std::copy(v.begin(), v.end() - 1, v_shifted.begin() + 1);
  std::copy(grads.begin(), grads.end() - 1, g_shifted.begin() + 1);
  cuda::adam_step(static_cast<int64_t>(n), hyper, step.data(), g_shifted.data() + 1, p_shifted.data() + 1,
                  m_shifted.data() + 1, v_shifted.data() + 1, nullptr);
  EXPECT_EQ(std::vector<float>(p_shifted.begin() + 1, p_shifted.end()), p_aligned);
  EXPECT_EQ(std::vector<float>(m_shifted.begin() + 1, m_shifted.end()), m_aligned);
  EXPECT_EQ(std::vector<float>(v_shifted.begin() + 1, v_shifted.end()), v_aligned);
  EXPECT_NE(p_aligned.back(), params[n - 1]);  // the tail was updated
}

INSTANTIATE_TEST_SUITE_P(Kinds, AdamStep, testing::Values("adam", "adam_l2", "adamw"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

// ---- below: no shared memory, so nothing for TSan to find; the ASan build runs these ------------------
#if !defined(__SANITIZE_THREAD__)

// ---- reparameterisation -------------------------------------------------------------------------------

struct LatentShape {
  int rows, latent;
};
// The batch sizes at latent 20 and 2, and element counts that are not a multiple of four
// (2, 258, 9, 387, 7), so the last Philox group is partial.
const LatentShape kLatentShapes[] = {{1, 20}, {96, 20}, {128, 20}, {129, 20}, {1, 2},  {96, 2},
                                     {129, 2}, {3, 3},  {129, 3},  {7, 1},    {1, 1}};


TEST(ReparamForward, MatchesReferenceAcrossShapes) {
  uint32_t case_index = 0;
  for (const LatentShape& shape : kLatentShapes) {
    ++case_index;
    SCOPED_TRACE("rows " + std::to_string(shape.rows) + ", latent " + std::to_string(shape.latent));
    const size_t count = static_cast<size_t>(shape.rows) * shape.latent;
    const uint64_t seed = 0x0123'4567'89ab'cdefull + case_index;
    // An evaluation stream sets the top bits, so both words of the subsequence take part.
    const std::vector<uint64_t> stream{case_index % 2 == 0 ? train_stream(1000 + case_index)
                                                           : eval_stream(3, case_index)};
    const std::vector<float> mu_logvar = random_mu_logvar(shape.rows, shape.latent, case_index);
    std::vector<float> ref_eps(count), ref_z(count);
    ref::reparam_forward<float>(shape.rows, shape.latent, seed, stream[0], mu_logvar.data(), ref_eps.data(),
                                ref_z.data());

    std::vector<float> eps(count, std::numeric_limits<float>::quiet_NaN()), z = eps;
    cuda::reparam_forward(shape.rows, shape.latent, seed, stream.data(), mu_logvar.data(), eps.data(), z.data(),
                          nullptr);
    EXPECT_TRUE(bitwise_equal(eps, ref_eps)) << "eps";
    // S = |mu| + |sigma * eps|.
    std::vector<double> z_terms(count);
    for (int r = 0; r < shape.rows; ++r)
      for (int j = 0; j < shape.latent; ++j) {
        const float* row = mu_logvar.data() + static_cast<size_t>(r) * 2 * shape.latent;
        const size_t i = static_cast<size_t>(r) * shape.latent + j;
        z_terms[i] = std::fabs(row[j]) + std::exp(0.5 * row[shape.latent + j]) * std::fabs(ref_eps[i]);
      }
    EXPECT_TRUE(within_scaled(z, ref_z, z_terms, kTermRoundings)) << "z";
  }
}

TEST(ReparamForward, ReadsTheNoiseStreamFromMemory) {
  const int rows = 129, latent = 3;
  const size_t count = static_cast<size_t>(rows) * latent;
  const std::vector<float> mu_logvar = random_mu_logvar(rows, latent, 7);
  std::vector<uint64_t> stream{train_stream(5)};
  std::vector<float> eps(count), z(count);
  auto draw = [&] {
    cuda::reparam_forward(rows, latent, 2024, stream.data(), mu_logvar.data(), eps.data(), z.data(), nullptr);
    return eps;
  };
  const std::vector<float> first = draw();
  stream[0] = train_stream(6);
  const std::vector<float> next = draw();
  size_t changed = 0;
  for (size_t i = 0; i < count; ++i) changed += next[i] != first[i];
  EXPECT_GT(changed, count * 9 / 10) << "a new stream value must give new noise";
  std::vector<float> ref_eps(count), ref_z(count);
  ref::reparam_forward<float>(rows, latent, 2024, train_stream(6), mu_logvar.data(), ref_eps.data(), ref_z.data());
  EXPECT_TRUE(bitwise_equal(next, ref_eps));
}

TEST(ReparamBackward, MatchesReferenceAcrossShapes) {
  const float betas[] = {1.0f, 0.5f, 0.0f, 2.0f};
  uint32_t case_index = 0;
  for (const LatentShape& shape : kLatentShapes) {
    const float beta = betas[case_index % 4];
    ++case_index;
    SCOPED_TRACE("rows " + std::to_string(shape.rows) + ", latent " + std::to_string(shape.latent) + ", beta " +
                 std::to_string(beta));
    const size_t count = static_cast<size_t>(shape.rows) * shape.latent;
    const std::vector<float> mu_logvar = random_mu_logvar(shape.rows, shape.latent, 100 + case_index);
    const std::vector<float> eps = uniform_floats(count, -3.0f, 3.0f, 200 + case_index);
    const std::vector<float> dz = uniform_floats(count, -1.0f, 1.0f, 300 + case_index);
    std::vector<float> ref_grad(2 * count), grad(2 * count, std::numeric_limits<float>::quiet_NaN());
    ref::reparam_backward<float>(shape.rows, shape.latent, beta, mu_logvar.data(), eps.data(), dz.data(),
                                 ref_grad.data());
    cuda::reparam_backward(shape.rows, shape.latent, beta, mu_logvar.data(), eps.data(), dz.data(), grad.data(),
                           nullptr);
    // S = |dz| + beta |mu| for mu; |dz eps sigma| / 2 + beta (exp(logvar) + 1) / 2 for logvar.
    std::vector<double> terms(2 * count);
    for (int r = 0; r < shape.rows; ++r)
      for (int j = 0; j < shape.latent; ++j) {
        const size_t i = static_cast<size_t>(r) * shape.latent + j, mu = 2 * static_cast<size_t>(r) * shape.latent + j;
        const double logvar = mu_logvar[mu + shape.latent], d = std::fabs(dz[i]);
        terms[mu] = d + beta * std::fabs(mu_logvar[mu]);
        terms[mu + shape.latent] = 0.5 * d * std::fabs(eps[i]) * std::exp(0.5 * logvar) + 0.5 * beta * (std::exp(logvar) + 1);
      }
    EXPECT_TRUE(within_scaled(grad, ref_grad, terms, kTermRoundings));
  }
}

// ---- per-step device state and the batch gather ---------------------------------------------------------

TEST(StepState, AdvanceStepCountsAndKeysTheTrainingNoise) {
  std::vector<long long> step{0};
  std::vector<uint64_t> stream{12345};
  cuda::advance_step(step.data(), stream.data(), nullptr);
  EXPECT_EQ(step[0], 1);
  EXPECT_EQ(stream[0], train_stream(1));
  step[0] = 41;
  cuda::advance_step(step.data(), stream.data(), nullptr);
  EXPECT_EQ(step[0], 42);
  EXPECT_EQ(stream[0], train_stream(42));
}

TEST(StepState, SetNoiseStreamStoresTheValue) {
  std::vector<uint64_t> stream{0};
  cuda::set_noise_stream(eval_stream(3, 7), stream.data(), nullptr);
  EXPECT_EQ(stream[0], eval_stream(3, 7));
  cuda::set_noise_stream(noise_stream(NoisePurpose::kSample, 1), stream.data(), nullptr);
  EXPECT_EQ(stream[0], noise_stream(NoisePurpose::kSample, 1));
}

// Two gathers of `rows` images from a shuffled order, the second reaching the order's last entry:
// each copies the images the order names from the cursor on, and moves the cursor past them.
TEST(GatherRows, CopiesTheOrderedRowsAndAdvancesTheCursor) {
  for (const int rows : {1, 129})
    for (const int row_bytes : {784, 13, 257}) {
      SCOPED_TRACE("rows " + std::to_string(rows) + ", row_bytes " + std::to_string(row_bytes));
      const int images = 2 * rows + 3;
      const std::vector<uint8_t> data = random_pixels(static_cast<size_t>(images) * row_bytes, rows + row_bytes);
      std::vector<uint32_t> order(images);
      std::iota(order.begin(), order.end(), 0u);
      std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<uint32_t>(rows)));
      std::vector<uint32_t> cursor{3};
      for (int batch = 0; batch < 2; ++batch) {
        const uint32_t first = cursor[0];
        std::vector<uint8_t> out(static_cast<size_t>(rows) * row_bytes);
        cuda::gather_rows(rows, row_bytes, order.data(), cursor.data(), data.data(), out.data(), nullptr);
        EXPECT_EQ(cursor[0], first + static_cast<uint32_t>(rows));
        for (int r = 0; r < rows; ++r) {
          const uint8_t* source = data.data() + static_cast<size_t>(order[first + r]) * row_bytes;
          ASSERT_TRUE(std::equal(source, source + row_bytes, out.begin() + static_cast<int64_t>(r) * row_bytes))
              << "batch " << batch << ", row " << r;
        }
      }
      EXPECT_EQ(cursor[0], static_cast<uint32_t>(images));
    }
}

#endif  // !defined(__SANITIZE_THREAD__)

}  // namespace
}  // namespace vae
