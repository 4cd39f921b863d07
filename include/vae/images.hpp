// Pictures of what a model has learned: reconstructions of test images and decodes of random
// latents, tiled into grids and written as 8-bit grayscale PNGs. Training writes one pair per epoch
// and the inspection commands (--sample, --interpolate, --latent-map) build on the same pieces.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "vae/config.hpp"
#include "vae/idx.hpp"
#include "vae/reference_model.hpp"

namespace vae {

// Gap in pixels around and between the tiles of every grid we write.
inline constexpr int kTilePad = 2;

// Writes width x height grayscale pixels (row-major) to file through file.tmp and a rename, so a
// reader never sees a half-written PNG. Throws vae::Error naming the file.
void write_png_gray(const std::filesystem::path& file, int width, int height, const std::vector<uint8_t>& pixels);

// Tiles count images of rows x cols values in [0, 1] (clamped; NaN reads as 0) into a grid of
// grid_cols columns, left to right then top to bottom, with pad pixels of black around and between
// the tiles. Returns the pixels; width and height receive the grid's size.
std::vector<uint8_t> tile_grid(const std::vector<float>& images, int count, int rows, int cols, int grid_cols,
                               int pad, int* width, int* height);

// tile_grid with kTilePad, then write_png_gray: the one way model pictures reach a file.
void write_png_grid(const std::filesystem::path& file, const std::vector<float>& images, int count, int rows, int cols,
                    int grid_cols);

// count * latent standard normals, element i drawn as philox_normal(seed, stream of kSample, i):
// the same seed gives the same latents, whatever reads them.
std::vector<float> sample_latents(uint64_t seed, int count, int latent);

// The encoder's mu ‖ logvar [count, 2 * latent] for count images x [count, input] on [0, 1] (scaled
// to the likelihood's data here), in chunks of the model's max_rows, in evaluation mode.
// running_stats is BatchNorm's (layout().running_total values; may be empty without BatchNorm).
std::vector<float> encode_posteriors(ReferenceVae<float>& vae, int count, const float* x, const std::vector<float>& params,
                                     const std::vector<float>& running_stats = {});

// The means mu [count, latent] of encode_posteriors: the deterministic latent of an image, as
// reconstructions and interpolations use.
std::vector<float> encode_means(ReferenceVae<float>& vae, int count, const float* x, const std::vector<float>& params,
                                const std::vector<float>& running_stats = {});

// Decodes count latents z [count, latent] to images [count, input] on [0, 1], in chunks of the
// model's max_rows: the mean of p(x | z), sigmoid(logits) for the Bernoulli likelihood and
// (tanh(a) + 1) / 2 for the Gaussian one (its [-1, 1] mean drawn as pixels, as the seed draws it).
std::vector<float> decode_images(ReferenceVae<float>& vae, int count, const float* z, const std::vector<float>& params,
                                 const std::vector<float>& running_stats = {});

// The images [first, first + count) of a split, scaled to [0, 1].
std::vector<float> split_images(const MnistSplit& split, int64_t first, int count);

// The side of a square image of `input` pixels; throws vae::Error when there is none. The shape
// assumed for a version-1 checkpoint, which records only its pixel count.
int square_side(int input);

// After epoch `epoch`, writes out_dir/reconstruction_epoch_NNN.png (the first 8 test images over
// their reconstructions decode(mu), without sampling) and out_dir/samples_epoch_NNN.png (8 x 8
// decodes of z ~ N(0, I) from sample_latents(seed, ...), the same z every epoch). Creates out_dir.
// A test split without images gets no reconstruction file.
void write_epoch_images(const std::filesystem::path& out_dir, int epoch, const ModelConfig& model,
                        const std::vector<float>& params, const MnistSplit& test, uint64_t seed,
                        const std::vector<float>& running_stats = {});

}  // namespace vae
