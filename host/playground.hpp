// The playground's request handlers (the JSON API behind `vae_cuda --serve`) as plain functions of
// a parsed request, so every endpoint is tested without a server. Models are loaded once and
// reached only by id (their position in the list given), never by a path.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "trained_model.hpp"
#include "vae/config.hpp"
#include "vae/idx.hpp"

namespace vae {

// A checkpoint as the playground serves it: the trained model, and what the models list shows.
struct PlaygroundModel : TrainedModel {
  std::string file_name;  // the checkpoint's file name, without its folder
  int epochs_trained = 0;              // whole epochs finished
  int batches_into_epoch = 0;          // batches of the next epoch already trained
  // The lowest test loss per image, which only a run with the plateau schedule records in its
  // checkpoint; absent otherwise.
  std::optional<double> best_test_loss;
  // The test loss per image after epoch epochs_trained, from the run's metrics.csv beside the
  // checkpoint; absent when that file or its row is missing (a checkpoint copied on its own).
  std::optional<double> test_loss;
};

// A response: status 200 with the endpoint's JSON, 400 with {"error": one line naming the field}
// for a bad request, 404 for an unknown endpoint, 500 with {"error": ...} for a failure of ours.
struct PlaygroundResponse {
  int status = 200;
  nlohmann::json body;
};

// Limits on what one request may ask for, so no request can take the server's memory or minutes.
inline constexpr int kMinFrames = 2, kMaxFrames = 64;  // interpolate's "frames"
inline constexpr int kMaxSamples = 64;                 // sample's "count"
inline constexpr int kMaxDecodeBatch = 1024;           // decode's "latents" (a 32 x 32 latent map)
inline constexpr int kMaxCanvasSide = 1024;            // a "canvas" image's width and height

class Playground {
 public:
  // Reads every checkpoint (read_checkpoint's checks); throws vae::Error naming the file.
  // With data_dir, its test split (load_mnist_dir's checks) is served by index to pick images from.
  explicit Playground(const std::vector<std::filesystem::path>& checkpoints,
                      const std::optional<std::filesystem::path>& data_dir = std::nullopt);
  explicit Playground(std::vector<PlaygroundModel> models, MnistSplit test_images = {});

  const std::vector<PlaygroundModel>& models() const { return models_; }
  const MnistSplit& test_images() const { return test_images_; }

  // Runs `endpoint` ("models", "encode", "decode", "reconstruct", "interpolate", "sample") on the
  // request. Never throws. Safe to call from many threads at once: the models are read-only after
  // construction and each call decodes with its own ReferenceVae (a workspace of a few rows costs
  // far less than a forward pass), so requests neither wait for one another nor share scratch.
  //
  // Images in requests: "pixels" is an array of the model's input values on [0, 1], row-major;
  // where a request takes an image it also takes "canvas": {"width", "height", "pixels"} (a drawing
  // of any size up to kMaxCanvasSide, values on [0, 1], ink bright), prepared by mnist_style_input
  // for a 28x28 model. Latents are arrays of the model's latent size. Every request has "model": id.
  // - models      {} -> {"models": [{id, file, architecture, input, image_rows, image_cols, hidden,
  //               latent, beta, likelihood, alpha, activation, batch_norm, epochs_trained,
  //               batches_into_epoch, test_loss (or null), best_test_loss (or null)}],
  //               "test_images": {count, rows, cols} (count 0 without data_dir)}
  // - encode      {model, pixels | canvas} -> {mu, logvar}
  // - decode      {model, z} -> {pixels}; or {model, latents: [n][latent], n on [1, 1024]} -> {images}
  // - test_image  {index on [0, count)} -> {index, label, rows, cols, pixels}: a test image on [0, 1]
  // - reconstruct {model, pixels | canvas} -> {input (the pixels encoded), mu, logvar, pixels
  //               (decode of mu)}
  // - interpolate {model, images: [a, b] (pixel arrays or canvases) | latents: [a, b], frames on
  //               [2, 64], mode "linear" (default) or "spherical" (interpolate_latents)} ->
  //               {latents [frames][latent], frames [frames][input]}
  // - sample      {model, count on [1, 64], seed (integer >= 0)} -> {latents, images}: sample_latents'
  //               z ~ N(0, I), decoded
  PlaygroundResponse handle(const std::string& endpoint, const nlohmann::json& request) const;

 private:
  std::vector<PlaygroundModel> models_;
  MnistSplit test_images_;
};

}  // namespace vae
