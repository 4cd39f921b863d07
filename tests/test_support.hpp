// Helpers shared by the test suites: a self-removing temporary directory, a writer of small
// MNIST-format data sets, and running the vae_cuda binary to capture its output and exit code.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "vae/idx.hpp"

namespace vae::testing_support {

class TempDir {
 public:
  TempDir() {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() / ("vae_test_" + std::to_string(entropy()) + std::to_string(entropy()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A uint8 IDX file: magic 00 00 08 rank, big-endian dimensions, then the payload.
inline void write_idx(const std::filesystem::path& file, const std::vector<uint32_t>& dims,
                      const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(d >> shift));
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
}

// A tiny MNIST-format data set of random rows x cols images in dir (created if missing); the same
// seed and sizes give the same files.
inline void write_tiny_mnist(const std::filesystem::path& dir, uint32_t train_count, uint32_t test_count,
                             uint32_t rows = 28, uint32_t cols = 28, uint32_t seed = 1) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(seed);
  auto split = [&](const std::string& prefix, uint32_t count) {
    std::vector<uint8_t> pixels(static_cast<size_t>(count) * rows * cols), labels(count);
    for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng() % 256);
    for (uint8_t& l : labels) l = static_cast<uint8_t>(rng() % 10);
    write_idx(dir / (prefix + "-images-idx3-ubyte"), {count, rows, cols}, pixels);
    write_idx(dir / (prefix + "-labels-idx1-ubyte"), {count}, labels);
  };
  split("train", train_count);
  split("t10k", test_count);
}

// An in-memory split of count random 28x28 images (labels 0), for tests that need no file.
inline MnistSplit random_split(uint32_t count, uint32_t seed) {
  MnistSplit split;
  split.count = count;
  split.rows = split.cols = 28;
  std::mt19937 rng(seed);
  split.pixels.resize(static_cast<size_t>(count) * 784);
  for (uint8_t& p : split.pixels) p = static_cast<uint8_t>(rng() % 256);
  split.labels.assign(count, 0);
  return split;
}

// count 28x28 images of a few bright discs on a dark ground, as a split (labels 0): something a
// model can learn, with MNIST's many zero pixels, for tests that train.
inline MnistSplit disc_split(uint32_t count, uint32_t seed) {
  MnistSplit split;
  split.count = count;
  split.rows = split.cols = 28;
  split.pixels.assign(static_cast<size_t>(count) * 784, 0);
  split.labels.assign(count, 0);
  std::mt19937 rng(seed);
  for (uint32_t i = 0; i < count; ++i)
    for (int disc = 0; disc < 3; ++disc) {
      const int cx = static_cast<int>(rng() % 20) + 4, cy = static_cast<int>(rng() % 20) + 4;
      for (int y = 0; y < 28; ++y)
        for (int x = 0; x < 28; ++x) {
          const int d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
          uint8_t& p = split.pixels[static_cast<size_t>(i) * 784 + y * 28 + x];
          if (d2 < 16) p = static_cast<uint8_t>(std::max<int>(p, 255 - d2 * 12));
        }
    }
  return split;
}

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `binary args` through the shell with stderr folded into stdout.
inline ProcessResult run_process(const std::string& binary, const std::string& args) {
  ProcessResult result;
  const std::string command = "'" + binary + "' " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// A command's failure as main() reports it: the exit code, and one line that says `says`.
inline void expect_one_line_error(const ProcessResult& r, int exit_code, const std::string& says,
                                  const std::string& context) {
  EXPECT_EQ(r.exit_code, exit_code) << context << "\n" << r.output;
  EXPECT_NE(r.output.find(says), std::string::npos) << context << "\n" << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << context << "\n" << r.output;
}

// A bad invocation and how it must fail.
struct ExpectedFailure {
  std::string args;
  int exit_code;
  std::string says;
};

// Runs `binary common_args args` for each case and expects its one-line failure.
inline void expect_one_line_errors(const std::string& binary, const std::string& common_args,
                                   const std::vector<ExpectedFailure>& cases) {
  for (const ExpectedFailure& c : cases)
    expect_one_line_error(run_process(binary, common_args + " " + c.args), c.exit_code, c.says, c.args);
}

}  // namespace vae::testing_support
