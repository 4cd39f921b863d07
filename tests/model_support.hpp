// Small models for the tests that decode, encode or evaluate: their weights from init_params, the
// seed series' options in miniature, and BatchNorm running statistics far from their initial values.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "vae/config.hpp"
#include "vae/layout.hpp"

namespace vae::testing_support {

inline std::vector<float> initial_params(const ModelConfig& model, uint64_t seed) {
  const ParamLayout layout = make_layout(model);
  std::vector<float> params(static_cast<size_t>(layout.total));
  init_params(layout, seed, params.data());
  return params;
}

// The seed's VAE in miniature: BatchNorm, LeakyReLU(0.1), the extra encoder layer, the Gaussian likelihood.
inline ModelConfig small_seed_model(int latent) {
  ModelConfig m;
  m.hidden = {24, 12};
  m.encoder_output = 5;
  m.latent = latent;
  m.batch_norm = true;
  m.activation = Activation::kLeakyReLU;
  m.negative_slope = 0.1f;
  m.likelihood = Likelihood::kGaussian;
  m.alpha = 32.0f;
  return m;
}

// Running statistics far from the initial mean 0 / variance 1, so evaluation mode shows in the output.
inline std::vector<float> odd_running_stats(const ModelConfig& model, uint32_t seed) {
  const ParamLayout layout = make_layout(model);
  std::vector<float> running(static_cast<size_t>(layout.running_total), 0.0f);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mean(-0.5f, 0.5f), variance(0.2f, 3.0f);
  for (const LinearSlot& l : layout.layers) {
    if (!l.batch_norm) continue;
    for (int i = 0; i < l.out; ++i) {
      running[l.running_mean_offset + i] = mean(rng);
      running[l.running_var_offset + i] = variance(rng);
    }
  }
  return running;
}

}  // namespace vae::testing_support
