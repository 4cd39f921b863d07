// Training-data identity: shape, count and XXH3 fingerprints (Debian's libxxhash, used header-only
// through XXH_INLINE_ALL so that no build, the portable one included, needs its shared library).
#include "vae/data_identity.hpp"

#include <fmt/format.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace vae {

DataIdentity identify_training_data(const MnistSplit& train) {
  DataIdentity id;
  id.rows = train.rows;
  id.cols = train.cols;
  id.count = train.count;
  id.images_xxh3 = XXH3_64bits(train.pixels.data(), train.pixels.size());
  id.labels_xxh3 = XXH3_64bits(train.labels.data(), train.labels.size());
  return id;
}

std::string describe_data_change(const DataIdentity& recorded, const DataIdentity& found) {
  std::string what;
  auto add = [&](const std::string& difference) { what += (what.empty() ? "" : "; ") + difference; };
  if (recorded.rows != found.rows || recorded.cols != found.cols)
    add(fmt::format("images of {}x{} recorded, {}x{} found", recorded.rows, recorded.cols, found.rows, found.cols));
  if (recorded.count != found.count)
    add(fmt::format("{} training images recorded, {} found", recorded.count, found.count));
  if (!what.empty()) return what;  // the fingerprints differ too, and say nothing more
  if (recorded.images_xxh3 != found.images_xxh3)
    add(fmt::format("the same number of training images but different pixels (XXH3 {:016x} recorded, {:016x} found)",
                    recorded.images_xxh3, found.images_xxh3));
  if (recorded.labels_xxh3 != found.labels_xxh3)
    add(fmt::format("different training labels (XXH3 {:016x} recorded, {:016x} found)", recorded.labels_xxh3,
                    found.labels_xxh3));
  return what;
}

}  // namespace vae
