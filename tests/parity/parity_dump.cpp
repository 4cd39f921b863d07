// parity_dump: runs the reference backend on one real batch and writes everything PyTorch needs to
// repeat the computation -- initial weights, the batch, the ε of every step, step 1's loss and
// gradients, the weights after N Adam steps -- as safetensors. tests/parity/parity.py drives it;
// the engine's side of the comparison is computed here only, never re-implemented in Python.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "tensor_file.hpp"
#include "vae/checkpoint.hpp"
#include "vae/data_identity.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"
#include "vae/reference_backend.hpp"
#include "vae/reference_model.hpp"

namespace fs = std::filesystem;

namespace vae::parity {
namespace {

// The ε training step s (1-based) draws, element r * latent + j, for every step: [steps, rows, latent].
std::vector<float> training_noise(uint64_t seed, int steps, int rows, int latent) {
  const int64_t per_step = static_cast<int64_t>(rows) * latent;
  std::vector<float> eps(static_cast<size_t>(steps * per_step));
  for (int s = 1; s <= steps; ++s)
    for (int64_t i = 0; i < per_step; ++i)
      eps[(s - 1) * per_step + i] = philox_normal(seed, train_stream(static_cast<uint64_t>(s)), static_cast<uint64_t>(i));
  return eps;
}

// Step 1 at the initial weights, straight from ReferenceVae in training mode: loss sums, dL/dparams
// of the loss trained on (reconstruction + beta * kl, times loss_gradient_scale) and BatchNorm's
// running statistics after the step.
// Also checks that the model drew the very ε handed to PyTorch: z must equal μ + exp(½ log σ²) ε to a
// few ulps (vae_core may be compiled to fuse the multiply-add, this file not), where a different draw
// would be off by about σ; otherwise the comparison downstream would test the noise, not the gradients.
TensorFile step_one(const TrainConfig& config, const std::vector<uint8_t>& pixels, const std::vector<float>& params,
                    const std::vector<float>& running_stats, const float* eps) {
  const ModelConfig& model = config.model;
  ReferenceVae<float> vae(model, config.batch);
  std::vector<float> x(pixels.size()), grads(params.size(), 0.0f), running = running_stats;
  const bool signed_data = model.likelihood == Likelihood::kGaussian;
  std::transform(pixels.begin(), pixels.end(), x.begin(),
                 [&](uint8_t p) { return signed_data ? pixel_to_signed(p) : pixel_to_unit(p); });
  const LossSums loss = vae.run(config.batch, x.data(), config.seed, train_stream(1), params.data(), grads.data(),
                                running.data());

  for (int r = 0; r < config.batch; ++r)
    for (int j = 0; j < model.latent; ++j) {
      const float* row = vae.mu_logvar() + static_cast<int64_t>(r) * 2 * model.latent;
      const int64_t i = static_cast<int64_t>(r) * model.latent + j;
      const float expected = reparam_sample(row[j], row[model.latent + j], eps[i]);
      if (std::abs(vae.z()[i] - expected) > 1e-6f * (1.0f + std::abs(expected)))
        throw Error(fmt::format("parity_dump: z[{}] was not drawn from the dumped ε; the noise streams disagree", i));
    }

  TensorFile file;
  const double total = loss.reconstruction + static_cast<double>(model.beta) * loss.kl;
  file.add("loss.bce", {}, &loss.reconstruction);
  file.add("loss.kl", {}, &loss.kl);
  file.add("loss.total", {}, &total);
  for (const NamedTensor& t : parameter_tensors(model)) file.add(t.name, t.shape, grads.data() + t.offset);
  // BatchNorm's running statistics after this one training-mode forward.
  for (const NamedTensor& t : running_stat_tensors(model)) file.add(t.name, t.shape, running.data() + t.offset);
  return file;
}

int run(int argc, char** argv) {
  TrainConfig config;
  std::string hidden = "400", out_dir, likelihood = "bernoulli", activation = "relu";
  int steps = 50;
  CLI::App app{"parity_dump: the reference backend's initial weights, batch, noise, step-1 gradients and "
               "weights after N Adam steps, as safetensors for tests/parity/parity.py"};
  app.add_option("--hidden", hidden, "Encoder widths, e.g. 400 or 256,128")->capture_default_str();
  app.add_option("--latent", config.model.latent)->capture_default_str();
  app.add_option("--seed", config.seed)->capture_default_str();
  app.add_option("--batch", config.batch)->capture_default_str();
  app.add_option("--lr", config.adam.lr)->capture_default_str();
  app.add_flag("--batch-norm", config.model.batch_norm);
  app.add_option("--activation", activation)->capture_default_str();
  app.add_option("--negative-slope", config.model.negative_slope)->capture_default_str();
  app.add_option("--encoder-output", config.model.encoder_output)->capture_default_str();
  app.add_option("--likelihood", likelihood)->capture_default_str();
  app.add_option("--alpha", config.model.alpha)->capture_default_str();
  app.add_option("--steps", steps, "Adam steps, each on the same batch")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--data", config.data_dir, "MNIST-format directory")->required();
  app.add_option("--out", out_dir, "Directory for the .safetensors files")->required();
  CLI11_PARSE(app, argc, argv);

  config.model.hidden = parse_widths(hidden);
  if (!parse_activation(activation, config.model.activation) || !parse_likelihood(likelihood, config.model.likelihood))
    throw Error(fmt::format("parity_dump: unknown --activation {} or --likelihood {}", activation, likelihood));
  validate(config);
  const MnistData data = load_mnist_dir(config.data_dir);
  config.model.input = data.train.image_size();
  if (data.train.count < config.batch)
    throw Error(fmt::format("{}: {} training images, fewer than one batch of {}", config.data_dir, data.train.count,
                            config.batch));
  fs::create_directories(out_dir);
  const fs::path out(out_dir);

  // The first `batch` training images in file order: no shuffle, so the Python side needs no sampler.
  const std::vector<uint8_t> pixels(data.train.pixels.begin(),
                                    data.train.pixels.begin() + static_cast<int64_t>(config.batch) * config.model.input);
  TensorFile batch;
  batch.add("pixels", {config.batch, config.model.input}, pixels.data());
  batch.write(out / "batch.safetensors");

  const std::vector<float> eps = training_noise(config.seed, steps, config.batch, config.model.latent);
  TensorFile noise;
  noise.add("eps", {steps, config.batch, config.model.latent}, eps.data());
  noise.write(out / "eps.safetensors");

  ReferenceBackend backend(config);
  const TrainingState initial = backend.state();
  write_checkpoint(out / "initial.safetensors", Checkpoint{config, initial, DataPosition{}, identify_training_data(data.train)});
  step_one(config, pixels, initial.params, initial.running_stats, eps.data()).write(out / "step1.safetensors");

  // The same batch every step: the trajectory then depends on the optimiser and the noise alone.
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    const LossSums before = backend.epoch_sums();
    backend.train_step(pixels.data(), config.batch);
    const LossSums after = backend.epoch_sums();
    losses.push_back(after.reconstruction - before.reconstruction + static_cast<double>(config.model.beta) * (after.kl - before.kl));
  }
  TensorFile trajectory;
  trajectory.add("loss.total", {steps}, losses.data());
  trajectory.write(out / "losses.safetensors");
  write_checkpoint(out / "final.safetensors", Checkpoint{config, backend.state(), DataPosition{}, identify_training_data(data.train)});
  fmt::print("parity_dump: {} steps of hidden {} latent {} seed {} batch {} into {}\n", steps, hidden,
             config.model.latent, config.seed, config.batch, out_dir);
  return 0;
}

}  // namespace
}  // namespace vae::parity

int main(int argc, char** argv) {
  try {
    return vae::parity::run(argc, argv);
  } catch (const vae::Error& e) {
    fmt::print(stderr, "parity_dump: {}\n", e.what());
    return 1;
  }
}
