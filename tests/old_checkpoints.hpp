// Checkpoint metadata as older builds wrote it, for the tests that read old files: version 1 had
// neither the training data's identity nor the model options of version 3, and named the epoch's
// reconstruction sum epoch_bce.
#pragma once

#include <nlohmann/json.hpp>

namespace vae::testing_support {

inline void make_version1_metadata(nlohmann::json& metadata) {
  metadata["format_version"] = "1";
  for (const char* key : {"image_rows", "image_cols", "train_count", "train_images_xxh3", "train_labels_xxh3",
                          "activation", "negative_slope", "batch_norm", "encoder_output", "likelihood", "alpha"})
    metadata.erase(key);
  if (metadata.contains("epoch_reconstruction")) {
    metadata["epoch_bce"] = metadata["epoch_reconstruction"];
    metadata.erase("epoch_reconstruction");
  }
}

}  // namespace vae::testing_support
