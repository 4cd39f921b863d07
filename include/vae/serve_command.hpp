// `vae_cuda --serve`: the playground, a web page to draw digits, watch the VAE rebuild them, morph one
// into another and explore the latent space, over the JSON API of host/playground.hpp. The page's
// HTML, CSS and JavaScript are compiled into the binary; decoding runs on the CPU reference model.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vae {

struct ServeOptions {
  std::vector<std::string> checkpoints;  // served by id, their position here
  std::string host = "127.0.0.1";        // loopback unless told otherwise
  int port = 8080;                       // 0: any free port (the printed address says which)
  std::optional<std::string> data_dir;   // MNIST-format data whose test images the page may pick
};

// Loads the checkpoints (and test images), binds, prints the address to open, and serves until
// SIGINT or SIGTERM, then returns. Throws vae::Error for a bad checkpoint or data folder and for an
// address that cannot be bound, each naming what failed.
void run_serve(const ServeOptions& options);

}  // namespace vae
