// --evaluate on the GPU (CudaEvaluation) against the CPU reference's evaluation of the same model,
// images and ε: every image's reconstruction, KL and bound, and every dimension's KL and variance,
// to 1e-4 relative (the device's expf and cuRAND's normals differ from the CPU's in the last bits).
// Several chunks of many images and of few run (K = 150 and 5000); under tools/gpu-check.sh's
// compute-sanitizer passes (VAE_GPU_TEST_QUICK) one chunk of three blocks of samples.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu_test_support.hpp"
#include "model_support.hpp"
#include "test_support.hpp"
#include "vae/cuda_evaluation.hpp"
#include "vae/error.hpp"
#include "vae/evaluation.hpp"

namespace vae {
namespace {

using testing_support::disc_split;
using testing_support::initial_params;
using testing_support::odd_running_stats;

bool quick() { return std::getenv("VAE_GPU_TEST_QUICK") != nullptr; }

void expect_same_evaluation(const ModelConfig& model, const std::vector<float>& params,
                            const std::vector<float>& running, const MnistSplit& split, int K) {
  SCOPED_TRACE("K = " + std::to_string(K));
  const Evaluation cpu = evaluate_model(model, params, running, split, K, 11);
  CudaEvaluation backend(model, params, running, split);
  const Evaluation gpu = evaluate_model(model, backend, split, K, 11);
  const auto near = [](double a, double b) { return std::fabs(a - b) <= 1e-4 * (1 + std::fabs(b)); };
  for (int64_t i = 0; i < split.count; ++i) {
    EXPECT_PRED2(near, gpu.reconstruction[i], cpu.reconstruction[i]) << "image " << i;
    EXPECT_PRED2(near, gpu.kl[i], cpu.kl[i]) << "image " << i;
    EXPECT_PRED2(near, gpu.iwae[i], cpu.iwae[i]) << "image " << i;
  }
  for (int j = 0; j < model.latent; ++j) {
    EXPECT_PRED2(near, gpu.kl_per_dim[j], cpu.kl_per_dim[j]) << "dim " << j;
    EXPECT_PRED2(near, gpu.mu_variance[j], cpu.mu_variance[j]) << "dim " << j;
  }
}

TEST(CudaEvaluation, DefaultModelMatchesTheReference) {
  VAE_REQUIRE_GPU();
  const ModelConfig model;  // 784-400-20, Bernoulli
  const std::vector<float> params = initial_params(model, 3);
  if (quick()) {
    expect_same_evaluation(model, params, {}, disc_split(40, 5), 250);  // 10000 samples: 4096, 4096, 1808
    return;
  }
  expect_same_evaluation(model, params, {}, disc_split(600, 5), 150);  // two chunks of many images
  expect_same_evaluation(model, params, {}, disc_split(20, 6), 5000);  // chunks of 13 images, then 7
}

TEST(CudaEvaluation, SeedModelWithBatchNormMatchesTheReference) {
  VAE_REQUIRE_GPU();
  const ModelConfig model = testing_support::small_seed_model(7);
  expect_same_evaluation(model, initial_params(model, 4), odd_running_stats(model, 8),
                         disc_split(quick() ? 60 : 300, 7), 40);
}

TEST(CudaEvaluation, RefusesParametersOfAnotherModel) {
  VAE_REQUIRE_GPU();
  const ModelConfig model;
  std::vector<float> params = initial_params(model, 3);
  params.pop_back();
  EXPECT_THROW(CudaEvaluation(model, params, {}, disc_split(4, 1)), Error);
}

}  // namespace
}  // namespace vae
