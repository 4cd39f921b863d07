// The seeded permutation that orders each epoch's batches: a Fisher-Yates shuffle driven by Philox,
// so the order depends on (seed, epoch) alone and is the same on every machine and backend.
#pragma once

#include <cstdint>
#include <vector>

namespace vae {

std::vector<uint32_t> shuffled_indices(uint32_t count, uint64_t seed, uint64_t epoch);

// Sequential uint32 draws from one Philox stream, four per block.
class PhiloxBitStream {
 public:
  PhiloxBitStream(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  uint32_t next();
  // Uniform in [0, range) without modulo bias (Lemire's multiply-and-reject).
  uint32_t below(uint32_t range);

 private:
  uint64_t seed_, stream_;
  uint64_t group_ = 0;
  int lane_ = 4;
  uint32_t block_[4] = {};
};

}  // namespace vae
