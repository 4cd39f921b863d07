// --sample, --interpolate and --latent-map: a checkpoint in, one PNG out, decoded on the CPU
// reference model. The option checks here name the flags, since these are the user's mistakes.
#include "vae/inspect.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "trained_model.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/images.hpp"
#include "vae/layout.hpp"
#include "vae/reference_model.hpp"

namespace vae {
namespace {

// Larger grids would decode tens of thousands of images into a picture nobody can read.
constexpr int kMaxGrid = 64;
constexpr int kMaxSteps = 100;
// Rows the reference model decodes at once: enough to amortise the GEMMs, small enough to stay in cache.
constexpr int kDecodeRows = 256;
// The latent map's square, in standard deviations of the prior.
constexpr float kLatentMapExtent = 3.0f;

TrainedModel load_model(const InspectOptions& options) {
  if (options.out_png.empty()) throw UsageError("--out: name the PNG file to write");
  return load_trained_model(options.checkpoint);
}

// The shape to draw a model's images at without data at hand: the recorded one. A version-1
// checkpoint knows only its pixel count, and square is the one shape that can be assumed.
void require_image_shape(TrainedModel& trained, const std::string& checkpoint) {
  if (trained.rows != 0) return;
  try {
    trained.rows = trained.cols = square_side(trained.model.input);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: a version-1 checkpoint, which does not record its image shape, and {}", checkpoint,
                            e.what()));
  }
}

void check_grid(int grid) {
  if (grid < 1 || grid > kMaxGrid)
    throw UsageError(fmt::format("--grid: {} is not between 1 and {}", grid, kMaxGrid));
}

// The latents [2, latent] the interpolation runs between, for the two images [2, input]: their
// posterior means, or one draw from each posterior, z = mu + exp(logvar / 2) * eps.
std::vector<float> interpolation_ends(ReferenceVae<float>& vae, const std::vector<float>& images,
                                      const TrainedModel& trained, const InspectOptions& options) {
  const int latent = trained.model.latent;
  if (!options.sampled_ends) return encode_means(vae, 2, images.data(), trained.params, trained.running_stats);
  const std::vector<float> posteriors = encode_posteriors(vae, 2, images.data(), trained.params, trained.running_stats);
  const std::vector<float> eps = sample_latents(options.seed, 2, latent);
  std::vector<float> z(2 * static_cast<size_t>(latent));
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < latent; ++k) {
      const float* row = posteriors.data() + static_cast<size_t>(r) * 2 * latent;
      z[static_cast<size_t>(r) * latent + k] = reparam_sample(row[k], row[latent + k], eps[static_cast<size_t>(r) * latent + k]);
    }
  return z;
}

void check_pair_index(int index, const MnistSplit& test) {
  if (index < 0 || index >= test.count)
    throw UsageError(fmt::format("--pair: image {} is outside the {} test images", index, test.count));
}

}  // namespace

void run_sample(const InspectOptions& options) {
  check_grid(options.grid);
  TrainedModel trained = load_model(options);
  require_image_shape(trained, options.checkpoint);
  const int count = options.grid * options.grid;
  ReferenceVae<float> vae(trained.model, std::min(count, kDecodeRows));
  const std::vector<float> z = sample_latents(options.seed, count, trained.model.latent);
  write_png_grid(options.out_png, decode_images(vae, count, z.data(), trained.params, trained.running_stats), count, trained.rows,
                 trained.cols, options.grid);
}

void run_interpolate(const InspectOptions& options) {
  if (options.steps < 2 || options.steps > kMaxSteps)
    throw UsageError(fmt::format("--steps: {} is not between 2 and {}", options.steps, kMaxSteps));
  if (options.data_dir.empty()) throw UsageError("--interpolate needs --data-dir DIR for the test images");
  const TrainedModel trained = load_model(options);
  const MnistSplit test = load_mnist_split(options.data_dir, SplitName::kTest);
  check_pair_index(options.pair_i, test);
  check_pair_index(options.pair_j, test);
  check_images_fit(trained, test, options.data_dir, options.checkpoint, "test");

  const int latent = trained.model.latent;
  ReferenceVae<float> vae(trained.model, options.steps);
  const std::vector<float> first = split_images(test, options.pair_i, 1);
  const std::vector<float> last = split_images(test, options.pair_j, 1);
  std::vector<float> pair = first;
  pair.insert(pair.end(), last.begin(), last.end());
  const std::vector<float> ends = interpolation_ends(vae, pair, trained, options);
  std::vector<float> z(static_cast<size_t>(options.steps) * latent);
  for (int s = 0; s < options.steps; ++s) {
    const float t = static_cast<float>(s) / static_cast<float>(options.steps - 1);
    for (int k = 0; k < latent; ++k) z[static_cast<size_t>(s) * latent + k] = (1.0f - t) * ends[k] + t * ends[latent + k];
  }

  std::vector<float> row = first;
  const std::vector<float> walk = decode_images(vae, options.steps, z.data(), trained.params, trained.running_stats);
  row.insert(row.end(), walk.begin(), walk.end());
  row.insert(row.end(), last.begin(), last.end());
  const int count = options.steps + 2;
  write_png_grid(options.out_png, row, count, test.rows, test.cols, count);
}

void run_latent_map(const InspectOptions& options) {
  check_grid(options.grid);
  TrainedModel trained = load_model(options);
  if (trained.model.latent != 2)
    throw UsageError(
        fmt::format("--latent-map needs a model with latent 2, this one has {}", trained.model.latent));
  require_image_shape(trained, options.checkpoint);
  const int grid = options.grid;
  // Evenly spaced over [-extent, extent], ends included; a 1x1 map is the origin.
  auto coordinate = [&](int k) {
    if (grid == 1) return 0.0f;
    return -kLatentMapExtent + 2.0f * kLatentMapExtent * static_cast<float>(k) / static_cast<float>(grid - 1);
  };
  std::vector<float> z;
  z.reserve(static_cast<size_t>(grid) * grid * 2);
  for (int r = 0; r < grid; ++r) {
    for (int c = 0; c < grid; ++c) {
      z.push_back(coordinate(c));
      z.push_back(coordinate(grid - 1 - r));  // z2 decreases downwards
    }
  }
  const int count = grid * grid;
  ReferenceVae<float> vae(trained.model, std::min(count, kDecodeRows));
  write_png_grid(options.out_png, decode_images(vae, count, z.data(), trained.params, trained.running_stats), count, trained.rows,
                 trained.cols, grid);
}

}  // namespace vae
