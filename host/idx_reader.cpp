// Reads MNIST-format IDX files into memory, trusting no header field until it has been checked.
// The whole (decompressed) file is read first under a fixed cap, and the header must then account
// for every byte of it, so a lying header or a gzip bomb becomes a one-line Error, never a crash.

#include "vae/idx.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>

#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;

// MNIST is ~47 MB uncompressed; anything beyond 1 GiB is a wrong file or a gzip bomb.
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 30;

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
  throw Error(file.string() + ": " + what);
}

// A failed stat (permission, I/O) must not pass for "not found", or the message would mislead.
fs::file_type type_of(const fs::path& path) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (ec && status.type() != fs::file_type::not_found) fail(path, "cannot access: " + ec.message());
  return status.type();
}

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

// zlib prefixes its messages with the path, which our own prefix already gives.
std::string zlib_message(gzFile handle, const fs::path& file) {
  int code = Z_OK;
  std::string message = gzerror(handle, &code);
  const std::string prefix = file.string() + ": ";
  if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
  return message;
}

struct FileContent {
  std::vector<uint8_t> bytes;  // decompressed when the file was gzip
  bool was_gzip = false;
};

// zlib sniffs the gzip magic (1f 8b) and passes other files through unchanged, so compression is
// recognised by content: a misnamed file still loads.
FileContent read_whole_file(const fs::path& file) {
  const fs::file_type type = type_of(file);
  if (type == fs::file_type::not_found) fail(file, "not found");
  if (type == fs::file_type::directory) fail(file, "is a directory, expected an IDX file");

  GzHandle handle(gzopen(file.c_str(), "rb"));
  if (!handle) fail(file, std::string("cannot open: ") + std::strerror(errno));
  gzbuffer(handle.get(), 1u << 17);  // fewer system calls than zlib's 8 KiB default

  constexpr size_t kChunk = size_t{1} << 20;
  FileContent content;
  std::vector<uint8_t>& bytes = content.bytes;
  // The on-disk size is the whole content of a raw file and a starting guess for a gzip one.
  std::error_code ec;
  const uintmax_t disk_size = fs::file_size(file, ec);
  bytes.reserve(ec ? kChunk : std::min<uintmax_t>(disk_size, kMaxFileBytes) + kChunk);
  for (;;) {
    const size_t before = bytes.size();
    if (before > kMaxFileBytes) {
      fail(file, "larger than the 1 GiB limit once decompressed; not an MNIST-sized IDX file");
    }
    // Reading at most one byte past the cap is enough to detect it, and growing the buffer by
    // hand keeps the largest allocation near the cap instead of doubling past it.
    const size_t want = std::min<size_t>(kChunk, kMaxFileBytes + 1 - before);
    if (before + want > bytes.capacity()) {
      bytes.reserve(std::min<size_t>(2 * bytes.capacity(), kMaxFileBytes + 1));
    }
    bytes.resize(before + want);
    const int got = gzread(handle.get(), bytes.data() + before, static_cast<unsigned>(want));
    if (got < 0) {
      int code = Z_OK;
      gzerror(handle.get(), &code);
      const char* problem = code == Z_ERRNO ? "read error: " : "corrupt gzip data: ";
      fail(file, problem + zlib_message(handle.get(), file));
    }
    bytes.resize(before + static_cast<size_t>(got));
    if (got == 0) break;
  }
  // A stream cut short reads as a clean end of file; only the error state tells them apart.
  int code = Z_OK;
  gzerror(handle.get(), &code);
  if (code != Z_OK) fail(file, "corrupt gzip data: " + zlib_message(handle.get(), file));
  content.was_gzip = !gzdirect(handle.get());
  return content;
}

const char* element_type_name(uint8_t code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "short";
    case 0x0C:
      return "int";
    case 0x0D:
      return "float";
    case 0x0E:
      return "double";
    default:
      return "not an IDX type";
  }
}

std::string hex_byte(uint8_t value) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02X", static_cast<unsigned>(value));
  return text;
}

std::string join_dims(const std::vector<uint32_t>& dims) { return fmt::format("{}", fmt::join(dims, "x")); }

// What the caller expects of a file; the words feed the error messages.
struct IdxExpectation {
  int rank;
  const char* rank_meaning;  // e.g. "count x rows x cols"
  const char* items;         // e.g. "images"
  const char* payload;       // e.g. "pixel bytes"
};

// Validates the header of an in-memory uint8 IDX file, strips it, and returns the dimensions.
// On return the remaining bytes are exactly the product of the dimensions, none of which is 0.
std::vector<uint32_t> take_idx_payload(const fs::path& file, FileContent& content,
                                       const IdxExpectation& expect) {
  std::vector<uint8_t>& bytes = content.bytes;
  const std::string decompressed = content.was_gzip ? " (decompressed)" : "";
  if (bytes.empty()) fail(file, "empty file" + decompressed);
  if (bytes.size() < 4) {
    fail(file, "too short for an IDX header: " + std::to_string(bytes.size()) + " bytes" +
                   decompressed + ", need at least 4");
  }
  if (bytes[0] != 0 || bytes[1] != 0) {
    fail(file, "bad magic: first two bytes are " + hex_byte(bytes[0]) + " " + hex_byte(bytes[1]) +
                   ", expected 0x00 0x00 (not an IDX file)");
  }
  if (bytes[2] != 0x08) {
    fail(file, "element type " + hex_byte(bytes[2]) + " (" + element_type_name(bytes[2]) +
                   "), expected 0x08 (unsigned byte)");
  }
  if (bytes[3] != expect.rank) {
    fail(file, "rank " + std::to_string(bytes[3]) + ", expected " + std::to_string(expect.rank) +
                   " (" + expect.rank_meaning + ")");
  }
  const size_t header_bytes = 4 + 4 * static_cast<size_t>(expect.rank);
  if (bytes.size() < header_bytes) {
    fail(file, "too short for an IDX header: rank " + std::to_string(expect.rank) + " needs " +
                   std::to_string(header_bytes) + " bytes, file has " +
                   std::to_string(bytes.size()) + decompressed);
  }

  std::vector<uint32_t> dims(expect.rank);
  for (int d = 0; d < expect.rank; ++d) {
    const uint8_t* field = &bytes[4 + 4 * d];  // IDX stores dimensions big-endian
    dims[d] = uint32_t{field[0]} << 24 | uint32_t{field[1]} << 16 | uint32_t{field[2]} << 8 |
              uint32_t{field[3]};
  }
  const std::string dims_text = join_dims(dims);
  if (dims[0] == 0) fail(file, std::string("zero ") + expect.items + ": header says " + dims_text);
  for (int d = 1; d < expect.rank; ++d) {
    if (dims[d] == 0) fail(file, "zero-sized images: header says " + dims_text);
  }

  uint64_t expected_payload = 1;
  for (uint32_t dim : dims) {
    if (__builtin_mul_overflow(expected_payload, uint64_t{dim}, &expected_payload)) {
      fail(file, "dimensions " + dims_text + " overflow a 64-bit byte count (corrupt header)");
    }
  }
  const uint64_t actual_payload = bytes.size() - header_bytes;
  if (actual_payload != expected_payload) {
    const std::string problem =
        actual_payload < expected_payload
            ? std::string("truncated")
            : std::to_string(actual_payload - expected_payload) + " trailing bytes";
    fail(file, problem + ": header says " + dims_text + " = " + std::to_string(expected_payload) +
                   " " + expect.payload + ", file has " + std::to_string(actual_payload) +
                   " after the " + std::to_string(header_bytes) + "-byte header" + decompressed);
  }
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header_bytes));
  return dims;
}

// Picks DIR/NAME, else DIR/NAME.gz; the raw file wins so a user's own decompressed copy is used.
fs::path find_data_file(const fs::path& dir, const std::string& name) {
  const fs::path raw = dir / name;
  if (type_of(raw) != fs::file_type::not_found) return raw;
  const fs::path gz = dir / (name + ".gz");
  if (type_of(gz) != fs::file_type::not_found) return gz;
  fail(raw, "not found (nor " + gz.filename().string() + ")");
}

}  // namespace

IdxImages read_idx_images(const fs::path& file) {
  FileContent content = read_whole_file(file);
  const std::vector<uint32_t> dims =
      take_idx_payload(file, content, {3, "count x rows x cols", "images", "pixel bytes"});
  // The 1 GiB cap bounds the product of the dimensions, so these narrowing casts are exact.
  IdxImages images;
  images.count = dims[0];
  images.rows = static_cast<int>(dims[1]);
  images.cols = static_cast<int>(dims[2]);
  images.pixels = std::move(content.bytes);
  return images;
}

std::vector<uint8_t> read_idx_labels(const fs::path& file) {
  FileContent content = read_whole_file(file);
  take_idx_payload(file, content, {1, "one label per image", "labels", "label bytes"});
  return std::move(content.bytes);
}

MnistSplit read_mnist_split(const fs::path& images_file, const fs::path& labels_file) {
  IdxImages images = read_idx_images(images_file);
  std::vector<uint8_t> labels = read_idx_labels(labels_file);
  if (static_cast<uint64_t>(images.count) != labels.size()) {
    fail(images_file, "count mismatch: " + std::to_string(images.count) + " images but " +
                          labels_file.string() + " has " + std::to_string(labels.size()) +
                          " labels");
  }
  MnistSplit split;
  split.count = images.count;
  split.rows = images.rows;
  split.cols = images.cols;
  split.pixels = std::move(images.pixels);
  split.labels = std::move(labels);
  return split;
}

MnistSplit load_mnist_split(const fs::path& dir, SplitName split) {
  const fs::file_type type = type_of(dir);
  if (type == fs::file_type::not_found) fail(dir, "data directory not found");
  if (type != fs::file_type::directory)
    fail(dir, "not a directory, expected an MNIST data directory");
  const std::string prefix = split == SplitName::kTrain ? "train" : "t10k";
  return read_mnist_split(find_data_file(dir, prefix + "-images-idx3-ubyte"),
                          find_data_file(dir, prefix + "-labels-idx1-ubyte"));
}

MnistData load_mnist_dir(const fs::path& dir) {
  MnistData data;
  data.train = load_mnist_split(dir, SplitName::kTrain);
  data.test = load_mnist_split(dir, SplitName::kTest);
  // One model serves both splits, so their images must have the same shape.
  if (data.train.rows != data.test.rows || data.train.cols != data.test.cols) {
    fail(dir, "train images are " + std::to_string(data.train.rows) + "x" +
                  std::to_string(data.train.cols) + " but test images are " +
                  std::to_string(data.test.rows) + "x" + std::to_string(data.test.cols));
  }
  return data;
}

}  // namespace vae
