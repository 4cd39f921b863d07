// Pictures of a model: encode and decode as the two halves of the training forward pass, the grid
// tiling and PNG writer (decoded back with libpng), the per-epoch images, the checkpoint inspection
// commands (--sample, --interpolate, --latent-map) and tools/plot.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model_support.hpp"
#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/images.hpp"
#include "vae/inspect.hpp"
#include "vae/layout.hpp"
#include "vae/reference_model.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using testing_support::initial_params;
using testing_support::TempDir;

struct Png {
  int width = 0, height = 0;
  bool stored_gray = false;  // the file itself is 8-bit grayscale, not converted on reading
  std::vector<uint8_t> pixels;
};

Png read_png(const fs::path& file) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, file.c_str()) == 0) {
    ADD_FAILURE() << file << ": " << image.message;
    return {};
  }
  Png png;
  png.stored_gray = image.format == PNG_FORMAT_GRAY;
  image.format = PNG_FORMAT_GRAY;
  png.width = static_cast<int>(image.width);
  png.height = static_cast<int>(image.height);
  png.pixels.resize(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, png.pixels.data(), 0, nullptr) == 0)
    ADD_FAILURE() << file << ": " << image.message;
  return png;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Width (or height) of a grid of n tiles of `side` pixels with kTilePad around and between them.
int grid_extent(int n, int side) { return n * side + (n + 1) * kTilePad; }

// Tile `index` (row-major in a grid of grid_cols) of a decoded grid, as its side x side pixels.
std::vector<uint8_t> tile_of(const Png& png, int index, int grid_cols, int side) {
  const int left = kTilePad + (index % grid_cols) * (side + kTilePad);
  const int top = kTilePad + (index / grid_cols) * (side + kTilePad);
  std::vector<uint8_t> tile;
  for (int r = 0; r < side; ++r)
    for (int c = 0; c < side; ++c) tile.push_back(png.pixels[static_cast<size_t>(top + r) * png.width + left + c]);
  return tile;
}

std::vector<uint8_t> test_image(const MnistSplit& split, int index) {
  const auto first = split.pixels.begin() + static_cast<ptrdiff_t>(index) * split.image_size();
  return {first, first + split.image_size()};
}


ModelConfig small_model(int latent) {
  ModelConfig model;
  model.hidden = {32};
  model.latent = latent;
  return model;
}

// ---- encode and decode: the halves of run() ----

template <typename T>
void expect_halves_match_run() {
  ModelConfig model;
  model.input = 50;
  model.hidden = {24, 16};  // two hidden layers, so each half loops over more than one layer
  model.latent = 3;
  const int rows = 5;
  std::vector<T> params(make_layout(model).total);
  init_params(make_layout(model), 7, params.data());
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> unit(0, 1);
  std::vector<T> x(static_cast<size_t>(rows) * model.input);
  for (T& v : x) v = static_cast<T>(unit(rng));

  ReferenceVae<T> vae(model, rows);
  const LossSums loss = vae.run(rows, x.data(), 11, 2, params.data(), nullptr);
  const std::vector<T> mu_logvar(vae.mu_logvar(), vae.mu_logvar() + rows * 2 * model.latent);
  const std::vector<T> z(vae.z(), vae.z() + rows * model.latent);
  const std::vector<T> logits(vae.logits(), vae.logits() + rows * model.input);

  ReferenceVae<T> halves(model, rows);
  halves.encode(rows, x.data(), params.data());
  EXPECT_EQ(std::memcmp(halves.mu_logvar(), mu_logvar.data(), mu_logvar.size() * sizeof(T)), 0);
  halves.decode(rows, z.data(), params.data());
  EXPECT_EQ(std::memcmp(halves.logits(), logits.data(), logits.size() * sizeof(T)), 0);
  EXPECT_EQ(std::memcmp(halves.z(), z.data(), z.size() * sizeof(T)), 0);

  // And run() on the same object afterwards is unchanged by them.
  const LossSums again = halves.run(rows, x.data(), 11, 2, params.data(), nullptr);
  EXPECT_EQ(again.reconstruction, loss.reconstruction);
  EXPECT_EQ(again.kl, loss.kl);
}

TEST(ReferenceVaeHalves, EncodeAndDecodeEqualRunBitwiseInFloat) { expect_halves_match_run<float>(); }
TEST(ReferenceVaeHalves, EncodeAndDecodeEqualRunBitwiseInDouble) { expect_halves_match_run<double>(); }

TEST(ReferenceVaeHalves, MoreRowsThanTheBuffersHoldIsAnError) {
  const ModelConfig model = small_model(2);
  ReferenceVae<float> vae(model, 2);
  const std::vector<float> params = initial_params(model, 1);
  const std::vector<float> z(3 * 2, 0.0f);
  EXPECT_THROW(vae.decode(3, z.data(), params.data()), Error);
}

// ---- tile_grid ----

TEST(TileGrid, PlacesTilesLeftToRightTopToBottomWithPadding) {
  const int rows = 2, cols = 3, count = 5, grid_cols = 3, pad = 1;
  std::vector<float> images;
  for (int i = 0; i < count; ++i) images.insert(images.end(), rows * cols, static_cast<float>(i + 1) / 10.0f);
  int width = 0, height = 0;
  const std::vector<uint8_t> pixels = tile_grid(images, count, rows, cols, grid_cols, pad, &width, &height);
  EXPECT_EQ(width, 3 * cols + 4 * pad);
  EXPECT_EQ(height, 2 * rows + 3 * pad);
  ASSERT_EQ(pixels.size(), static_cast<size_t>(width) * height);

  std::vector<uint8_t> expected(pixels.size(), 0);  // padding and the sixth, empty slot stay black
  for (int i = 0; i < count; ++i) {
    const int left = pad + (i % grid_cols) * (cols + pad), top = pad + (i / grid_cols) * (rows + pad);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        expected[static_cast<size_t>(top + r) * width + left + c] =
            static_cast<uint8_t>(std::lround((i + 1) / 10.0 * 255.0));
  }
  EXPECT_EQ(pixels, expected);
}

TEST(TileGrid, ClampsToTheUnitIntervalAndRounds) {
  const std::vector<float> images = {-1.0f, 0.0f, 0.5f, 1.0f, 2.0f, std::nanf("")};
  int width = 0, height = 0;
  const std::vector<uint8_t> pixels = tile_grid(images, 1, 1, 6, 1, 0, &width, &height);
  EXPECT_EQ(width, 6);
  EXPECT_EQ(height, 1);
  EXPECT_EQ(pixels, (std::vector<uint8_t>{0, 0, 128, 255, 255, 0}));
}

TEST(TileGrid, RejectsTooFewValuesAndEmptyShapes) {
  int width = 0, height = 0;
  EXPECT_THROW(tile_grid(std::vector<float>(11), 2, 2, 3, 2, 1, &width, &height), Error);
  EXPECT_THROW(tile_grid(std::vector<float>(6), 0, 2, 3, 2, 1, &width, &height), Error);
  EXPECT_THROW(tile_grid(std::vector<float>(6), 1, 2, 3, 0, 1, &width, &height), Error);
}

// ---- write_png_gray ----

TEST(WritePng, RoundTripsEveryPixelAndLeavesNoTemporaryFile) {
  TempDir dir;
  const int width = 37, height = 23;
  std::vector<uint8_t> pixels(width * height);
  std::mt19937 rng(5);
  for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng());
  const fs::path file = dir.path() / "noise.png";
  write_png_gray(file, width, height, pixels);

  const Png png = read_png(file);
  EXPECT_TRUE(png.stored_gray);
  EXPECT_EQ(png.width, width);
  EXPECT_EQ(png.height, height);
  EXPECT_EQ(png.pixels, pixels);
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"noise.png"});
}

TEST(WritePng, ReplacesAnExistingFile) {
  TempDir dir;
  const fs::path file = dir.path() / "a.png";
  write_png_gray(file, 2, 1, {1, 2});
  write_png_gray(file, 1, 3, {7, 8, 9});
  const Png png = read_png(file);
  EXPECT_EQ(png.width, 1);
  EXPECT_EQ(png.pixels, (std::vector<uint8_t>{7, 8, 9}));
}

TEST(WritePng, UnwritablePlaceIsAnErrorNamingTheFile) {
  TempDir dir;
  // Root ignores permission bits, so unwritable here means a "directory" that is a regular file. A
  // missing folder is no error: it is created.
  write_png_gray(dir.path() / "new_dir" / "x.png", 1, 1, {0});
  EXPECT_TRUE(fs::is_regular_file(dir.path() / "new_dir" / "x.png"));
  fs::remove_all(dir.path() / "new_dir");
  std::ofstream(dir.path() / "plain_file") << "not a directory";
  try {
    write_png_gray(dir.path() / "plain_file" / "y.png", 1, 1, {0});
    FAIL() << "expected vae::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("plain_file/y.png"), std::string::npos) << e.what();
  }
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"plain_file"});
}

TEST(WritePng, PixelCountMustMatchTheSize) {
  TempDir dir;
  EXPECT_THROW(write_png_gray(dir.path() / "a.png", 2, 2, {1, 2, 3}), Error);
  EXPECT_THROW(write_png_gray(dir.path() / "b.png", 0, 0, {}), Error);
  EXPECT_TRUE(names_in(dir.path()).empty());
}

// ---- write_epoch_images ----

MnistSplit tiny_test_split(const fs::path& dir, uint32_t test_count) {
  testing_support::write_tiny_mnist(dir, 4, test_count);
  return load_mnist_dir(dir).test;
}

TEST(EpochImages, WritesReconstructionStripAndSampleGrid) {
  TempDir dir;
  const MnistSplit test = tiny_test_split(dir.path(), 10);
  const ModelConfig model = small_model(4);
  const std::vector<float> params = initial_params(model, 2);
  const fs::path out = dir.path() / "run" / "images";  // created on demand
  write_epoch_images(out, 3, model, params, test, 1);

  const Png recon = read_png(out / "reconstruction_epoch_003.png");
  EXPECT_TRUE(recon.stored_gray);
  EXPECT_EQ(recon.width, grid_extent(8, 28));
  EXPECT_EQ(recon.height, grid_extent(2, 28));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(tile_of(recon, i, 8, 28), test_image(test, i)) << "original " << i;

  const Png samples = read_png(out / "samples_epoch_003.png");
  EXPECT_EQ(samples.width, grid_extent(8, 28));
  EXPECT_EQ(samples.height, grid_extent(8, 28));
  EXPECT_EQ(names_in(out), (std::vector<std::string>{"reconstruction_epoch_003.png", "samples_epoch_003.png"}));
}

TEST(EpochImages, SameSeedDrawsTheSameSamplesEveryEpoch) {
  TempDir dir;
  const MnistSplit test = tiny_test_split(dir.path(), 8);
  const ModelConfig model = small_model(4);
  const std::vector<float> params = initial_params(model, 2);
  write_epoch_images(dir.path(), 1, model, params, test, 9);
  write_epoch_images(dir.path(), 2, model, params, test, 9);
  write_epoch_images(dir.path(), 3, model, params, test, 10);
  const Png first = read_png(dir.path() / "samples_epoch_001.png");
  EXPECT_EQ(first.pixels, read_png(dir.path() / "samples_epoch_002.png").pixels);
  EXPECT_NE(first.pixels, read_png(dir.path() / "samples_epoch_003.png").pixels);
}

TEST(EpochImages, FewerThanEightTestImagesShowsThoseThereAre) {
  TempDir dir;
  const MnistSplit test = tiny_test_split(dir.path(), 3);
  const ModelConfig model = small_model(4);
  write_epoch_images(dir.path() / "out", 12, model, initial_params(model, 2), test, 1);
  const Png recon = read_png(dir.path() / "out" / "reconstruction_epoch_012.png");
  EXPECT_EQ(recon.width, grid_extent(3, 28));
  EXPECT_EQ(recon.height, grid_extent(2, 28));
}

TEST(EpochImages, ModelOfAnotherImageSizeIsAnError) {
  TempDir dir;
  const MnistSplit test = tiny_test_split(dir.path(), 3);
  ModelConfig model = small_model(4);
  model.input = 100;
  EXPECT_THROW(write_epoch_images(dir.path() / "out", 1, model, initial_params(model, 2), test, 1), Error);
}

// ---- the inspection commands ----

// A directory with tiny MNIST data (10 test images) and checkpoints of untrained models.
class InspectTest : public ::testing::Test {
 protected:
  void SetUp() override { testing_support::write_tiny_mnist(dir_.path(), 4, 10); }

  std::string checkpoint(int latent, int rows = 28, int cols = 28) {
    Checkpoint c;
    c.config.model = small_model(latent);
    c.config.model.input = rows * cols;
    c.data = DataIdentity{rows, cols, 4, 0, 0};
    c.state.params = initial_params(c.config.model, 3);
    c.state.adam_m.assign(c.state.params.size(), 0.0f);
    c.state.adam_v.assign(c.state.params.size(), 0.0f);
    const fs::path file =
        dir_.path() / fmt::format("latent{}_{}x{}.safetensors", latent, rows, cols);
    write_checkpoint(file, c);
    return file.string();
  }

  InspectOptions options(int latent, const std::string& out_name) {
    InspectOptions o;
    o.checkpoint = checkpoint(latent);
    o.data_dir = dir_.path().string();
    o.out_png = (dir_.path() / out_name).string();
    return o;
  }

  TempDir dir_;
};

TEST_F(InspectTest, SampleWritesAGridDeterminedByTheSeed) {
  InspectOptions o = options(4, "a.png");
  o.grid = 3;
  run_sample(o);
  const Png a = read_png(o.out_png);
  EXPECT_EQ(a.width, grid_extent(3, 28));
  EXPECT_EQ(a.height, grid_extent(3, 28));

  o.out_png = (dir_.path() / "b.png").string();
  run_sample(o);
  EXPECT_EQ(read_png(o.out_png).pixels, a.pixels);
  o.seed = 2;
  o.out_png = (dir_.path() / "c.png").string();
  run_sample(o);
  EXPECT_NE(read_png(o.out_png).pixels, a.pixels);
}

TEST_F(InspectTest, InterpolateShowsBothTestImagesAtTheEnds) {
  InspectOptions o = options(4, "walk.png");
  o.pair_i = 2;
  o.pair_j = 7;
  o.steps = 5;
  run_interpolate(o);
  const Png walk = read_png(o.out_png);
  const int tiles = o.steps + 2;
  EXPECT_EQ(walk.width, grid_extent(tiles, 28));
  EXPECT_EQ(walk.height, grid_extent(1, 28));
  const MnistSplit test = load_mnist_dir(dir_.path()).test;
  EXPECT_EQ(tile_of(walk, 0, tiles, 28), test_image(test, 2));
  EXPECT_EQ(tile_of(walk, tiles - 1, tiles, 28), test_image(test, 7));
}

TEST_F(InspectTest, InterpolateRejectsAPairOutsideTheTestSet) {
  InspectOptions o = options(4, "walk.png");
  o.pair_j = 70000;
  try {
    run_interpolate(o);
    FAIL() << "expected vae::UsageError";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--pair: image 70000 is outside the 10 test images");
  }
  o.pair_j = 1;
  o.pair_i = -1;
  EXPECT_THROW(run_interpolate(o), UsageError);
  o.pair_i = 0;
  o.steps = 1;
  EXPECT_THROW(run_interpolate(o), UsageError);
  o.steps = 10;
  o.data_dir.clear();
  EXPECT_THROW(run_interpolate(o), UsageError);
  EXPECT_FALSE(fs::exists(o.out_png));
}

TEST_F(InspectTest, LatentMapCoversThePlaneOfALatent2Model) {
  InspectOptions o = options(2, "map.png");
  o.grid = 4;
  run_latent_map(o);
  const Png map = read_png(o.out_png);
  EXPECT_EQ(map.width, grid_extent(4, 28));
  EXPECT_EQ(map.height, grid_extent(4, 28));
  EXPECT_NE(tile_of(map, 0, 4, 28), tile_of(map, 15, 4, 28));  // opposite corners of the plane differ
}

TEST_F(InspectTest, LatentMapNeedsLatent2) {
  InspectOptions o = options(20, "map.png");
  try {
    run_latent_map(o);
    FAIL() << "expected vae::UsageError";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--latent-map needs a model with latent 2, this one has 20");
  }
  EXPECT_FALSE(fs::exists(o.out_png));
}

TEST_F(InspectTest, MissingCheckpointOrOutputIsAnError) {
  InspectOptions o = options(4, "x.png");
  o.checkpoint = (dir_.path() / "absent.safetensors").string();
  try {
    run_sample(o);
    FAIL() << "expected vae::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos) << e.what();
  }
  o = options(4, "");
  o.out_png.clear();
  EXPECT_THROW(run_sample(o), UsageError);
  o = options(4, "x.png");
  o.grid = 0;
  EXPECT_THROW(run_sample(o), UsageError);
}

// Models of non-square images are drawn at the shape they were trained on, each tile the image's
// rows x cols: a 16x49 model (whose 784 pixels could pass for 28x28) and a 20x28 one (whose 560
// have no square shape at all).
class NonSquareInspect : public InspectTest, public ::testing::WithParamInterface<std::pair<int, int>> {};

TEST_P(NonSquareInspect, SampleAndLatentMapDrawAtTheRecordedShape) {
  const auto [rows, cols] = GetParam();
  InspectOptions o;
  o.checkpoint = checkpoint(2, rows, cols);
  o.out_png = (dir_.path() / "samples.png").string();
  o.grid = 3;
  run_sample(o);
  const Png samples = read_png(o.out_png);
  EXPECT_EQ(samples.width, 3 * cols + 4 * kTilePad);
  EXPECT_EQ(samples.height, 3 * rows + 4 * kTilePad);

  o.out_png = (dir_.path() / "map.png").string();
  o.grid = 4;
  run_latent_map(o);
  const Png map = read_png(o.out_png);
  EXPECT_EQ(map.width, 4 * cols + 5 * kTilePad);
  EXPECT_EQ(map.height, 4 * rows + 5 * kTilePad);
}

TEST_P(NonSquareInspect, InterpolateDrawsAtTheShapeOfItsTestImages) {
  const auto [rows, cols] = GetParam();
  TempDir data;
  testing_support::write_tiny_mnist(data.path(), 4, 10, rows, cols);
  InspectOptions o;
  o.checkpoint = checkpoint(4, rows, cols);
  o.data_dir = data.path().string();
  o.out_png = (dir_.path() / "walk.png").string();
  o.steps = 3;
  run_interpolate(o);
  const Png walk = read_png(o.out_png);
  EXPECT_EQ(walk.width, 5 * cols + 6 * kTilePad);
  EXPECT_EQ(walk.height, rows + 2 * kTilePad);
  const MnistSplit test = load_mnist_dir(data.path()).test;
  std::vector<uint8_t> first;  // tile 0 is test image 0, row by row at its true width
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      first.push_back(walk.pixels[static_cast<size_t>(kTilePad + r) * walk.width + kTilePad + c]);
  EXPECT_EQ(first, test_image(test, 0));
}

INSTANTIATE_TEST_SUITE_P(Shapes, NonSquareInspect, ::testing::Values(std::pair{16, 49}, std::pair{20, 28}),
                         [](const auto& info) {
                           return std::to_string(info.param.first) + "x" + std::to_string(info.param.second);
                         });

// Test images of the model's pixel count but another shape are not the model's images.
TEST_F(InspectTest, InterpolateOnTestImagesOfAnotherShapeIsAnError) {
  InspectOptions o;
  o.checkpoint = checkpoint(4, 16, 49);
  o.data_dir = dir_.path().string();  // 28x28: 784 pixels too
  o.out_png = (dir_.path() / "walk.png").string();
  try {
    run_interpolate(o);
    FAIL() << "expected vae::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test images are 28x28, the model in " + o.checkpoint + " was trained on 16x49"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out_png));
}

TEST(EpochImages, NonSquareImagesAreDrawnAtTheirShape) {
  TempDir dir;
  testing_support::write_tiny_mnist(dir.path(), 4, 10, 16, 49);
  const MnistSplit test = load_mnist_dir(dir.path()).test;
  ModelConfig model = small_model(4);
  model.input = 16 * 49;
  write_epoch_images(dir.path() / "out", 1, model, initial_params(model, 2), test, 1);
  const Png recon = read_png(dir.path() / "out" / "reconstruction_epoch_001.png");
  EXPECT_EQ(recon.width, 8 * 49 + 9 * kTilePad);
  EXPECT_EQ(recon.height, 2 * 16 + 3 * kTilePad);
  const Png samples = read_png(dir.path() / "out" / "samples_epoch_001.png");
  EXPECT_EQ(samples.width, 8 * 49 + 9 * kTilePad);
  EXPECT_EQ(samples.height, 8 * 16 + 9 * kTilePad);
}

// ---- tools/plot ----

bool matplotlib_present() {
  return testing_support::run_process("/usr/bin/python3", "-c 'import matplotlib'").exit_code == 0;
}

std::string plot_command(const fs::path& csv, const std::string& out) {
  return "'" VAE_SOURCE_DIR "/tools/plot' '" + csv.string() + "'" + (out.empty() ? "" : " '" + out + "'");
}

TEST(PlotTool, DrawsTheLossCurvesIntoAPng) {
  if (!matplotlib_present()) GTEST_SKIP() << "python3-matplotlib is not installed (tools/setup.sh installs it)";
  TempDir dir;
  std::ofstream(dir.path() / "metrics.csv")
      << "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds,lr\n"  // as vae_cuda writes it
         "1,469,164.5,150.1,14.4,127.3,50000.0,1.200,0.001\n"
         "2,938,121.8,98.0,23.8,115.0,52000.0,1.100,0.0001\n";
  const auto result = testing_support::run_process("/usr/bin/python3", plot_command(dir.path() / "metrics.csv", ""));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const Png png = read_png(dir.path() / "loss_curves.png");  // the default: beside the CSV
  EXPECT_GT(png.width, 100);
  EXPECT_GT(png.height, 100);

  const std::string named = (dir.path() / "curves.png").string();
  ASSERT_EQ(testing_support::run_process("/usr/bin/python3", plot_command(dir.path() / "metrics.csv", named)).exit_code,
            0);
  EXPECT_GT(read_png(named).width, 100);
}

TEST(PlotTool, CreatesMissingFoldersAndNamesAFileInTheWay) {
  if (!matplotlib_present()) GTEST_SKIP() << "python3-matplotlib is not installed (tools/setup.sh installs it)";
  TempDir dir;
  std::ofstream(dir.path() / "metrics.csv") << "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds\n"
                                               "1,469,164.5,150.1,14.4,127.3,50000.0,1.200\n";
  const std::string nested = (dir.path() / "a" / "b" / "curves.png").string();
  auto result = testing_support::run_process("/usr/bin/python3", plot_command(dir.path() / "metrics.csv", nested));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_GT(read_png(nested).width, 100);

  std::ofstream(dir.path() / "blocker") << "a file";
  const std::string blocked = (dir.path() / "blocker" / "curves.png").string();
  result = testing_support::run_process("/usr/bin/python3", plot_command(dir.path() / "metrics.csv", blocked));
  EXPECT_EQ(result.exit_code, 1);
  const std::string blocker = (dir.path() / "blocker").string();
  EXPECT_EQ(result.output,
            "plot: " + blocked + ": cannot create its folder " + blocker + ": " + blocker + " is a file, not a folder\n");
}

TEST(PlotTool, EmptyOrBrokenCsvExits1WithOneLine) {
  if (!matplotlib_present()) GTEST_SKIP() << "python3-matplotlib is not installed (tools/setup.sh installs it)";
  TempDir dir;
  std::ofstream(dir.path() / "empty.csv");
  auto result = testing_support::run_process("/usr/bin/python3", plot_command(dir.path() / "empty.csv", ""));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("empty.csv: empty file"), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;

  std::ofstream(dir.path() / "bad.csv") << "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds\n"
                                           "1,469,oops,150.1,14.4,127.3,50000.0,1.2\n";
  result = testing_support::run_process("/usr/bin/python3", plot_command(dir.path() / "bad.csv", ""));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("train_loss"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(dir.path() / "loss_curves.png"));
}

}  // namespace
}  // namespace vae
