// PNG output (libpng's simplified API) and the grids of reconstructions and samples that training
// writes after each epoch. Model pictures are drawn with the reference model on the CPU: a few
// dozen images cost milliseconds and need no device.
#include "vae/images.hpp"

#include <fmt/format.h>
#include <png.h>

#include <algorithm>
#include <cmath>

#include "atomic_file.hpp"
#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/layout.hpp"
#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> encode_png(const fs::path& file, int width, int height, const std::vector<uint8_t>& pixels) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = PNG_IMAGE_PNG_SIZE_MAX(image);
  std::vector<uint8_t> bytes(size);
  const bool ok = png_image_write_to_memory(&image, bytes.data(), &size, 0, pixels.data(), 0, nullptr) != 0;
  const std::string why = image.message;
  png_image_free(&image);
  if (!ok) throw Error(fmt::format("{}: cannot encode PNG: {}", file.string(), why));
  bytes.resize(size);
  return bytes;
}

constexpr int kReconstructions = 8;  // test images in the reconstruction strip
constexpr int kSampleGrid = 8;       // samples per side

}  // namespace

void write_png_gray(const fs::path& file, int width, int height, const std::vector<uint8_t>& pixels) {
  if (width < 1 || height < 1 || pixels.size() != static_cast<size_t>(width) * height)
    throw Error(fmt::format("{}: {} pixels do not make a {}x{} image", file.string(), pixels.size(), width, height));
  const std::vector<uint8_t> bytes = encode_png(file, width, height, pixels);
  replace_file_atomically(file, {{bytes.data(), bytes.size()}});
}

std::vector<uint8_t> tile_grid(const std::vector<float>& images, int count, int rows, int cols, int grid_cols, int pad,
                               int* width, int* height) {
  if (count < 1 || rows < 1 || cols < 1 || grid_cols < 1 || pad < 0)
    throw Error(fmt::format("tile_grid: bad shape: {} images of {}x{} in {} columns, pad {}", count, rows, cols,
                            grid_cols, pad));
  const size_t tile = static_cast<size_t>(rows) * cols;
  if (images.size() < tile * count)
    throw Error(
        fmt::format("tile_grid: {} values are fewer than {} images of {}x{}", images.size(), count, rows, cols));
  const int grid_rows = (count + grid_cols - 1) / grid_cols;
  const int w = grid_cols * cols + (grid_cols + 1) * pad;
  const int h = grid_rows * rows + (grid_rows + 1) * pad;
  std::vector<uint8_t> pixels(static_cast<size_t>(w) * h, 0);
  for (int i = 0; i < count; ++i) {
    const int left = pad + (i % grid_cols) * (cols + pad);
    const int top = pad + (i / grid_cols) * (rows + pad);
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        float v = images[tile * i + static_cast<size_t>(r) * cols + c];
        v = v > 0.0f ? std::min(v, 1.0f) : 0.0f;  // NaN fails v > 0 and becomes black
        pixels[static_cast<size_t>(top + r) * w + left + c] = static_cast<uint8_t>(std::lround(v * 255.0f));
      }
    }
  }
  *width = w;
  *height = h;
  return pixels;
}

void write_png_grid(const fs::path& file, const std::vector<float>& images, int count, int rows, int cols,
                    int grid_cols) {
  int width = 0, height = 0;
  const std::vector<uint8_t> pixels = tile_grid(images, count, rows, cols, grid_cols, kTilePad, &width, &height);
  write_png_gray(file, width, height, pixels);
}

std::vector<float> sample_latents(uint64_t seed, int count, int latent) {
  const uint64_t stream = noise_stream(NoisePurpose::kSample, 0);
  std::vector<float> z(static_cast<size_t>(count) * latent);
  for (size_t group = 0; group * 4 < z.size(); ++group) {
    const Normal4 normals = philox_normal4(seed, stream, group);
    for (size_t lane = 0; lane < 4 && group * 4 + lane < z.size(); ++lane) z[group * 4 + lane] = normals.v[lane];
  }
  return z;
}

namespace {
// BatchNorm's running statistics, all of them or none for a model without BatchNorm.
const float* running_or_null(const ReferenceVae<float>& vae, const std::vector<float>& running_stats) {
  const int64_t needed = vae.layout().running_total;
  if (static_cast<int64_t>(running_stats.size()) != needed)
    throw Error(fmt::format("model images: {} running statistics given, the model's BatchNorm layers have {}",
                            running_stats.size(), needed));
  return needed == 0 ? nullptr : running_stats.data();
}
}  // namespace

std::vector<float> encode_posteriors(ReferenceVae<float>& vae, int count, const float* x, const std::vector<float>& params,
                                     const std::vector<float>& running_stats) {
  const int input = vae.model().input, latent = vae.model().latent;
  const bool signed_data = vae.model().likelihood == Likelihood::kGaussian;
  std::vector<float> posteriors(static_cast<size_t>(count) * 2 * latent);
  std::vector<float> batch(static_cast<size_t>(vae.max_rows()) * input);
  for (int first = 0; first < count; first += vae.max_rows()) {
    const int rows = std::min(vae.max_rows(), count - first);
    const float* images = x + static_cast<size_t>(first) * input;
    for (size_t i = 0; i < static_cast<size_t>(rows) * input; ++i)
      batch[i] = signed_data ? unit_to_signed(images[i]) : images[i];
    vae.encode(rows, batch.data(), params.data(), running_or_null(vae, running_stats));
    std::copy_n(vae.mu_logvar(), static_cast<size_t>(rows) * 2 * latent,
                posteriors.begin() + static_cast<ptrdiff_t>(first) * 2 * latent);
  }
  return posteriors;
}

std::vector<float> encode_means(ReferenceVae<float>& vae, int count, const float* x, const std::vector<float>& params,
                                const std::vector<float>& running_stats) {
  const int latent = vae.model().latent;
  const std::vector<float> posteriors = encode_posteriors(vae, count, x, params, running_stats);
  std::vector<float> mu(static_cast<size_t>(count) * latent);
  for (int r = 0; r < count; ++r) {
    const float* row = posteriors.data() + static_cast<size_t>(r) * 2 * latent;  // mu, then logvar
    std::copy(row, row + latent, mu.begin() + static_cast<ptrdiff_t>(r) * latent);
  }
  return mu;
}

std::vector<float> decode_images(ReferenceVae<float>& vae, int count, const float* z,
                                 const std::vector<float>& params, const std::vector<float>& running_stats) {
  const int input = vae.model().input, latent = vae.model().latent;
  const bool gaussian = vae.model().likelihood == Likelihood::kGaussian;
  std::vector<float> images(static_cast<size_t>(count) * input);
  for (int first = 0; first < count; first += vae.max_rows()) {
    const int rows = std::min(vae.max_rows(), count - first);
    vae.decode(rows, z + static_cast<size_t>(first) * latent, params.data(), running_or_null(vae, running_stats));
    const size_t values = static_cast<size_t>(rows) * input;
    float* out = images.data() + static_cast<size_t>(first) * input;
    for (size_t i = 0; i < values; ++i)
      out[i] = gaussian ? (ftanh(vae.logits()[i]) + 1.0f) / 2.0f : sigmoid(vae.logits()[i]);
  }
  return images;
}

std::vector<float> split_images(const MnistSplit& split, int64_t first, int count) {
  if (first < 0 || count < 0 || first + count > split.count)
    throw Error(fmt::format("images {}..{} are outside the {} of the split", first, first + count - 1, split.count));
  const size_t size = static_cast<size_t>(split.image_size());
  std::vector<float> images(size * count);
  const uint8_t* pixels = split.pixels.data() + size * static_cast<size_t>(first);
  for (size_t i = 0; i < images.size(); ++i) images[i] = pixel_to_unit(pixels[i]);
  return images;
}

int square_side(int input) {
  const int side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(input))));
  if (input < 1 || side * side != input)
    throw Error(fmt::format("a model of {} pixels has no square image shape to draw", input));
  return side;
}

void write_epoch_images(const fs::path& out_dir, int epoch, const ModelConfig& model, const std::vector<float>& params,
                        const MnistSplit& test, uint64_t seed, const std::vector<float>& running_stats) {
  if (static_cast<int64_t>(params.size()) < make_layout(model).total)
    throw Error(fmt::format("epoch images: {} parameters are fewer than the model's layout needs", params.size()));
  if (test.image_size() != model.input)
    throw Error(fmt::format("epoch images: test images have {}x{} pixels, the model takes {}", test.rows, test.cols,
                            model.input));
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create directory: {}", out_dir.string(), ec.message()));

  ReferenceVae<float> vae(model, kSampleGrid * kSampleGrid);
  const int shown = static_cast<int>(std::min<int64_t>(kReconstructions, test.count));
  if (shown > 0) {
    std::vector<float> tiles = split_images(test, 0, shown);
    const std::vector<float> mu = encode_means(vae, shown, tiles.data(), params, running_stats);
    const std::vector<float> reconstructions = decode_images(vae, shown, mu.data(), params, running_stats);
    tiles.insert(tiles.end(), reconstructions.begin(), reconstructions.end());
    write_png_grid(out_dir / fmt::format("reconstruction_epoch_{:03}.png", epoch), tiles, 2 * shown, test.rows,
                   test.cols, shown);
  }
  const int samples = kSampleGrid * kSampleGrid;
  const std::vector<float> z = sample_latents(seed, samples, model.latent);
  write_png_grid(out_dir / fmt::format("samples_epoch_{:03}.png", epoch),
                 decode_images(vae, samples, z.data(), params, running_stats),
                 samples, test.rows, test.cols, kSampleGrid);
}

}  // namespace vae
