// `vae_cuda --evaluate CKPT --data-dir DIR`: the figures of evaluation.hpp for a checkpoint on a
// split of MNIST-format data, printed as a summary, optionally written as JSON, with a PNG of latent
// traversals of the active dimensions.
#pragma once

#include <cstdint>
#include <string>

#include "vae/config.hpp"

namespace vae {

inline constexpr int kTraversalSteps = 11;         // values of each traversed dimension, -3 to 3
inline constexpr float kTraversalExtent = 3.0f;

struct EvaluateOptions {
  std::string checkpoint;
  std::string data_dir;
  bool train_split = false;      // --split train; the test split otherwise
  int importance_samples = 100;  // K
  uint64_t seed = 1;             // of the importance samples' eps
  std::string json_file;         // every figure, per image and per dimension; empty: none
  std::string out_png;           // the latent traversal
  int traverse_image = 0;        // the image of the split whose posterior mean is traversed
  DeviceChoice device = DeviceChoice::kAuto;  // the GPU when there is one, else the CPU reference
  bool progress = true;
};

// Throws vae::UsageError for a bad option value, vae::Error for a bad checkpoint, data folder or
// images of another shape than the model's, each naming the file or flag.
void run_evaluate(const EvaluateOptions& options);

}  // namespace vae
