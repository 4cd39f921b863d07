// Checkpoints in the safetensors format: an 8-byte little-endian header length, a JSON header naming
// every tensor (dtype, shape, data_offsets) with the run's config in __metadata__, then the raw data.
// One file holds the weights (under PyTorch's VAE-example names for the default model, so PyTorch
// loads them as a state_dict), Adam's moments and step, the position in the data and what identifies
// that data, so that one file resumes a run exactly and refuses other data. Writing never replaces a
// good file with a half-written one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vae/config.hpp"
#include "vae/data_identity.hpp"
#include "vae/layout.hpp"
#include "vae/training_state.hpp"

namespace vae {

// Where in the data the run stands: `batch` batches of `epoch` (1-based) are trained, with these
// loss sums so far; batch 0 of epoch e + 1 is the same place as the end of epoch e.
struct DataPosition {
  int epoch = 1;
  int batch = 0;
  double epoch_reconstruction = 0, epoch_kl = 0;
};

struct Checkpoint {
  TrainConfig config;  // the model and the hyper-parameters that must match to resume
  TrainingState state;
  DataPosition position;
  // The training data: its image shape, count and fingerprints. Every checkpoint written has it;
  // one read from a version-1 file (before it was recorded) does not.
  std::optional<DataIdentity> data;
  // ReduceLROnPlateau's state when config.lr_schedule is kPlateau (the lr Adam uses now is its lr).
  std::optional<PlateauState> plateau;
};

// Version 2 added the training data's identity (image_rows, image_cols, train_count,
// train_images_xxh3, train_labels_xxh3). Version 3 added the model options (activation,
// negative_slope, batch_norm, encoder_output, likelihood, alpha), BatchNorm's tensors, and
// epoch_reconstruction in place of epoch_bce, and the learning rate schedule (lr_schedule, the
// plateau_* settings and, for plateau, its state). Versions 1 and 2 still read, as the default model.
inline constexpr int kCheckpointFormatVersion = 3;
inline constexpr int kOldestCheckpointFormatVersion = 1;

// One tensor of the file: its name, where its values sit in the flat buffer, and its shape.
// Weights keep PyTorch's [out, in] layout.
struct NamedTensor {
  std::string name;
  int64_t offset = 0;
  std::vector<int64_t> shape;
  int64_t size() const;
};

// Whether a model's tensors are named as nn.Sequential positions, as the seed's VAE names them: a
// model with BatchNorm or an encoder_output layer.
bool uses_sequential_names(const ModelConfig& model);

// The weight and bias tensors of a model, named as a checkpoint names them, so that a PyTorch module
// of that architecture loads them as a state_dict:
// - one hidden layer: fc1, fc21 (mu), fc22 (logvar), fc3, fc4, as PyTorch's VAE example;
// - deeper: encoder.{i}, mu, logvar, decoder.{i}, output;
// - uses_sequential_names: encoder.{k} and decoder.{k} at their nn.Sequential positions (the encoder
//   starts with Flatten at 0; each hidden layer is Linear, BatchNorm1d when it has one, then the
//   activation), hidden2mu and hidden2log_var; a BatchNorm1d's weight (gamma) and bias (beta) at its
//   own position.
// Each is .weight and .bias. The head's one [2 * latent, in] matrix is split into mu's rows and
// logvar's rows, which are contiguous in the flat buffer.
std::vector<NamedTensor> parameter_tensors(const ModelConfig& model);

// BatchNorm1d's running_mean and running_var [features] per BatchNorm module, offsets into
// TrainingState::running_stats; empty without BatchNorm.
std::vector<NamedTensor> running_stat_tensors(const ModelConfig& model);

// The BatchNorm1d modules' names ("encoder.2", ...), in forward order; each has a
// num_batches_tracked (I64 scalar) in the file, equal to the step count.
std::vector<std::string> batch_norm_modules(const ModelConfig& model);

// Writes through a temporary file in the same directory, fsync, then rename over `file`: a crash at
// any moment leaves either the old file or the new one. Throws vae::Error naming the file, also when
// `checkpoint.data` is missing (a checkpoint that cannot say what it was trained on is not written)
// or a value is one read_checkpoint refuses (non-finite, or a negative second moment); the file
// already there is then left as it was.
void write_checkpoint(const std::filesystem::path& file, const Checkpoint& checkpoint);

// Reads and validates everything, in an order that makes the message name the real cause: the header
// as safetensors defines it (length, one JSON object padded only with spaces, no key twice), the
// metadata (the data's image shape must hold the model's input pixels), then for every tensor its
// fields, dtype (F32 only), shape against the metadata's model, and data_offsets (tiling the data
// exactly), and finally every value: parameters and moments finite, second moments >= 0. Every
// failure is a vae::Error naming the file and, where one is at fault, the tensor (and for a bad
// value its first bad flat index).
Checkpoint read_checkpoint(const std::filesystem::path& file);

}  // namespace vae
