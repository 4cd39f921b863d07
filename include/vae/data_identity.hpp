// What identifies a training set: its image shape, its size and fingerprints of its bytes. A
// checkpoint records it, so that --resume can refuse other data (which would silently shift the
// position in an epoch) and the drawing commands know the images' true rows x cols.
#pragma once

#include <cstdint>
#include <string>

#include "vae/idx.hpp"

namespace vae {

struct DataIdentity {
  int rows = 0, cols = 0;      // of every image
  int64_t count = 0;           // training images
  uint64_t images_xxh3 = 0;    // XXH3-64 of the training pixels, image after image
  uint64_t labels_xxh3 = 0;    // XXH3-64 of the training labels
  bool operator==(const DataIdentity&) const = default;
};

// Hashes the split's pixels and labels (XXH3, about 10 GB/s: a few ms for MNIST's 47 MB); call it
// once per run.
DataIdentity identify_training_data(const MnistSplit& train);

// What differs between the data a checkpoint recorded and the data at hand, in words ("6144 training
// images recorded, 4096 found; ..."); empty when they are the same. A shape or count that differs is
// named instead of the fingerprints it changes.
std::string describe_data_change(const DataIdentity& recorded, const DataIdentity& found);

}  // namespace vae
