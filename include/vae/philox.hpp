// Philox4x32-10 counter-based generator and its Box-Muller normals, laid out exactly as cuRAND's
// device API lays them out, so that the CPU reference draws the same ε as a GPU kernel that calls
// curand_init(seed, subsequence, 4*g, &s) followed by curand_normal4(&s).
#pragma once

#include <cmath>
#include <cstdint>

#include "vae/hd.hpp"

namespace vae {

struct Philox4 {
  uint32_t v[4];
};

VAE_HD uint32_t philox_mulhi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// One Philox round: two 32x32->64 multiplies and a key xor (Salmon et al., SC'11).
VAE_HD Philox4 philox_round(Philox4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  const uint32_t hi0 = philox_mulhi(kM0, c.v[0]), lo0 = kM0 * c.v[0];
  const uint32_t hi1 = philox_mulhi(kM1, c.v[2]), lo1 = kM1 * c.v[2];
  return Philox4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
}

// The ten-round block function: counter and key in, 128 random bits out.
VAE_HD Philox4 philox4x32_10(Philox4 counter, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 9; ++round) {
    counter = philox_round(counter, k0, k1);
    k0 += kW0;
    k1 += kW1;
  }
  return philox_round(counter, k0, k1);
}

// The 128 bits of block `group` in the stream (seed, subsequence), with cuRAND's counter layout:
// the group in the low 64 counter bits, the subsequence in the high 64, the seed as the key.
VAE_HD Philox4 philox_bits(uint64_t seed, uint64_t subsequence, uint64_t group) {
  const Philox4 counter{{static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32),
                         static_cast<uint32_t>(subsequence), static_cast<uint32_t>(subsequence >> 32)}};
  return philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// cuRAND's mapping of two uint32 draws to two standard normals. The uniforms lie strictly inside
// (0, 1] and (0, 2π], so log never sees zero. fmaf pins the rounding of u and v to what the
// device's fused multiply-add gives.
struct NormalPair {
  float first, second;
};

VAE_HD NormalPair box_muller(uint32_t x, uint32_t y) {
  constexpr float kInv2Pow32 = 2.3283064e-10f;
  constexpr float kInv2Pow32x2Pi = 2.3283064e-10f * 6.2831855f;
  const float u = fmaf(static_cast<float>(x), kInv2Pow32, kInv2Pow32 / 2);
  const float v = fmaf(static_cast<float>(y), kInv2Pow32x2Pi, kInv2Pow32x2Pi / 2);
  const float radius = sqrtf(-2.0f * logf(u));
  return NormalPair{sinf(v) * radius, cosf(v) * radius};
}

// Four normals for group g of the stream (seed, subsequence): elements 4g .. 4g+3.
// Equal (to float rounding) to curand_normal4 after curand_init(seed, subsequence, 4*g).
struct Normal4 {
  float v[4];
};

VAE_HD Normal4 philox_normal4(uint64_t seed, uint64_t subsequence, uint64_t group) {
  const Philox4 bits = philox_bits(seed, subsequence, group);
  const NormalPair a = box_muller(bits.v[0], bits.v[1]);
  const NormalPair b = box_muller(bits.v[2], bits.v[3]);
  return Normal4{{a.first, a.second, b.first, b.second}};
}

// Element i of the normal stream (seed, subsequence). Plain but recomputes the block; callers
// that fill arrays use philox_normal4 once per four elements.
VAE_HD float philox_normal(uint64_t seed, uint64_t subsequence, uint64_t element) {
  return philox_normal4(seed, subsequence, element / 4).v[element % 4];
}

// A uniform draw in [0, 1) with 24 random bits, used for initialisation and shuffling.
VAE_HD float uniform_from_bits(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

}  // namespace vae
