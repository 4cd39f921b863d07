// What a run is: the model's shape and the training hyper-parameters, as the CLI fills them in.
// Defaults are PyTorch's VAE example (784-400-20, BCE + KL, Adam 1e-3, batch 128, 10 epochs).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vae/element_math.hpp"
#include "vae/flag_values.hpp"
#include "vae/lr_scheduler.hpp"
#include "vae/precision.hpp"

namespace vae {

struct ModelConfig {
  int input = 784;                 // pixels per image
  std::vector<int> hidden = {400};  // encoder widths; the decoder mirrors them
  int latent = 20;
  float beta = 1.0f;  // weight of the KL term
  // After each hidden linear layer, in this order: BatchNorm1d (when batch_norm), then the activation.
  Activation activation = Activation::kReLU;  // kReLU or kLeakyReLU
  float negative_slope = 0.01f;               // LeakyReLU's, PyTorch's default
  bool batch_norm = false;  // BatchNorm1d with PyTorch's defaults (momentum 0.1, eps 1e-5, affine)
  // When > 0, the encoder ends in a Linear(hidden.back(), encoder_output) with no activation, and the
  // head reads that (the seed's VAE); the decoder still mirrors `hidden`.
  int encoder_output = 0;
  Likelihood likelihood = Likelihood::kBernoulli;
  float alpha = 1.0f;  // kGaussian: weight of the per-image mean squared error

  bool operator==(const ModelConfig&) const = default;
};

// BatchNorm1d's constants: PyTorch's defaults, which the seed's model uses.
inline constexpr float kBatchNormMomentum = 0.1f;
inline constexpr float kBatchNormEps = 1e-5f;

// The factor the loss's gradient is taken at for a batch of `rows` images: 1 for the Bernoulli
// likelihood's sum over the batch, 1 / rows for the Gaussian one's mean.
inline double loss_gradient_scale(Likelihood likelihood, int rows) {
  return likelihood == Likelihood::kGaussian ? 1.0 / rows : 1.0;
}
inline double loss_gradient_scale(const ModelConfig& model, int rows) { return loss_gradient_scale(model.likelihood, rows); }

enum class DeviceChoice { kAuto, kCpu, kCuda };

// The learning rate over epochs: Adam's lr throughout, or ReduceLROnPlateau on the test loss.
enum class LrSchedule { kConstant, kPlateau };

// Where the training images live during an epoch: streamed from host memory batch by batch, or
// resident on the device (gathered there) for comparison.
enum class DataPlacement { kStreamed, kResident };

struct TrainConfig {
  ModelConfig model;
  std::string data_dir;
  std::string out_dir = "out";  // metrics.csv, images and checkpoint.safetensors
  int epochs = 10;
  int batch = 128;
  AdamHyper adam;  // adam.lr is the initial learning rate
  LrSchedule lr_schedule = LrSchedule::kConstant;
  PlateauHyper plateau;  // with kPlateau
  uint64_t seed = 1;
  DeviceChoice device = DeviceChoice::kAuto;
  Precision precision = Precision::kFp32;  // the CUDA backend's; the reference is always FP32
  DataPlacement data = DataPlacement::kStreamed;
  bool cuda_graphs = true;  // replay the step as a CUDA graph (off: plain launches, for comparison)
  bool progress = true;  // a progress bar, when stdout is a terminal
  int checkpoint_every = 0;  // epochs between checkpoints in out_dir (0: only the final one)
  std::string resume_from;   // a checkpoint to continue from
  bool allow_data_change = false;  // resume on other images of the same shape, from the start of an epoch
};

// The range of each numeric setting, as the README's command-line section documents it. The CLI
// refuses flags outside them, validate() refuses configs from elsewhere (a checkpoint's metadata).
// They keep every buffer size well inside int and memory and are far above any real use.
namespace limits {
inline constexpr int kMaxWidth = 1 << 16;
inline constexpr IntegerRange<int> kWidth{1, kMaxWidth};  // each --hidden width, --latent, --batch
inline constexpr IntegerRange<int> kEpochs{1, 1'000'000};
inline constexpr IntegerRange<int> kCheckpointEvery{0, 1'000'000};
inline constexpr IntegerRange<uint64_t> kSeed{0, UINT64_MAX};
inline constexpr RealRange kLr{0.0, 10.0, true};
inline constexpr RealRange kBeta{0.0, 1e6};
inline constexpr RealRange kWeightDecay{0.0, 1.0};
inline constexpr RealRange kNegativeSlope{0.0, 1.0};  // >= 0 keeps LeakyReLU's sign, which its backward relies on
inline constexpr RealRange kAlpha{0.0, 1e6, true};
inline constexpr IntegerRange<int> kHiddenLayers{1, 64};
// ReduceLROnPlateau's factor in (0, 1) and threshold in [0, 1): the open upper ends are checked apart.
inline constexpr RealRange kPlateauFactor{0.0, 1.0, true};
inline constexpr IntegerRange<int> kPlateauPatience{0, 1'000'000};
inline constexpr RealRange kPlateauThreshold{0.0, 1.0};
inline constexpr IntegerRange<int> kPlateauCooldown{0, 1'000'000};
inline constexpr RealRange kMinLr{0.0, 10.0};
inline constexpr IntegerRange<int> kEncoderOutput{0, kMaxWidth};  // 0: no such layer
inline constexpr IntegerRange<int> kPort{0, 65535};               // --serve's; 0: any free port
inline constexpr IntegerRange<int> kImportanceSamples{1, 100'000};  // --evaluate's K
inline constexpr IntegerRange<int> kImageIndex{0, 1 << 30};        // an image of a split, checked against it later
}  // namespace limits

// The names the CLI and checkpoints use: "relu", "leaky_relu"; "bernoulli", "gaussian". parse_*
// returns false for anything else.
const char* activation_name(Activation activation);
bool parse_activation(const std::string& text, Activation& activation);
const char* likelihood_name(Likelihood likelihood);
bool parse_likelihood(const std::string& text, Likelihood& likelihood);

// Throws vae::UsageError naming the offending setting.
void validate(const TrainConfig& config);

// "3" or "7,0,12": a comma-separated list of integers >= min_value, or nullopt for anything else.
std::optional<std::vector<int>> parse_int_list(const std::string& text, int min_value);

// "400" or "512,256" into widths, each in limits::kWidth; throws vae::UsageError on anything else.
std::vector<int> parse_widths(const std::string& text);

}  // namespace vae
