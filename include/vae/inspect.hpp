// The commands that look inside a trained model: random samples, a walk between two test images in
// latent space, and the map of a 2-D latent plane. Each reads a checkpoint, decodes on the CPU
// reference model and writes one PNG, so none needs a GPU or the training data (but --interpolate,
// which shows two test images). Images are drawn at the rows x cols the checkpoint records.
#pragma once

#include <cstdint>
#include <string>

namespace vae {

struct InspectOptions {
  std::string checkpoint;      // the checkpoint to read
  std::string data_dir;        // MNIST-format data whose test images --interpolate shows; unused otherwise
  std::string out_png;         // the PNG to write
  uint64_t seed = 1;           // of the latents --sample draws
  int pair_i = 0, pair_j = 1;  // --pair I,J: test image indices
  int steps = 10;              // images along the interpolation line, ends included
  // --interpolate-z sampled: the line's ends are z = mu + sigma * eps drawn from each image's
  // posterior (eps from sample_latents(seed, ...)), as the seed's interpolate does, not the means.
  bool sampled_ends = false;
  int grid = 8;                // samples and latent map: grid x grid
};

// grid x grid decodes of z ~ N(0, I), the latents of sample_latents(seed, ...).
void run_sample(const InspectOptions& options);

// One row: test image i, decode((1 - t) z_i + t z_j) for `steps` values of t evenly over [0, 1],
// then test image j; z is the posterior mean mu, or with sampled_ends a draw from the posterior.
void run_interpolate(const InspectOptions& options);

// For a model with latent 2: decodes of the grid x grid points of z in [-3, 3]^2, z1 increasing to
// the right and z2 decreasing downwards, as a plot's axes run. Other models are a vae::UsageError.
void run_latent_map(const InspectOptions& options);

}  // namespace vae
