// --evaluate's launches on the CUDA backend's adapter (cuda_step_ops.hpp): a chunk of images through
// the encoder, then all of its importance samples weighed in blocks of the workspace's rows. Launches
// only, like StepOps, so that the emulation tests run these very functions on host memory; the
// copies in and out are the caller's (CudaEvaluation, or the test).
#pragma once

#include <algorithm>
#include <cstdint>

#include "vae/cuda_ops.hpp"
#include "vae/cuda_step_ops.hpp"
#include "vae/error.hpp"
#include "vae/vae_step.hpp"

namespace vae::cuda {

// The chunk's images [images, input] (images at most the workspace's rows) through the encoder and
// the head, in evaluation mode: their posteriors are then at ops.mu_logvar().
inline void encode_chunk(StepOps ops, const uint8_t* pixels, int images) {
  ops.pixels = pixels;
  step::encode(ops, images);
}

// A chunk's importance samples: sample f = c K + k is image c's sample k.
struct ImportanceChunk {
  int64_t first = 0;  // the chunk's first image in the split, which keys the images' ε
  int images = 0;
  int samples_per_image = 0;  // K
  uint64_t seed = 0;
  const uint8_t* pixels = nullptr;    // the chunk's images [images, input]
  const float* posteriors = nullptr;  // their mu ‖ logvar [images, 2 latent], copied out of the workspace
  uint8_t* targets = nullptr;         // [workspace rows, input]: each decoded row's image
  double* log_ratio = nullptr;        // [images K] out: log p(z_f) - log q(z_f | x)
  // [images K + loss_scratch_doubles(workspace rows, input)] out: the first images K are each
  // sample's reconstruction term, the rest is the loss's scratch.
  double* reconstruction = nullptr;
};

// Every sample of the chunk, in blocks of the workspace's rows: the block's z and log-ratios
// (importance_rows), then the decoder with the loss's sums on the output layer, added to ops.totals
// (which must be set; vae::Error otherwise). The loss leaves its rows' reconstruction sums at the start of its scratch,
// so a scratch that starts at the block's place in chunk.reconstruction puts them where they
// belong; the block's KL and partial sums after them are overwritten by the next block's.
inline void weigh_chunk(StepOps ops, const ImportanceChunk& chunk) {
  // Without totals the output layer's launch has no loss epilogue, and nothing would be weighed.
  if (ops.totals == nullptr || chunk.reconstruction == nullptr || chunk.log_ratio == nullptr)
    throw Error("weigh_chunk: the loss totals, reconstruction and log-ratio buffers must be set");
  const int max_rows = ops.act_layout->rows, input = ops.param_layout->layers.front().in;
  const int64_t samples = static_cast<int64_t>(chunk.images) * chunk.samples_per_image;
  ops.pixels = chunk.targets;
  for (int64_t f0 = 0; f0 < samples; f0 += max_rows) {
    const int rows = static_cast<int>(std::min<int64_t>(max_rows, samples - f0));
    importance_rows(ImportanceRows{.rows = rows,
                                   .latent = ops.act_layout->latent,
                                   .pixels = input,
                                   .samples_per_image = chunk.samples_per_image,
                                   .first_sample = f0,
                                   .first_image = chunk.first,
                                   .seed = chunk.seed,
                                   .posteriors = chunk.posteriors,
                                   .images = chunk.pixels,
                                   .mu_logvar = ops.mu_logvar(),
                                   .z = ops.at(ops.act_layout->z),
                                   .targets = chunk.targets,
                                   .log_ratio = chunk.log_ratio + f0},
                    ops.stream);
    ops.loss_scratch = chunk.reconstruction + f0;
    step::decode(ops, rows, step::LossWork::kSums);
  }
}

}  // namespace vae::cuda
