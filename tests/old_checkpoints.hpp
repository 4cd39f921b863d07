// Checkpoint metadata as older builds wrote it, for the tests that read old files: version 1 had
// neither the training data's identity nor the model options of version 3, version 2 had the data's
// identity only, and both named the epoch's reconstruction sum epoch_bce.
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

// Version 2 recorded the training data but not the model options, the schedule or its state.
inline void make_version2_metadata(nlohmann::json& metadata) {
  metadata["format_version"] = "2";
  for (const char* key : {"activation", "negative_slope", "batch_norm", "encoder_output", "likelihood", "alpha",
                          "lr_schedule", "plateau_factor", "plateau_patience", "plateau_threshold", "plateau_cooldown",
                          "plateau_min_lr", "plateau_eps", "plateau_best", "plateau_num_bad_epochs",
                          "plateau_cooldown_counter", "plateau_last_epoch", "plateau_lr"})
    metadata.erase(key);
  if (metadata.contains("epoch_reconstruction")) {
    metadata["epoch_bce"] = metadata["epoch_reconstruction"];
    metadata.erase("epoch_reconstruction");
  }
}

}  // namespace vae::testing_support
