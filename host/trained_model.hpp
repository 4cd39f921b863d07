// A checkpoint as the commands that decode from it use it (--sample, --interpolate, --latent-map,
// --evaluate, --serve): the model, its weights and BatchNorm statistics, and the image shape it was
// trained on, with the one check of a data split against that shape.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "vae/checkpoint.hpp"
#include "vae/config.hpp"
#include "vae/idx.hpp"

namespace vae {

struct TrainedModel {
  ModelConfig model;
  std::vector<float> params;         // [make_layout(model).total], as read_checkpoint sizes them
  std::vector<float> running_stats;  // BatchNorm's
  int rows = 0, cols = 0;            // of the images it was trained on; 0 when not recorded (version 1)
};

// The parts of a checkpoint read by read_checkpoint (and its checks) that decoding needs.
TrainedModel trained_model(Checkpoint&& checkpoint);
TrainedModel load_trained_model(const std::filesystem::path& checkpoint);

// Throws vae::Error "DATA_DIR: SPLIT images are RxC, the model in CHECKPOINT was trained on RxC" (for
// a version-1 checkpoint, which records only its pixel count: "... have RxC pixels, ... takes N").
void check_images_fit(const TrainedModel& trained, const MnistSplit& split, const std::string& data_dir,
                      const std::string& checkpoint, const std::string& split_name);

}  // namespace vae
