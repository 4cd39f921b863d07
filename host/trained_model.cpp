// TrainedModel: what the decoding commands keep of a checkpoint.
#include "trained_model.hpp"

#include <fmt/format.h>

#include "vae/error.hpp"

namespace vae {

TrainedModel trained_model(Checkpoint&& checkpoint) {
  TrainedModel trained{checkpoint.config.model, std::move(checkpoint.state.params),
                       std::move(checkpoint.state.running_stats)};
  if (checkpoint.data) {
    trained.rows = checkpoint.data->rows;
    trained.cols = checkpoint.data->cols;
  }
  return trained;
}

TrainedModel load_trained_model(const std::filesystem::path& checkpoint) {
  return trained_model(read_checkpoint(checkpoint));
}

void check_images_fit(const TrainedModel& trained, const MnistSplit& split, const std::string& data_dir,
                      const std::string& checkpoint, const std::string& split_name) {
  if (trained.rows == 0 && split.image_size() != trained.model.input)
    throw Error(fmt::format("{}: {} images have {}x{} pixels, the model in {} takes {}", data_dir, split_name,
                            split.rows, split.cols, checkpoint, trained.model.input));
  if (trained.rows != 0 && (split.rows != trained.rows || split.cols != trained.cols))
    throw Error(fmt::format("{}: {} images are {}x{}, the model in {} was trained on {}x{}", data_dir, split_name,
                            split.rows, split.cols, checkpoint, trained.rows, trained.cols));
}

}  // namespace vae
