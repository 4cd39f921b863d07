// GPU tests of the reparameterisation, BCE+KL and Adam kernels against the CPU reference ops (the
// spec), on random data and edge shapes, plus the properties the training step relies on: the loss
// reproduces bit for bit, and the noise stream and Adam step are read from device memory.
// Every output buffer carries sentinels past its end, so a write out of bounds fails the test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iomanip>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpu_test_support.hpp"
#include "kernel_checks.hpp"
#include "vae/cuda_check.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/device_buffer.hpp"
#include "vae/element_math.hpp"
#include "vae/noise_streams.hpp"
#include "vae/reference_ops.hpp"

namespace vae {
namespace {

// ---- helpers ------------------------------------------------------------------------------------

using gpu_test::download_checked;
using gpu_test::guarded;
using gpu_test::guarded_output;
using gpu_test::kSentinel;
using gpu_test::TestStream;
using kernel_checks::all_near;
using kernel_checks::bitwise_equal;
using kernel_checks::random_mu_logvar;
using kernel_checks::random_pixels;
using kernel_checks::uniform_floats;

// ---- reparameterisation -------------------------------------------------------------------------

struct LatentShape {
  int rows, latent;
};
// The batch sizes around a block's 256 threads / 4 elements per thread, the default model's latent
// 20, and counts that are not a multiple of four (3, 9, 387, 7, 1) to exercise the partial group.
const LatentShape kLatentShapes[] = {{1, 20},   {20, 20}, {127, 20}, {128, 20}, {129, 20}, {400, 20}, {784, 20},
                                     {4096, 20}, {1, 3},   {3, 3},    {129, 3},  {7, 1},    {1, 1}};

// Tolerances: eps, z from the device's eps, z against the reference (gpu_test_support.hpp).
using gpu_test::kEpsAbsolute;
using gpu_test::kZAbsolute;
using gpu_test::kZFromDeviceEpsAbsolute;
using gpu_test::kZRelative;

TEST(ReparamForward, MatchesReferenceAcrossShapes) {
  VAE_REQUIRE_GPU();
  TestStream stream;
  uint32_t case_index = 0;
  for (const LatentShape& shape : kLatentShapes) {
    ++case_index;
    SCOPED_TRACE("rows " + std::to_string(shape.rows) + ", latent " + std::to_string(shape.latent));
    const size_t count = static_cast<size_t>(shape.rows) * shape.latent;
    const uint64_t seed = 0x0123'4567'89ab'cdefull + case_index;
    // An evaluation stream sets the top bits, so both words of the subsequence are exercised.
    const uint64_t stream_value = case_index % 2 == 0 ? train_stream(1000 + case_index) : eval_stream(3, case_index);
    const std::vector<float> mu_logvar = random_mu_logvar(shape.rows, shape.latent, case_index);

    std::vector<float> ref_eps(count), ref_z(count);
    ref::reparam_forward<float>(shape.rows, shape.latent, seed, stream_value, mu_logvar.data(), ref_eps.data(),
                                ref_z.data());

    const DeviceBuffer<uint64_t> d_stream(std::vector<uint64_t>{stream_value});
    const DeviceBuffer<float> d_mu_logvar(mu_logvar);
    DeviceBuffer<float> d_eps = guarded_output(count), d_z = guarded_output(count);
    cuda::reparam_forward(shape.rows, shape.latent, seed, d_stream.data(), d_mu_logvar.data(), d_eps.data(),
                          d_z.data(), stream.get());
    stream.sync();
    const std::vector<float> eps = download_checked(d_eps, count), z = download_checked(d_z, count);

    EXPECT_TRUE(all_near(eps, ref_eps, 0.0, kEpsAbsolute)) << "eps";
    std::vector<float> z_from_device_eps(count);
    for (int r = 0; r < shape.rows; ++r)
      for (int j = 0; j < shape.latent; ++j) {
        const size_t i = static_cast<size_t>(r) * shape.latent + j;
        const float* row = mu_logvar.data() + static_cast<size_t>(r) * 2 * shape.latent;
        z_from_device_eps[i] = reparam_sample(row[j], row[shape.latent + j], eps[i]);
      }
    EXPECT_TRUE(all_near(z, z_from_device_eps, kZRelative, kZFromDeviceEpsAbsolute)) << "z from the device's eps";
    EXPECT_TRUE(all_near(z, ref_z, kZRelative, kZAbsolute)) << "z against the reference";
  }
}

TEST(ReparamForward, ReadsTheNoiseStreamFromDeviceMemory) {
  VAE_REQUIRE_GPU();
  // The launch arguments stay fixed (as in a captured graph); only the device value changes.
  const int rows = 129, latent = 20;
  const size_t count = static_cast<size_t>(rows) * latent;
  const uint64_t seed = 2024;
  const std::vector<float> mu_logvar = random_mu_logvar(rows, latent, 7);
  TestStream stream;
  DeviceBuffer<uint64_t> d_stream(std::vector<uint64_t>{train_stream(5)});
  const DeviceBuffer<float> d_mu_logvar(mu_logvar);
  DeviceBuffer<float> d_eps = guarded_output(count), d_z = guarded_output(count);
  auto draw = [&] {
    cuda::reparam_forward(rows, latent, seed, d_stream.data(), d_mu_logvar.data(), d_eps.data(), d_z.data(),
                          stream.get());
    stream.sync();
    return download_checked(d_eps, count);
  };

  const std::vector<float> first = draw();
  const std::vector<float> again = draw();
  EXPECT_TRUE(bitwise_equal(first, again)) << "the same stream value must reproduce eps bit for bit";

  d_stream.upload(std::vector<uint64_t>{train_stream(6)});
  const std::vector<float> next = draw();
  size_t changed = 0;
  for (size_t i = 0; i < count; ++i) changed += next[i] != first[i];
  EXPECT_GT(changed, count * 9 / 10) << "a new stream value must give new noise";

  std::vector<float> ref_eps(count), ref_z(count);
  ref::reparam_forward<float>(rows, latent, seed, train_stream(6), mu_logvar.data(), ref_eps.data(), ref_z.data());
  EXPECT_TRUE(all_near(next, ref_eps, 0.0, kEpsAbsolute)) << "eps of the new stream";
}

// Tolerance: kReparamGradRelative and kReparamGradAbsolute (gpu_test_support.hpp).
TEST(ReparamBackward, MatchesReferenceAcrossShapes) {
  VAE_REQUIRE_GPU();
  TestStream stream;
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

    std::vector<float> ref_grad(2 * count);
    ref::reparam_backward<float>(shape.rows, shape.latent, beta, mu_logvar.data(), eps.data(), dz.data(),
                                 ref_grad.data());

    const DeviceBuffer<float> d_mu_logvar(mu_logvar), d_eps(eps), d_dz(dz);
    DeviceBuffer<float> d_grad = guarded_output(2 * count);
    cuda::reparam_backward(shape.rows, shape.latent, beta, d_mu_logvar.data(), d_eps.data(), d_dz.data(),
                           d_grad.data(), stream.get());
    stream.sync();
    EXPECT_TRUE(all_near(download_checked(d_grad, 2 * count), ref_grad, gpu_test::kReparamGradRelative,
                         gpu_test::kReparamGradAbsolute));
  }
}

// ---- BCE-with-logits + KL -----------------------------------------------------------------------

struct LossShape {
  int rows, pixels, latent;
};
// MNIST batches around the block count, odd pixel counts below and just past the 256 threads, a
// single pixel, and a latent wider than a block.
const LossShape kLossShapes[] = {{1, 784, 20},   {20, 784, 20}, {127, 784, 20}, {128, 784, 20}, {129, 784, 20},
                                 {400, 784, 20}, {784, 13, 3},  {4096, 784, 20}, {3, 13, 3},    {129, 257, 3},
                                 {5, 256, 20},   {2, 1, 1},     {1, 1000, 300}};

// One batch's inputs, on the host and on the device, and the device outputs.
struct LossCase {
  LossShape shape;
  std::vector<float> logits, targets, mu_logvar;  // targets = pixels / 255, as the reference takes them
  std::vector<uint8_t> pixels;
  DeviceBuffer<float> d_logits, d_mu_logvar, d_dlogits;
  DeviceBuffer<uint8_t> d_pixels;
  DeviceBuffer<double> d_row_scratch, d_totals;

  LossCase(LossShape s, uint32_t seed) : shape(s) {
    const size_t count = static_cast<size_t>(s.rows) * s.pixels;
    logits = uniform_floats(count, -8.0f, 8.0f, seed);
    // Saturated and zero logits, where the stable forms matter.
    for (size_t i = 0; i < count; i += 97) logits[i] = 40.0f;
    for (size_t i = 45; i < count; i += 89) logits[i] = -40.0f;
    for (size_t i = 30; i < count; i += 101) logits[i] = 0.0f;
    pixels = random_pixels(count, seed + 1);
    targets.resize(count);
    for (size_t i = 0; i < count; ++i) targets[i] = static_cast<float>(pixels[i]) / 255.0f;
    mu_logvar = random_mu_logvar(s.rows, s.latent, seed + 2);
    d_logits = DeviceBuffer<float>(logits);
    d_mu_logvar = DeviceBuffer<float>(mu_logvar);
    d_pixels = DeviceBuffer<uint8_t>(pixels);
    d_dlogits = guarded_output(count);
    d_row_scratch = DeviceBuffer<double>(2 * static_cast<size_t>(s.rows));
    d_totals = DeviceBuffer<double>(std::vector<double>{0.0, 0.0});
  }
  size_t count() const { return static_cast<size_t>(shape.rows) * shape.pixels; }

  void run(cudaStream_t stream, bool with_dlogits) {
    cuda::bce_kl_loss(shape.rows, shape.pixels, shape.latent, d_logits.data(), d_pixels.data(), d_mu_logvar.data(),
                      with_dlogits ? d_dlogits.data() : nullptr, d_row_scratch.data(), d_totals.data(), {}, stream);
    VAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
};

// The loss bounds of kernel_checks.hpp: sums to 1e-6 of their terms' magnitudes, dlogits to 1e-6.
using kernel_checks::bce_magnitude;
using kernel_checks::kl_magnitude;
constexpr double kSumRelative = kernel_checks::kLossSumRelative;
constexpr double kDlogitsAbsolute = kernel_checks::kDlogitsAbsolute;

TEST(BceKlLoss, MatchesReferenceAcrossShapes) {
  VAE_REQUIRE_GPU();
  TestStream stream;
  uint32_t case_index = 0;
  for (const LossShape& shape : kLossShapes) {
    ++case_index;
    SCOPED_TRACE("rows " + std::to_string(shape.rows) + ", pixels " + std::to_string(shape.pixels) + ", latent " +
                 std::to_string(shape.latent));
    LossCase loss(shape, 1000 * case_index);
    std::vector<float> ref_dlogits(loss.count());
    std::vector<double> ref_scratch(2 * static_cast<size_t>(shape.rows));
    const LossSums ref_sums =
        ref::bce_kl_loss<float>(shape.rows, shape.pixels, shape.latent, loss.logits.data(), loss.targets.data(),
                                loss.mu_logvar.data(), ref_dlogits.data(), ref_scratch.data());

    loss.run(stream.get(), true);
    const std::vector<double> totals = loss.d_totals.download();
    const std::vector<double> row_sums = loss.d_row_scratch.download();
    EXPECT_TRUE(all_near(download_checked(loss.d_dlogits, loss.count()), ref_dlogits, 0.0, kDlogitsAbsolute))
        << "dlogits";

    // Per-row sums, in the reference's order, with their magnitudes for the tolerance.
    double bce_scale = 0, kl_scale = 0;
    for (int r = 0; r < shape.rows; ++r) {
      double row_bce = 0, row_bce_scale = 0, row_kl = 0, row_kl_scale = 0;
      for (int p = 0; p < shape.pixels; ++p) {
        const size_t i = static_cast<size_t>(r) * shape.pixels + p;
        row_bce += bce_with_logits(loss.logits[i], loss.targets[i]);
        row_bce_scale += bce_magnitude(loss.logits[i], loss.targets[i]);
      }
      const float* stats = loss.mu_logvar.data() + static_cast<size_t>(r) * 2 * shape.latent;
      for (int j = 0; j < shape.latent; ++j) {
        row_kl += kl_term(stats[j], stats[shape.latent + j]);
        row_kl_scale += kl_magnitude(stats[j], stats[shape.latent + j]);
      }
      EXPECT_NEAR(row_sums[r], row_bce, kSumRelative * row_bce_scale) << "row " << r << " BCE";
      EXPECT_NEAR(row_sums[shape.rows + r], row_kl, kSumRelative * row_kl_scale) << "row " << r << " KL";
      bce_scale += row_bce_scale;
      kl_scale += row_kl_scale;
    }
    EXPECT_NEAR(totals[0], ref_sums.reconstruction, kSumRelative * bce_scale) << "BCE total";
    EXPECT_NEAR(totals[1], ref_sums.kl, kSumRelative * kl_scale) << "KL total";
  }
}

TEST(BceKlLoss, IsBitwiseStableAcrossRuns) {
  VAE_REQUIRE_GPU();
  TestStream stream;
  LossCase loss({400, 784, 20}, 5);
  loss.run(stream.get(), true);
  const std::vector<double> first_totals = loss.d_totals.download(), first_rows = loss.d_row_scratch.download();
  const std::vector<float> first_dlogits = loss.d_dlogits.download();
  for (int repeat = 0; repeat < 3; ++repeat) {
    loss.d_totals.zero();
    loss.d_row_scratch.zero();
    loss.d_dlogits = guarded_output(loss.count());
    loss.run(stream.get(), true);
    EXPECT_TRUE(bitwise_equal(loss.d_totals.download(), first_totals)) << "totals, repeat " << repeat;
    EXPECT_TRUE(bitwise_equal(loss.d_row_scratch.download(), first_rows)) << "row sums, repeat " << repeat;
    EXPECT_TRUE(bitwise_equal(loss.d_dlogits.download(), first_dlogits)) << "dlogits, repeat " << repeat;
  }
}

TEST(BceKlLoss, AddsToTheTotalsAcrossCalls) {
  VAE_REQUIRE_GPU();
  TestStream stream;
  LossCase loss({128, 784, 20}, 6);
  loss.run(stream.get(), true);
  const std::vector<double> once = loss.d_totals.download();
  // The batch sums are bitwise reproducible, so the second call adds exactly the same doubles.
  loss.run(stream.get(), true);
  const std::vector<double> twice = loss.d_totals.download();
  EXPECT_EQ(twice[0], once[0] + once[0]);
  EXPECT_EQ(twice[1], once[1] + once[1]);

  loss.d_totals.upload(std::vector<double>{10.0, 20.0});
  loss.run(stream.get(), true);
  const std::vector<double> offset = loss.d_totals.download();
  EXPECT_EQ(offset[0], 10.0 + once[0]);
  EXPECT_EQ(offset[1], 20.0 + once[1]);
}

TEST(BceKlLoss, NullDlogitsGivesTheSameSums) {
  VAE_REQUIRE_GPU();
  TestStream stream;
  LossCase loss({129, 784, 20}, 7);
  loss.run(stream.get(), true);
  const std::vector<double> with_gradient = loss.d_totals.download();
  loss.d_totals.zero();
  loss.d_dlogits = guarded_output(loss.count());
  loss.run(stream.get(), false);
  EXPECT_TRUE(bitwise_equal(loss.d_totals.download(), with_gradient));
  // Nothing was written to the (unpassed) gradient buffer.
  const std::vector<float> untouched = download_checked(loss.d_dlogits, loss.count());
  size_t written = 0;
  for (float x : untouched) written += x != kSentinel;
  EXPECT_EQ(written, 0u);
}

// ---- Adam ---------------------------------------------------------------------------------------

// Tolerance: kAdamRelative and its absolute floors (gpu_test_support.hpp).
using gpu_test::AdamState;
using gpu_test::expect_adam_states_near;

struct AdamDevice {
  DeviceBuffer<float> params, m, v;
  explicit AdamDevice(const AdamState& state) : params(guarded(state.params)), m(guarded(state.m)), v(guarded(state.v)) {}
  AdamState download(size_t n) const {
    return AdamState{download_checked(params, n), download_checked(m, n), download_checked(v, n)};
  }
};

// Gradients in [-1, 1] with some exact zeros (parameters a batch does not touch).
std::vector<float> random_grads(size_t n, uint32_t seed) {
  std::vector<float> grads = uniform_floats(n, -1.0f, 1.0f, seed);
  for (size_t i = 0; i < n; i += 17) grads[i] = 0.0f;
  return grads;
}

AdamHyper plain_adam() {
  AdamHyper hyper;
  hyper.lr = 1e-3;
  return hyper;
}
AdamHyper adam_l2() {
  AdamHyper hyper;
  hyper.lr = 3e-3;
  hyper.weight_decay = 0.01;
  return hyper;
}
AdamHyper adamw() {
  AdamHyper hyper;
  hyper.lr = 3e-3;
  hyper.weight_decay = 0.01;
  hyper.decoupled = true;
  return hyper;
}

// Three steps from a fresh optimizer, device and reference side by side.
void check_three_steps(int64_t n, const AdamHyper& hyper, uint32_t seed) {
  const size_t count = static_cast<size_t>(n);
  AdamState ref_state{uniform_floats(count, -1.0f, 1.0f, seed), std::vector<float>(count, 0.0f),
                      std::vector<float>(count, 0.0f)};
  AdamDevice device(ref_state);
  DeviceBuffer<long long> d_step(1);
  TestStream stream;
  for (long long step = 1; step <= 3; ++step) {
    const std::vector<float> grads = random_grads(count, seed + static_cast<uint32_t>(step));
    const DeviceBuffer<float> d_grads(grads);
    d_step.upload(std::vector<long long>{step});
    cuda::adam_step(n, hyper, d_step.data(), d_grads.data(), device.params.data(), device.m.data(),
                    device.v.data(), stream.get());
    stream.sync();
    ref::adam_step<float>(n, hyper, step, grads.data(), ref_state.params.data(), ref_state.m.data(),
                          ref_state.v.data());
  }
  expect_adam_states_near(device.download(count), ref_state);
}

// Sizes around one block and a tail, plus one larger than the capped grid covers in a sweep
// (2112 blocks x 256 threads = 540,672), so the grid-stride loop takes several turns.
const int64_t kAdamSizes[] = {1, 3, 255, 256, 257, 4097, 1'500'001};

TEST(AdamStep, MatchesReferenceOverThreeSteps) {
  VAE_REQUIRE_GPU();
  uint32_t seed = 1;
  for (int64_t n : kAdamSizes) {
    SCOPED_TRACE("n " + std::to_string(n));
    check_three_steps(n, plain_adam(), seed++);
  }
}

TEST(AdamStep, L2WeightDecayMatchesReference) {
  VAE_REQUIRE_GPU();
  uint32_t seed = 100;
  for (int64_t n : kAdamSizes) {
    SCOPED_TRACE("n " + std::to_string(n));
    check_three_steps(n, adam_l2(), seed++);
  }
}

TEST(AdamStep, AdamWMatchesReference) {
  VAE_REQUIRE_GPU();
  uint32_t seed = 200;
  for (int64_t n : kAdamSizes) {
    SCOPED_TRACE("n " + std::to_string(n));
    check_three_steps(n, adamw(), seed++);
  }
}

TEST(AdamStep, ReadsTheStepFromDeviceMemory) {
  VAE_REQUIRE_GPU();
  // Mid-training moments, so that only the bias corrections (the step) tell steps 1 and 5 apart.
  const int64_t n = 1000;
  const size_t count = static_cast<size_t>(n);
  const AdamState start{uniform_floats(count, -1.0f, 1.0f, 11), uniform_floats(count, -0.1f, 0.1f, 12),
                        uniform_floats(count, 0.0f, 0.01f, 13)};
  const std::vector<float> grads = random_grads(count, 14);
  const DeviceBuffer<float> d_grads(grads);
  const AdamHyper hyper = plain_adam();
  TestStream stream;

  auto run_at = [&](long long step) {
    AdamDevice device(start);
    const DeviceBuffer<long long> d_step(std::vector<long long>{step});
    cuda::adam_step(n, hyper, d_step.data(), d_grads.data(), device.params.data(), device.m.data(), device.v.data(),
                    stream.get());
    stream.sync();
    AdamState expected = start;
    ref::adam_step<float>(n, hyper, step, grads.data(), expected.params.data(), expected.m.data(),
                          expected.v.data());
    const AdamState got = device.download(count);
    expect_adam_states_near(got, expected);
    return got.params;
  };

  const std::vector<float> after_step_1 = run_at(1);
  const std::vector<float> after_step_5 = run_at(5);
  size_t differ = 0;
  for (size_t i = 0; i < count; ++i) differ += after_step_1[i] != after_step_5[i];
  EXPECT_GT(differ, count / 2) << "the step number must change the update";
}

}  // namespace
}  // namespace vae
