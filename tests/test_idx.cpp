// Tests of the IDX reader: exact round trips of raw and gzip files, and one test per way a data
// file can be broken, each checking that the Error names the file and the defect, since that
// message is all a user sees when a download went wrong.

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "vae/error.hpp"
#include "vae/idx.hpp"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// A well-formed header for any element type and rank, so each test breaks only what it tests.
Bytes idx_bytes(uint8_t element_type, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes bytes = {0, 0, element_type, static_cast<uint8_t>(dims.size())};
  for (uint32_t dim : dims) {
    for (int shift = 24; shift >= 0; shift -= 8)
      bytes.push_back(static_cast<uint8_t>(dim >> shift));
  }
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  return bytes;
}

// Varied values, including 0 and 255, so a shifted or dropped byte shows up.
Bytes pattern(size_t size, uint8_t seed) {
  Bytes bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + 37 * i);
  if (size > 1) bytes[0] = 0, bytes[size - 1] = 255;
  return bytes;
}

void write_raw(const fs::path& file, const Bytes& bytes) {
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << file;
}

void write_gz(const fs::path& file, const Bytes& bytes) {
  gzFile out = gzopen(file.c_str(), "wb");
  ASSERT_NE(out, nullptr) << "cannot create " << file;
  const int written =
      bytes.empty() ? 0 : gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size()));
  ASSERT_EQ(written, static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(out), Z_OK);
}

Bytes read_raw(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Passes only when action throws vae::Error and its message contains every fragment.
template <class Action>
testing::AssertionResult throws_error_with(Action action,
                                           std::initializer_list<std::string> fragments) {
  try {
    action();
  } catch (const vae::Error& error) {
    const std::string message = error.what();
    for (const std::string& fragment : fragments) {
      if (message.find(fragment) == std::string::npos) {
        return testing::AssertionFailure()
               << "message \"" << message << "\" lacks \"" << fragment << "\"";
      }
    }
    if (message.find('\n') != std::string::npos) {
      return testing::AssertionFailure() << "message spans several lines: " << message;
    }
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "no vae::Error was thrown";
}

// Every test gets its own fresh directory so runs in parallel (ctest -j) cannot collide.
class IdxTest : public testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    for (int attempt = 0; attempt < 100 && dir_.empty(); ++attempt) {
      fs::path candidate = fs::temp_directory_path() / ("vae_test_idx_" + std::to_string(random()));
      if (fs::create_directory(candidate)) dir_ = candidate;
    }
    ASSERT_FALSE(dir_.empty()) << "cannot create a temp directory";
  }
  void TearDown() override {
    std::error_code ignored;
    if (!dir_.empty()) fs::remove_all(dir_, ignored);
  }

  fs::path path(const std::string& name) const { return dir_ / name; }

  // Writes bytes uncompressed under name and returns the path.
  fs::path raw_file(const std::string& name, const Bytes& bytes) {
    write_raw(path(name), bytes);
    return path(name);
  }

  fs::path dir_;
};

// --- Well-formed files -------------------------------------------------------------------

TEST_F(IdxTest, ReadsRawImagesExactly) {
  const Bytes pixels = pattern(3 * 2 * 4, 7);
  const auto images = vae::read_idx_images(raw_file("images", idx_bytes(0x08, {3, 2, 4}, pixels)));
  EXPECT_EQ(images.count, 3);
  EXPECT_EQ(images.rows, 2);
  EXPECT_EQ(images.cols, 4);
  EXPECT_EQ(images.pixels, pixels);
}

TEST_F(IdxTest, ReadsRawLabelsExactly) {
  const Bytes labels = {0, 9, 3, 255, 1};
  EXPECT_EQ(vae::read_idx_labels(raw_file("labels", idx_bytes(0x08, {5}, labels))), labels);
}

TEST_F(IdxTest, ReadsGzipFilesExactly) {
  const Bytes pixels = pattern(4 * 3 * 5, 11);
  const Bytes labels = {1, 2, 3, 0};
  write_gz(path("images.gz"), idx_bytes(0x08, {4, 3, 5}, pixels));
  write_gz(path("labels.gz"), idx_bytes(0x08, {4}, labels));
  const vae::MnistSplit split = vae::read_mnist_split(path("images.gz"), path("labels.gz"));
  EXPECT_EQ(split.count, 4);
  EXPECT_EQ(split.rows, 3);
  EXPECT_EQ(split.cols, 5);
  EXPECT_EQ(split.image_size(), 15);
  EXPECT_EQ(split.pixels, pixels);
  EXPECT_EQ(split.labels, labels);
}

TEST_F(IdxTest, DetectsCompressionByContentNotByName) {
  const Bytes pixels = pattern(2 * 2 * 2, 3);
  write_gz(path("gzip-without-suffix"), idx_bytes(0x08, {2, 2, 2}, pixels));
  write_raw(path("raw-with-suffix.gz"), idx_bytes(0x08, {2, 2, 2}, pixels));
  EXPECT_EQ(vae::read_idx_images(path("gzip-without-suffix")).pixels, pixels);
  EXPECT_EQ(vae::read_idx_images(path("raw-with-suffix.gz")).pixels, pixels);
}

TEST_F(IdxTest, LoadsDirectoryMixingRawAndGzip) {
  const Bytes train_pixels = pattern(5 * 4 * 4, 1), test_pixels = pattern(2 * 4 * 4, 2);
  const Bytes train_labels = {0, 1, 2, 3, 4}, test_labels = {9, 8};
  write_raw(path("train-images-idx3-ubyte"), idx_bytes(0x08, {5, 4, 4}, train_pixels));
  write_gz(path("train-labels-idx1-ubyte.gz"), idx_bytes(0x08, {5}, train_labels));
  write_gz(path("t10k-images-idx3-ubyte.gz"), idx_bytes(0x08, {2, 4, 4}, test_pixels));
  write_raw(path("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {2}, test_labels));

  const vae::MnistData data = vae::load_mnist_dir(dir_);
  EXPECT_EQ(data.train.count, 5);
  EXPECT_EQ(data.train.pixels, train_pixels);
  EXPECT_EQ(data.train.labels, train_labels);
  EXPECT_EQ(data.test.count, 2);
  EXPECT_EQ(data.test.rows, 4);
  EXPECT_EQ(data.test.cols, 4);
  EXPECT_EQ(data.test.pixels, test_pixels);
  EXPECT_EQ(data.test.labels, test_labels);
}

TEST_F(IdxTest, PrefersRawFileOverGzipWhenBothExist) {
  const Bytes one_image = pattern(4, 5);
  for (const char* split : {"train", "t10k"}) {
    const std::string images = std::string(split) + "-images-idx3-ubyte";
    const std::string labels = std::string(split) + "-labels-idx1-ubyte";
    write_raw(path(images), idx_bytes(0x08, {1, 2, 2}, one_image));
    write_raw(path(labels), idx_bytes(0x08, {1}, {7}));
    // Broken stand-ins: loading would fail if they were chosen.
    write_raw(path(images + ".gz"), {1, 2, 3});
    write_raw(path(labels + ".gz"), {});
  }
  const vae::MnistData data = vae::load_mnist_dir(dir_);
  EXPECT_EQ(data.train.pixels, one_image);
  EXPECT_EQ(data.test.labels, Bytes{7});
}

// --- Malformed headers and sizes ---------------------------------------------------------

TEST_F(IdxTest, RejectsBadMagic) {
  Bytes bytes = idx_bytes(0x08, {1, 2, 2}, pattern(4, 0));
  bytes[1] = 0x01;
  const fs::path file = raw_file("bad-magic", bytes);
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(file); }, {file.string(), "magic"}));
}

TEST_F(IdxTest, RejectsEveryElementTypeButUnsignedByte) {
  const fs::path file = raw_file("float", idx_bytes(0x0D, {1, 2, 2}, Bytes(16)));
  EXPECT_TRUE(throws_error_with(
      [&] { vae::read_idx_images(file); },
      {file.string(), "element type 0x0D (float), expected 0x08 (unsigned byte)"}));
  for (uint8_t type : {0x09, 0x0B, 0x0C, 0x0E, 0x00, 0x42, 0xFF}) {
    const fs::path other = raw_file("type", idx_bytes(type, {4}, Bytes(4)));
    EXPECT_TRUE(
        throws_error_with([&] { vae::read_idx_labels(other); }, {other.string(), "element type"}))
        << "type byte " << int{type};
  }
}

TEST_F(IdxTest, RejectsWrongRank) {
  const fs::path labels_as_images = raw_file("rank1", idx_bytes(0x08, {4}, Bytes(4)));
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(labels_as_images); },
                                {labels_as_images.string(), "rank 1, expected 3"}));
  const fs::path images_as_labels = raw_file("rank3", idx_bytes(0x08, {1, 2, 2}, Bytes(4)));
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_labels(images_as_labels); },
                                {images_as_labels.string(), "rank 3, expected 1"}));
}

TEST_F(IdxTest, RejectsTruncatedPayload) {
  const fs::path file = raw_file("short", idx_bytes(0x08, {3, 2, 2}, Bytes(11)));
  EXPECT_TRUE(
      throws_error_with([&] { vae::read_idx_images(file); },
                        {file.string(), "truncated", "3x2x2 = 12 pixel bytes", "file has 11"}));
}

TEST_F(IdxTest, RejectsTruncatedPayloadInsideGzip) {
  write_gz(path("short.gz"), idx_bytes(0x08, {7}, Bytes(5)));
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_labels(path("short.gz")); },
                                {path("short.gz").string(), "truncated", "(decompressed)"}));
}

TEST_F(IdxTest, RejectsTrailingBytes) {
  const fs::path file = raw_file("long", idx_bytes(0x08, {3}, Bytes(5)));
  EXPECT_TRUE(
      throws_error_with([&] { vae::read_idx_labels(file); },
                        {file.string(), "2 trailing bytes", "= 3 label bytes", "file has 5"}));
}

TEST_F(IdxTest, RejectsFileShorterThanHeader) {
  Bytes header = idx_bytes(0x08, {60000, 28, 28}, {});
  header.resize(10);
  const fs::path cut_header = raw_file("cut-header", header);
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(cut_header); },
                                {cut_header.string(), "too short", "needs 16", "has 10"}));
  const fs::path three_bytes = raw_file("three-bytes", {0, 0, 8});
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_labels(three_bytes); },
                                {three_bytes.string(), "too short"}));
}

TEST_F(IdxTest, RejectsEmptyFile) {
  const fs::path file = raw_file("empty", {});
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(file); }, {file.string(), "empty"}));
  write_gz(path("empty.gz"), {});
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_labels(path("empty.gz")); },
                                {path("empty.gz").string(), "empty"}));
}

TEST_F(IdxTest, RejectsOverflowingDimensionsWithoutAllocating) {
  const fs::path file =
      raw_file("overflow", idx_bytes(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, Bytes(8)));
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(file); }, {file.string(), "overflow"}));
}

TEST_F(IdxTest, RejectsHugeDimensionsAsTruncatedWithoutAllocating) {
  const fs::path file = raw_file("huge", idx_bytes(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 1}, Bytes(8)));
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(file); }, {file.string(), "truncated"}));
}

TEST_F(IdxTest, RejectsZeroCountAndZeroSizedImages) {
  const fs::path no_images = raw_file("no-images", idx_bytes(0x08, {0, 28, 28}, {}));
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(no_images); },
                                {no_images.string(), "zero images"}));
  const fs::path no_labels = raw_file("no-labels", idx_bytes(0x08, {0}, {}));
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_labels(no_labels); },
                                {no_labels.string(), "zero labels"}));
  const fs::path no_rows = raw_file("no-rows", idx_bytes(0x08, {5, 0, 28}, {}));
  EXPECT_TRUE(
      throws_error_with([&] { vae::read_idx_images(no_rows); }, {no_rows.string(), "zero-sized"}));
}

TEST_F(IdxTest, RejectsImageAndLabelCountMismatch) {
  const fs::path images = raw_file("images", idx_bytes(0x08, {3, 1, 2}, Bytes(6)));
  const fs::path labels = raw_file("labels", idx_bytes(0x08, {2}, Bytes(2)));
  EXPECT_TRUE(
      throws_error_with([&] { vae::read_mnist_split(images, labels); },
                        {images.string(), labels.string(), "3 images", "2 labels", "mismatch"}));
}

// --- Broken compression ------------------------------------------------------------------

TEST_F(IdxTest, RejectsCorruptGzipData) {
  // A valid gzip header followed by a deflate block of the reserved type 3.
  const fs::path file =
      raw_file("corrupt.gz", {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF});
  EXPECT_TRUE(
      throws_error_with([&] { vae::read_idx_images(file); }, {file.string(), "corrupt gzip"}));
}

TEST_F(IdxTest, RejectsTruncatedGzipStream) {
  write_gz(path("whole.gz"), idx_bytes(0x08, {50, 10, 10}, pattern(5000, 9)));
  Bytes compressed = read_raw(path("whole.gz"));
  ASSERT_GT(compressed.size(), 40u);
  compressed.resize(compressed.size() / 2);
  const fs::path file = raw_file("half.gz", compressed);
  EXPECT_TRUE(
      throws_error_with([&] { vae::read_idx_images(file); }, {file.string(), "corrupt gzip"}));
}

TEST_F(IdxTest, RejectsGzipWithWrongChecksum) {
  write_gz(path("whole.gz"), idx_bytes(0x08, {4}, Bytes{1, 2, 3, 4}));
  Bytes compressed = read_raw(path("whole.gz"));
  compressed[compressed.size() - 8] ^= 0x55;  // first byte of the CRC-32 trailer
  const fs::path file = raw_file("bad-crc.gz", compressed);
  EXPECT_TRUE(
      throws_error_with([&] { vae::read_idx_labels(file); }, {file.string(), "corrupt gzip"}));
}

// --- Missing files and directories -------------------------------------------------------

TEST_F(IdxTest, RejectsMissingFile) {
  const fs::path file = path("no-such-file");
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_images(file); }, {file.string(), "not found"}));
}

TEST_F(IdxTest, RejectsDirectoryGivenAsFile) {
  EXPECT_TRUE(throws_error_with([&] { vae::read_idx_labels(dir_); }, {dir_.string(), "directory"}));
}

TEST_F(IdxTest, RejectsMissingDirectory) {
  const fs::path missing = path("no-such-dir");
  EXPECT_TRUE(
      throws_error_with([&] { vae::load_mnist_dir(missing); }, {missing.string(), "not found"}));
  const fs::path plain_file = raw_file("plain", {1});
  EXPECT_TRUE(throws_error_with([&] { vae::load_mnist_dir(plain_file); },
                                {plain_file.string(), "not a directory"}));
}

TEST_F(IdxTest, RejectsDirectoryMissingOneFile) {
  write_raw(path("train-images-idx3-ubyte"), idx_bytes(0x08, {1, 1, 1}, {0}));
  write_raw(path("train-labels-idx1-ubyte"), idx_bytes(0x08, {1}, {0}));
  write_raw(path("t10k-images-idx3-ubyte"), idx_bytes(0x08, {1, 1, 1}, {0}));
  EXPECT_TRUE(throws_error_with([&] { vae::load_mnist_dir(dir_); },
                                {path("t10k-labels-idx1-ubyte").string(), "not found", ".gz"}));
}

TEST_F(IdxTest, RejectsTrainAndTestImagesOfDifferentShapes) {
  write_raw(path("train-images-idx3-ubyte"), idx_bytes(0x08, {1, 2, 2}, Bytes(4)));
  write_raw(path("train-labels-idx1-ubyte"), idx_bytes(0x08, {1}, {0}));
  write_raw(path("t10k-images-idx3-ubyte"), idx_bytes(0x08, {1, 3, 3}, Bytes(9)));
  write_raw(path("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {1}, {0}));
  EXPECT_TRUE(throws_error_with([&] { vae::load_mnist_dir(dir_); }, {dir_.string(), "2x2", "3x3"}));
}

// --- The real data set, where the machine has it -----------------------------------------

TEST(RealData, LoadsFashionMnistFromDebianPackage) {
  const fs::path dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir))
    GTEST_SKIP() << dir << " not installed (Debian package dataset-fashion-mnist)";
  const vae::MnistData data = vae::load_mnist_dir(dir);
  EXPECT_EQ(data.train.count, 60000);
  EXPECT_EQ(data.test.count, 10000);
  for (const vae::MnistSplit* split : {&data.train, &data.test}) {
    EXPECT_EQ(split->rows, 28);
    EXPECT_EQ(split->cols, 28);
    EXPECT_EQ(split->pixels.size(), static_cast<size_t>(split->count) * 28 * 28);
    ASSERT_EQ(split->labels.size(), static_cast<size_t>(split->count));
    for (uint8_t label : split->labels) ASSERT_LT(label, 10);
  }
}

}  // namespace
