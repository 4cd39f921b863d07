// The presets. vae-playground is the MLP VAE of the beginner's series the project grew from (its
// models/vae.py and config.yaml): 784-392-196-128 with BatchNorm1d and LeakyReLU(0.1), a last
// encoder Linear(128, 128), latent 128, Tanh output on [-1, 1] data with 1024 * MSE + KL averaged
// over the batch, Adam lr 0.005, batch 144, 30 epochs, ReduceLROnPlateau on the validation loss.
#include "vae/presets.hpp"

namespace vae {

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      {"vae-playground",
       "the seed series' MLP VAE: 784-392-196-128(-128)-128, BatchNorm1d, LeakyReLU(0.1), Gaussian likelihood "
       "with alpha 1024, Adam 0.005, batch 144, 30 epochs, ReduceLROnPlateau",
       {{"--hidden", "392,196,128"},
        {"--encoder-output", "128"},
        {"--latent", "128"},
        {"--batch-norm", ""},
        {"--activation", "leaky_relu"},
        {"--negative-slope", "0.1"},
        {"--likelihood", "gaussian"},
        {"--alpha", "1024"},
        {"--lr", "0.005"},
        {"--batch", "144"},
        {"--epochs", "30"},
        {"--lr-schedule", "plateau"}}},
  };
  return all;
}

const Preset* find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

}  // namespace vae
