// Seeded shuffling for the data order of each epoch.
#include "vae/shuffle.hpp"

#include <numeric>
#include <utility>

#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"

namespace vae {

uint32_t PhiloxBitStream::next() {
  if (lane_ == 4) {
    const Philox4 bits = philox_bits(seed_, stream_, group_++);
    for (int i = 0; i < 4; ++i) block_[i] = bits.v[i];
    lane_ = 0;
  }
  return block_[lane_++];
}

uint32_t PhiloxBitStream::below(uint32_t range) {
  uint64_t product = static_cast<uint64_t>(next()) * range;
  auto low = static_cast<uint32_t>(product);
  if (low < range) {
    const uint32_t threshold = (0u - range) % range;  // 2^32 mod range
    while (low < threshold) {
      product = static_cast<uint64_t>(next()) * range;
      low = static_cast<uint32_t>(product);
    }
  }
  return static_cast<uint32_t>(product >> 32);
}

std::vector<uint32_t> shuffled_indices(uint32_t count, uint64_t seed, uint64_t epoch) {
  std::vector<uint32_t> order(count);
  std::iota(order.begin(), order.end(), 0u);
  PhiloxBitStream bits(seed, noise_stream(NoisePurpose::kShuffle, epoch));
  for (uint32_t i = count; i > 1; --i) std::swap(order[i - 1], order[bits.below(i)]);
  return order;
}

}  // namespace vae
