// iwae_dump: writes the ε that `vae_cuda --evaluate --seed S --importance-samples K` draws for the
// first N images, [N, K, latent], as safetensors, so tests/parity/iwae_parity.py can repeat the
// importance-weighted bound in PyTorch with the engine's own noise.
#include <CLI/CLI.hpp>

#include <vector>

#include "tensor_file.hpp"
#include "vae/evaluation.hpp"

int main(int argc, char** argv) {
  CLI::App app{"iwae_dump: the importance samples' eps of vae_cuda --evaluate"};
  uint64_t seed = 1;
  int images = 0, samples = 0, latent = 0;
  std::string out;
  app.add_option("--seed", seed)->required();
  app.add_option("--images", images)->required()->check(CLI::PositiveNumber);
  app.add_option("--samples", samples)->required()->check(CLI::PositiveNumber);
  app.add_option("--latent", latent)->required()->check(CLI::PositiveNumber);
  app.add_option("--out", out)->required();
  CLI11_PARSE(app, argc, argv);
  std::vector<float> eps(static_cast<size_t>(images) * samples * latent);
  size_t i = 0;
  for (int image = 0; image < images; ++image)
    for (int k = 0; k < samples; ++k)
      for (int j = 0; j < latent; ++j) eps[i++] = vae::importance_eps(seed, image, k, j, latent);
  vae::parity::TensorFile file;
  file.add("eps", {images, samples, latent}, eps.data());
  file.write(out);
  return 0;
}
