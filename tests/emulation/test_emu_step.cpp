// The whole training step in emulation: the step of vae_step.hpp over the CUDA backend's own adapter
// (cuda::StepOps, the real launchers, the kernels on the emulator, every buffer host memory of its
// exact size) follows the CPU reference backend step by step, evaluates as it does, and its NaN guard
// names the step a planted NaN first poisons.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "emulator.hpp"
#include "kernel_checks.hpp"
#include "test_support.hpp"
#include "vae/activation_layout.hpp"
#include "vae/config.hpp"
#include "vae/cuda_step_ops.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/layout.hpp"
#include "vae/noise_streams.hpp"
#include "vae/reference_backend.hpp"
#include "vae/vae_step.hpp"

namespace vae {
namespace {

using testing_support::disc_split;

// The CUDA backend's step state, on host memory: what CudaBackend allocates on the device.
class EmulatedTraining {
 public:
  EmulatedTraining(const TrainConfig& config, int max_rows)
      : layout_(make_layout(config.model)), activation_layout_(make_activation_layout(layout_, max_rows)) {
    params_.assign(static_cast<size_t>(layout_.total), 0.0f);
    init_params(layout_, config.seed, params_.data());
    grads_.assign(params_.size(), 0.0f);
    adam_m_.assign(params_.size(), 0.0f);
    adam_v_.assign(params_.size(), 0.0f);
    activations_.assign(static_cast<size_t>(activation_layout_.total), 0.0f);
    running_stats_.assign(static_cast<size_t>(layout_.running_total), 0.0f);
    init_running_stats(layout_, running_stats_.data());
    const cuda::GemmWorkspaceSize gemm =
        cuda::model_workspace_size(layout_, max_rows, config.precision, emu::kMultiprocessors);
    gemm_.assign(static_cast<size_t>(gemm.floats), 0.0f);
    tile_counters_.assign(static_cast<size_t>(gemm.counters), 0u);
    loss_scratch_.assign(static_cast<size_t>(cuda::loss_scratch_doubles(max_rows, config.model.input)), 0.0);
    pixels_.assign(static_cast<size_t>(max_rows) * config.model.input, 0);
    ops_.param_layout = &layout_;
    ops_.act_layout = &activation_layout_;
    ops_.params = params_.data();
    ops_.grads = grads_.data();
    ops_.adam_m = adam_m_.data();
    ops_.adam_v = adam_v_.data();
    ops_.activations = activations_.data();
    ops_.running_stats = running_stats_.empty() ? nullptr : running_stats_.data();
    ops_.gemm = cuda::GemmWorkspace{gemm_.data(), gemm.floats, tile_counters_.data(), gemm.counters};
    ops_.loss_scratch = loss_scratch_.data();
    ops_.totals = totals_;
    ops_.step = &step_;
    ops_.adam_coefficients = &adam_coefficients_;
    ops_.first_bad_step = &first_bad_step_;
    ops_.noise_stream = &noise_stream_;
    ops_.pixels = pixels_.data();
    ops_.precision = config.precision;
    ops_.seed = config.seed;
    ops_.beta = config.model.beta;
    ops_.likelihood = config.model.likelihood;
    ops_.alpha = config.model.alpha;
    ops_.adam = config.adam;
  }

  // One training step on rows images; returns this step's loss sums.
  LossSums train_step(const uint8_t* images, int rows) {
    std::copy_n(images, static_cast<size_t>(rows) * layout_.layers[0].in, pixels_.begin());
    totals_[0] = totals_[1] = 0;
    step::training_step(ops_, rows);
    return LossSums{totals_[0], totals_[1]};
  }

  // Mean loss per image over `count` images, ε keyed by the epoch as CudaBackend::evaluate keys it.
  double evaluate(const std::vector<uint8_t>& images, int count, int batch, int epoch) {
    totals_[0] = totals_[1] = 0;
    const size_t image = static_cast<size_t>(layout_.layers[0].in);
    for (int first = 0, b = 0; first < count; first += batch, ++b) {
      const int rows = std::min(batch, count - first);
      std::copy_n(images.data() + first * image, rows * image, pixels_.begin());
      cuda::set_noise_stream(eval_stream(static_cast<uint64_t>(epoch), static_cast<uint64_t>(b)), &noise_stream_,
                             nullptr);
      step::evaluate(ops_, rows);
    }
    return (totals_[0] + ops_.beta * totals_[1]) / count;
  }

  std::vector<float>& params() { return params_; }
  const std::vector<float>& running_stats() const { return running_stats_; }
  // Everything a step leaves behind for the next, to compare runs bit for bit.
  std::vector<float> state() const {
    std::vector<float> all = params_;
    all.insert(all.end(), adam_m_.begin(), adam_m_.end());
    all.insert(all.end(), adam_v_.begin(), adam_v_.end());
    all.insert(all.end(), running_stats_.begin(), running_stats_.end());
    return all;
  }
  const ParamLayout& layout() const { return layout_; }
  long long first_bad_step() const { return first_bad_step_; }

 private:
  ParamLayout layout_;
  ActivationLayout activation_layout_;
  std::vector<float> params_, grads_, adam_m_, adam_v_, activations_, running_stats_, gemm_;
  std::vector<unsigned> tile_counters_;
  std::vector<double> loss_scratch_;
  std::vector<uint8_t> pixels_;
  double totals_[2] = {0, 0};
  long long step_ = 0, first_bad_step_ = 0;
  uint64_t noise_stream_ = 0;
  AdamCoefficients<float> adam_coefficients_{};
  cuda::StepOps ops_;
};

// Relative L2 distance of each tensor, the largest over the model (its tensor's name in *where). A
// linear layer's bias before a BatchNorm is left out: the BatchNorm removes it from the loss, so its
// gradient is rounding noise, which Adam scales to steps that no two summation orders share.
double worst_tensor_difference(const ParamLayout& layout, const std::vector<float>& a, const std::vector<float>& b,
                               std::string* where = nullptr) {
  double worst = 0;
  for (const LinearSlot& l : layout.layers)
    for (auto [offset, size] : {std::pair{l.weight_offset, static_cast<int64_t>(l.in) * l.out},
                                std::pair{l.bias_offset, l.batch_norm ? 0 : static_cast<int64_t>(l.out)},
                                std::pair{l.bn_weight_offset, l.batch_norm ? static_cast<int64_t>(l.out) : 0},
                                std::pair{l.bn_bias_offset, l.batch_norm ? static_cast<int64_t>(l.out) : 0}}) {
      double diff = 0, norm = 0;
      for (int64_t i = offset; i < offset + size; ++i) {
        diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        norm += static_cast<double>(b[i]) * b[i];
      }
      const double relative = std::sqrt(diff / std::max(norm, 1e-30));
      if (size > 0 && relative > worst) {
        worst = relative;
        if (where != nullptr) *where = l.name + (offset == l.weight_offset ? " weight" : " other");
      }
    }
  return worst;
}

// The same for BatchNorm's running statistics (0 without BatchNorm).
double worst_running_difference(const ParamLayout& layout, const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (const LinearSlot& l : layout.layers)
    for (int64_t offset : {l.running_mean_offset, l.running_var_offset}) {
      if (offset < 0) continue;
      double diff = 0, norm = 0;
      for (int64_t i = offset; i < offset + l.out; ++i) {
        diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        norm += static_cast<double>(b[i]) * b[i];
      }
      worst = std::max(worst, std::sqrt(diff / std::max(norm, 1e-30)));
    }
  return worst;
}

struct FollowCase {
  const char* name;
  std::vector<int> hidden;
  int latent;
  Precision precision;
  int steps;
  double loss_tolerance, weight_tolerance;  // relative: each step's loss, then each tensor (L2) at the end
  // The seed's options (ModelConfig's defaults otherwise).
  Activation activation = Activation::kReLU;
  float negative_slope = 0.01f;
  int encoder_output = 0;
  Likelihood likelihood = Likelihood::kBernoulli;
  float alpha = 1.0f;
  bool batch_norm = false;
  int batch = 128;
  double adam_eps = 1e-8;
  double running_tolerance = 1e-3;  // relative (L2) per running statistic at the end
};

ModelConfig model_of(const FollowCase& c) {
  ModelConfig model;
  model.hidden = c.hidden;
  model.latent = c.latent;
  model.activation = c.activation;
  model.negative_slope = c.negative_slope;
  model.encoder_output = c.encoder_output;
  model.likelihood = c.likelihood;
  model.alpha = c.alpha;
  model.batch_norm = c.batch_norm;
  return model;
}

// The launches a training step may take: one forward and one backward per linear layer, and one
// more per BatchNorm layer (its backward).
long long launch_budget(const ParamLayout& layout) {
  long long launches = 0;
  for (const LinearSlot& l : layout.layers) launches += 2 + (l.batch_norm ? 1 : 0);
  return launches;
}

// Each step's loss, then the weights, against the reference, with the GPU tests' tolerances
// (tests/test_cuda_training_gpu.cpp): FP32 on both sides, different summation orders. TF32 rounds
// every GEMM input to 10 mantissa bits, so its bounds are ten times looser. The last step is a
// partial batch, as an epoch's last is.
void follow_reference(const FollowCase& c) {
  TrainConfig config;
  config.model = model_of(c);
  config.precision = c.precision;
  config.batch = c.batch;
  config.adam.eps = c.adam_eps;
  const int batch = config.batch, last_rows = 97;
  const std::vector<uint8_t> images = disc_split((c.steps - 1) * batch + last_rows, 7).pixels;
  EmulatedTraining emulated(config, batch);
  ReferenceBackend reference(config);
  for (int s = 0; s < c.steps; ++s) {
    const int rows = s + 1 < c.steps ? batch : last_rows;
    const uint8_t* batch_images = images.data() + static_cast<size_t>(s) * batch * 784;
    const long long launches_before = emu::launch_count();
    const LossSums got = emulated.train_step(batch_images, rows);
    if (s == 0) {
      const long long launches = emu::launch_count() - launches_before;
      std::printf("%s: kernels per training step: %lld\n", c.name, launches);
      // One forward and one backward launch per linear layer, one more per BatchNorm layer, nothing else.
      EXPECT_EQ(launches, launch_budget(emulated.layout())) << c.name;
    }
    const LossSums before = reference.epoch_sums();
    reference.train_step(batch_images, rows);
    const LossSums after = reference.epoch_sums();
    const double expected = (after.reconstruction - before.reconstruction) + config.model.beta * (after.kl - before.kl);
    const double loss = got.reconstruction + config.model.beta * got.kl;
    ASSERT_NEAR(loss, expected, c.loss_tolerance * std::fabs(expected)) << c.name << ", step " << s + 1;
  }
  std::string worst_tensor;
  EXPECT_LT(worst_tensor_difference(emulated.layout(), emulated.params(), reference.parameters(), &worst_tensor),
            c.weight_tolerance)
      << c.name << ", " << worst_tensor;
  EXPECT_EQ(emulated.first_bad_step(), 0);
  if (c.batch_norm) {
    EXPECT_LT(worst_running_difference(emulated.layout(), emulated.running_stats(), reference.state().running_stats),
              c.running_tolerance)
        << c.name << ": running statistics";
    // Evaluation normalises by the running statistics: two full batches and a partial one.
    const int count = 2 * batch + 13;
    const MnistSplit split = disc_split(count, 3);
    const double expected = reference.evaluate(split, 2).loss;
    EXPECT_NEAR(emulated.evaluate(split.pixels, count, batch, 2), expected, c.loss_tolerance * std::fabs(expected))
        << c.name << ": evaluation";
  }
}

TEST(EmulatedStep, DefaultModelFollowsTheReferenceFor20Steps) {
  follow_reference({"784-400-20 fp32", {400}, 20, Precision::kFp32, 20, 1e-3, 1e-3});
}

TEST(EmulatedStep, DeeperModelFollowsTheReferenceFor5Steps) {
  follow_reference({"784-512-256-2 fp32", {512, 256}, 2, Precision::kFp32, 5, 1e-3, 1e-3});
}

// The seed's options that ride on the fused launches as they are: LeakyReLU, the encoder's extra
// linear layer (the head is no longer (layers - 1) / 2), the Gaussian likelihood (Tanh, alpha times
// the mean squared error, the batch mean: gradient and KL weight at 1 / rows).
TEST(EmulatedStep, SeedOptionsWithoutBatchNormFollowTheReference) {
  FollowCase c{"784-96-48(-32)-16 leaky gaussian fp32", {96, 48}, 16, Precision::kFp32, 5, 1e-3, 1e-3};
  c.activation = Activation::kLeakyReLU;
  c.negative_slope = 0.1f;
  c.encoder_output = 32;
  c.likelihood = Likelihood::kGaussian;
  c.alpha = 1024.0f;
  c.batch = 144;
  follow_reference(c);
  c.name = "784-96-48(-32)-16 leaky gaussian tf32";
  c.precision = Precision::kTf32;
  c.steps = 3;
  c.loss_tolerance = c.weight_tolerance = 1e-2;
  follow_reference(c);
}

// The seed's model in small: BatchNorm1d after every hidden linear layer (its forward on the layer's
// launch, its backward one launch more), with LeakyReLU, the encoder's extra layer and the Gaussian
// likelihood; the running statistics and the evaluation after training too. Adam's eps is 1e-3 here:
// a BatchNorm removes its linear layer's bias from the loss (and the first layer's weights of pixels
// that are constant across the batch act as biases), so their gradients are 0 up to rounding, and
// with eps 1e-8 Adam turns that rounding noise into full steps of either sign, which no two
// summation orders share (PyTorch's float32 and float64 differ there alike). A larger eps keeps
// those steps negligible and every other update an Adam update.
FollowCase seed_like(Precision precision, int steps, double tolerance) {
  FollowCase c{precision == Precision::kTf32 ? "784-96-48(-32)-16 batchnorm leaky gaussian tf32"
                                             : "784-96-48(-32)-16 batchnorm leaky gaussian fp32",
               {96, 48}, 16, precision, steps, tolerance, tolerance};
  c.activation = Activation::kLeakyReLU;
  c.negative_slope = 0.1f;
  c.encoder_output = 32;
  c.likelihood = Likelihood::kGaussian;
  c.alpha = 1024.0f;
  c.batch_norm = true;
  c.batch = 144;
  c.adam_eps = 1e-3;
  return c;
}

// TF32 rounds dL/dh of each BatchNorm to 10 bits before the dx product below it, so sums that
// BatchNorm makes cancel (the dbeta of the layer below, the pre-BatchNorm biases) cancel only to
// about 1e-3 there, and Adam scales that noise to steps of a good fraction of lr: the first
// layer's beta ends about 10% (L2) off the FP32 reference's after 3 steps even with eps 1e-2. So in
// TF32 the per-step losses (1e-2) and the evaluation are the check; the tensors only have to stay
// within 20%, the running statistics within 5%.
TEST(EmulatedStep, SeedLikeModelWithBatchNormFollowsTheReference) {
  follow_reference(seed_like(Precision::kFp32, 5, 1e-3));
  FollowCase tf32 = seed_like(Precision::kTf32, 3, 1e-2);
  tf32.adam_eps = 1e-2;
  tf32.weight_tolerance = 0.2;
  tf32.running_tolerance = 5e-2;
  follow_reference(tf32);
}

TEST(EmulatedStep, Tf32StepsFollowTheReferenceLoosely) {
  follow_reference({"784-400-20 tf32", {400}, 20, Precision::kTf32, 3, 1e-2, 1e-2});
}

// Same seed, same bits: the state after a few steps (a partial batch last) and every step's sums are
// identical run to run, and also when the blocks run in a shuffled order, so that different blocks
// arrive last at each split-K tile, row of tiles and backward launch.
void expect_same_bits_in_any_block_order(Precision precision, int steps, const ModelConfig& model = ModelConfig{}) {
  TrainConfig config;
  config.model = model;
  config.precision = precision;
  const int batch = config.batch;
  const std::vector<uint8_t> images = disc_split(steps * batch, 11).pixels;
  auto run = [&](uint64_t block_order) {
    emu::set_block_order(block_order);
    EmulatedTraining emulated(config, batch);
    std::vector<double> sums;
    for (int s = 0; s < steps; ++s) {
      const LossSums got = emulated.train_step(images.data() + static_cast<size_t>(s) * batch * 784,
                                               s + 1 < steps ? batch : 61);
      sums.insert(sums.end(), {got.reconstruction, got.kl});
    }
    emu::set_block_order(0);
    return std::pair{emulated.state(), sums};
  };
  const auto first = run(0);
  for (uint64_t order : {0, 12345}) {
    const auto again = run(order);
    EXPECT_TRUE(kernel_checks::bitwise_equal(again.first, first.first)) << "block order " << order;
    EXPECT_TRUE(kernel_checks::bitwise_equal(again.second, first.second)) << "block order " << order;
  }
}

TEST(EmulatedStep, SameSeedSameBitsInAnyBlockOrderFp32) { expect_same_bits_in_any_block_order(Precision::kFp32, 3); }
TEST(EmulatedStep, SameSeedSameBitsInAnyBlockOrderTf32) { expect_same_bits_in_any_block_order(Precision::kTf32, 2); }
// BatchNorm's statistics (and with them the running statistics) included.
TEST(EmulatedStep, SeedLikeModelSameSeedSameBitsInAnyBlockOrder) {
  expect_same_bits_in_any_block_order(Precision::kFp32, 3, model_of(seed_like(Precision::kFp32, 3, 0)));
}

TEST(EmulatedStep, EvaluationMatchesTheReference) {
  TrainConfig config;
  const int count = 300;  // two full batches and a partial one
  const MnistSplit split = disc_split(count, 3);
  EmulatedTraining emulated(config, config.batch);
  ReferenceBackend reference(config);
  const double expected = reference.evaluate(split, 4).loss;
  EXPECT_NEAR(emulated.evaluate(split.pixels, count, config.batch, 4), expected, 1e-4 * expected);
}

// A NaN in a weight of the ReLU layer reaches the loss through the ReLU (which keeps NaN, as PyTorch's
// does) and the guard records the step it first poisoned; later finite-looking steps do not move it.
TEST(EmulatedStep, NanGuardNamesTheStepAPlantedNanPoisons) {
  TrainConfig config;
  const int rows = 16;
  const std::vector<uint8_t> images = disc_split(4 * rows, 5).pixels;
  EmulatedTraining emulated(config, rows);
  for (int s = 0; s < 2; ++s) emulated.train_step(images.data() + s * rows * 784, rows);
  EXPECT_EQ(emulated.first_bad_step(), 0);
  const LinearSlot& encoder = emulated.layout().layers[0];
  emulated.params()[encoder.weight_offset + 5 * encoder.in + 300] = std::numeric_limits<float>::quiet_NaN();
  for (int s = 2; s < 4; ++s) emulated.train_step(images.data() + s * rows * 784, rows);
  EXPECT_EQ(emulated.first_bad_step(), 3);
}

}  // namespace
}  // namespace vae
