// --evaluate's GPU path in emulation: the importance-rows kernel against importance_eps written out
// one value at a time, and the whole evaluation (evaluate_model over the launches of
// cuda_importance_ops.hpp that CudaEvaluation makes, the layers and the loss epilogue on the
// emulator) against the CPU reference's. Every buffer has its exact size, so ASan sees an overrun,
// such as a loss scratch that runs past the chunk's reconstruction buffer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "emulator.hpp"
#include "model_support.hpp"
#include "vae/activation_layout.hpp"
#include "vae/cuda_importance_ops.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/element_math.hpp"
#include "vae/evaluation.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/layout.hpp"

namespace vae {
namespace {

using testing_support::initial_params;
using testing_support::odd_running_stats;

// count images of side x side pixels: a bright blob on a noisy background, different in each image.
MnistSplit blob_split(int count, int side, uint32_t seed) {
  MnistSplit split;
  split.count = count;
  split.rows = split.cols = side;
  split.pixels.resize(static_cast<size_t>(count) * side * side);
  split.labels.assign(static_cast<size_t>(count), 0);
  std::mt19937 rng(seed);
  for (int i = 0; i < count; ++i) {
    const int cx = static_cast<int>(rng() % side), cy = static_cast<int>(rng() % side);
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x) {
        const int d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
        split.pixels[(static_cast<size_t>(i) * side + y) * side + x] =
            static_cast<uint8_t>(std::clamp(255 - 30 * d2 + static_cast<int>(rng() % 40), 0, 255));
      }
  }
  return split;
}

// CudaEvaluation's buffers on host memory, sized as it sizes them for `rows` decoded samples (the
// reconstruction buffer to what the chunk's loss scratch reaches), and its copies as plain ones.
class EmulatedEvaluation final : public EvaluationBackend {
 public:
  EmulatedEvaluation(const ModelConfig& model, std::vector<float> params, std::vector<float> running_stats,
                     const MnistSplit& split, int rows, int64_t chunk_samples)
      : EvaluationBackend(split.count),
        model_(model),
        layout_(make_layout(model)),
        activations_(make_activation_layout(layout_, rows)),
        split_(split),
        chunk_samples_(chunk_samples),
        params_(std::move(params)),
        running_stats_(std::move(running_stats)) {
    const cuda::GemmWorkspaceSize gemm =
        cuda::model_workspace_size_up_to(layout_, rows, Precision::kFp32, emu::kMultiprocessors);
    workspace_.assign(static_cast<size_t>(activations_.total), 0.0f);
    gemm_.assign(static_cast<size_t>(std::max<int64_t>(gemm.floats, 1)), 0.0f);
    tile_counters_.assign(static_cast<size_t>(std::max<int64_t>(gemm.counters, 1)), 0u);
    targets_.assign(static_cast<size_t>(rows) * model.input, 0);
    posteriors_.assign(static_cast<size_t>(rows) * 2 * model.latent, 0.0f);
    ops_.param_layout = &layout_;
    ops_.act_layout = &activations_;
    ops_.params = params_.data();
    ops_.activations = workspace_.data();
    ops_.running_stats = running_stats_.empty() ? nullptr : running_stats_.data();
    ops_.gemm = cuda::GemmWorkspace{gemm_.data(), gemm.floats, tile_counters_.data(), gemm.counters};
    ops_.totals = totals_;
    ops_.beta = model.beta;
    ops_.likelihood = model.likelihood;
    ops_.alpha = model.alpha;
  }

  std::string describe() const override { return "emulated"; }
  int max_images() const override { return activations_.rows; }
  int64_t chunk_samples() const override { return chunk_samples_; }

  void encode_images(int64_t first, int images, float* posteriors) override {
    cuda::encode_chunk(ops_, split_.pixels.data() + first * model_.input, images);
    std::copy_n(ops_.mu_logvar(), static_cast<size_t>(images) * 2 * model_.latent, posteriors_.begin());
    std::copy_n(posteriors_.begin(), static_cast<size_t>(images) * 2 * model_.latent, posteriors);
  }

  void weigh_samples(int64_t first, int images, int K, uint64_t seed, double* reconstruction,
                     double* log_ratio) override {
    const int64_t samples = static_cast<int64_t>(images) * K;
    // What the blocks' loss scratch reaches, exactly (CudaEvaluation rounds it up to a full block's
    // beyond the chunk's samples).
    int64_t reach = 0;
    for (int64_t f0 = 0; f0 < samples; f0 += activations_.rows)
      reach = std::max(reach, f0 + cuda::loss_scratch_doubles(static_cast<int>(std::min<int64_t>(activations_.rows, samples - f0)), model_.input));
    std::vector<double> sums(static_cast<size_t>(reach));
    std::vector<double> ratios(static_cast<size_t>(samples));
    totals_[0] = totals_[1] = 0;
    cuda::weigh_chunk(ops_, cuda::ImportanceChunk{.first = first,
                                                  .images = images,
                                                  .samples_per_image = K,
                                                  .seed = seed,
                                                  .pixels = split_.pixels.data() + first * model_.input,
                                                  .posteriors = posteriors_.data(),
                                                  .targets = targets_.data(),
                                                  .log_ratio = ratios.data(),
                                                  .reconstruction = sums.data()});
    std::copy_n(sums.begin(), samples, reconstruction);
    std::copy_n(ratios.begin(), samples, log_ratio);
    // The loss's running total is the chunk's reconstruction terms added up.
    double total = 0;
    for (int64_t f = 0; f < samples; ++f) total += sums[f];
    EXPECT_NEAR(totals_[0], total, 1e-9 * std::fabs(total));
  }

 private:
  ModelConfig model_;
  ParamLayout layout_;
  ActivationLayout activations_;
  const MnistSplit& split_;
  int64_t chunk_samples_;
  std::vector<float> params_, running_stats_, workspace_, gemm_, posteriors_;
  std::vector<unsigned> tile_counters_;
  std::vector<uint8_t> targets_;
  double totals_[2] = {0, 0};
  cuda::StepOps ops_;
};

// ---- the kernel ---------------------------------------------------------------------------------------

// A block of rows in the middle of a chunk that does not start the split: each row's z from the
// eps of its own image and sample, and the log-ratio from the normal densities' definitions.
TEST(ImportanceRows, DrawEachRowsOwnImageAndSample) {
  const int latent = 5, pixels = 7, K = 3, images = 4, rows = 8;
  const int64_t first_image = 1000, first_sample = 3;  // rows span image 1 (k = 0) .. image 3 (k = 1)
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> value(-1.5f, 1.5f);
  std::vector<float> posteriors(static_cast<size_t>(images) * 2 * latent);
  for (float& v : posteriors) v = value(rng);
  std::vector<uint8_t> image_pixels(static_cast<size_t>(images) * pixels);
  for (uint8_t& p : image_pixels) p = static_cast<uint8_t>(rng() % 256);
  std::vector<float> mu_logvar(static_cast<size_t>(rows) * 2 * latent), z(static_cast<size_t>(rows) * latent);
  std::vector<uint8_t> targets(static_cast<size_t>(rows) * pixels);
  std::vector<double> log_ratio(rows);
  const uint64_t seed = 77;
  cuda::importance_rows(cuda::ImportanceRows{.rows = rows,
                                             .latent = latent,
                                             .pixels = pixels,
                                             .samples_per_image = K,
                                             .first_sample = first_sample,
                                             .first_image = first_image,
                                             .seed = seed,
                                             .posteriors = posteriors.data(),
                                             .images = image_pixels.data(),
                                             .mu_logvar = mu_logvar.data(),
                                             .z = z.data(),
                                             .targets = targets.data(),
                                             .log_ratio = log_ratio.data()},
                        nullptr);
  for (int r = 0; r < rows; ++r) {
    const int c = static_cast<int>((first_sample + r) / K), k = static_cast<int>((first_sample + r) % K);
    const float* posterior = posteriors.data() + static_cast<size_t>(c) * 2 * latent;
    double expected_ratio = 0;
    for (int j = 0; j < latent; ++j) {
      const double mu = posterior[j], logvar = posterior[latent + j];
      const double eps = importance_eps(seed, first_image + c, k, j, latent);
      const float expected_z = reparam_sample(posterior[j], posterior[latent + j], static_cast<float>(eps));
      ASSERT_EQ(z[static_cast<size_t>(r) * latent + j], expected_z) << "row " << r << " dim " << j;
      // log N(z; 0, 1) - log N(z; mu, sigma^2) with sigma^2 = exp(logvar) and z - mu = sigma eps.
      const double zj = expected_z;
      expected_ratio += -0.5 * zj * zj - (-0.5 * logvar - 0.5 * (zj - mu) * (zj - mu) / std::exp(logvar));
    }
    EXPECT_NEAR(log_ratio[r], expected_ratio, 1e-5 * (1 + std::fabs(expected_ratio))) << "row " << r;
    EXPECT_TRUE(std::equal(posterior, posterior + 2 * latent, mu_logvar.begin() + static_cast<ptrdiff_t>(r) * 2 * latent))
        << "row " << r;
    EXPECT_TRUE(std::equal(image_pixels.begin() + static_cast<ptrdiff_t>(c) * pixels,
                           image_pixels.begin() + static_cast<ptrdiff_t>(c + 1) * pixels,
                           targets.begin() + static_cast<ptrdiff_t>(r) * pixels))
        << "row " << r;
  }
}

// ---- the whole evaluation ---------------------------------------------------------------------------

struct EvaluationCase {
  std::string name;
  ModelConfig model;
  bool odd_running = false;  // BatchNorm's running statistics far from their start (a BatchNorm model)
};

ModelConfig example_model(int latent) {
  ModelConfig m;
  m.input = 100;
  m.hidden = {32};
  m.latent = latent;
  return m;
}

ModelConfig seed_model() {
  ModelConfig m = testing_support::small_seed_model(3);
  m.input = 100;
  return m;
}

class EmulatedEvaluationMatches : public testing::TestWithParam<EvaluationCase> {};

// 11 images; a workspace of 8 rows and chunks of about 16 samples, so that with K = 1, 5 and 20
// the chunks hold 8, 3 and 1 images, blocks of rows span images, the last chunk and block are
// partial, and with K = 20 one image's samples take three blocks.
TEST_P(EmulatedEvaluationMatches, TheReferenceImageByImage) {
  const EvaluationCase& c = GetParam();
  const MnistSplit split = blob_split(11, 10, 4);
  const std::vector<float> params = initial_params(c.model, 21);
  const std::vector<float> running = c.odd_running ? odd_running_stats(c.model, 5) : std::vector<float>{};
  for (int K : {1, 5, 20}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    const uint64_t seed = 3;
    const Evaluation expected = evaluate_model(c.model, params, running, split, K, seed);
    EmulatedEvaluation backend(c.model, params, running, split, 8, 16);
    const Evaluation got = evaluate_model(c.model, backend, split, K, seed);
    ASSERT_EQ(got.images, split.count);
    const auto near = [](double a, double b) { return std::fabs(a - b) <= 2e-5 * (1 + std::fabs(b)); };
    for (int64_t i = 0; i < split.count; ++i) {
      EXPECT_PRED2(near, got.reconstruction[i], expected.reconstruction[i]) << "image " << i;
      EXPECT_PRED2(near, got.kl[i], expected.kl[i]) << "image " << i;
      EXPECT_PRED2(near, got.iwae[i], expected.iwae[i]) << "image " << i;
    }
    for (int j = 0; j < c.model.latent; ++j) {
      EXPECT_PRED2(near, got.kl_per_dim[j], expected.kl_per_dim[j]) << "dim " << j;
      EXPECT_PRED2(near, got.mu_variance[j], expected.mu_variance[j]) << "dim " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, EmulatedEvaluationMatches,
                         testing::Values(EvaluationCase{"example_latent3", example_model(3)},
                                         EvaluationCase{"example_latent4", example_model(4)},
                                         EvaluationCase{"seed_model", seed_model(), true}),
                         [](const testing::TestParamInfo<EvaluationCase>& info) { return info.param.name; });

}  // namespace
}  // namespace vae
