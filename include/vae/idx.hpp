// Reader for MNIST-format IDX files (raw or gzip-compressed), the training data of the engine.
// Every defect of a file -- wrong header, wrong size, corrupt compression -- is a vae::Error that
// names the file and the defect, so a bad download is diagnosed before any training starts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace vae {

// One split of an MNIST-format data set: count images of rows x cols uint8 pixels, row-major,
// image after image, plus one uint8 label per image.
struct MnistSplit {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols
  std::vector<uint8_t> labels;  // count
  int image_size() const { return rows * cols; }
};

struct MnistData {
  MnistSplit train, test;
};

struct IdxImages {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
};

IdxImages read_idx_images(const std::filesystem::path& file);             // rank-3 uint8 IDX
std::vector<uint8_t> read_idx_labels(const std::filesystem::path& file);  // rank-1 uint8 IDX

// Reads an images file and its labels file and checks that their counts agree.
MnistSplit read_mnist_split(const std::filesystem::path& images,
                            const std::filesystem::path& labels);

enum class SplitName { kTrain, kTest };

// One split of what load_mnist_dir reads (train-* or t10k-*), for commands that need only one.
MnistSplit load_mnist_split(const std::filesystem::path& dir, SplitName split);

// Loads DIR/{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte}, each either raw or with a .gz suffix (raw preferred when both
// exist). A missing directory or file is an Error naming it.
MnistData load_mnist_dir(const std::filesystem::path& dir);

}  // namespace vae
