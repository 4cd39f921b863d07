// Philox4x32-10 against Random123's published known answers, and the Box-Muller normals built on
// it: their formula, their layout in the stream, and their distribution.
#include <curand.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "vae/philox.hpp"

namespace vae {
namespace {

struct KnownAnswer {
  Philox4 counter;
  uint32_t key0, key1;
  Philox4 expected;
};

// Random123 1.09, examples/kat_vectors, the three "philox4x32 10" lines (counter, key, output).
const KnownAnswer kKnownAnswers[] = {
    {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
    {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
     0xffffffff,
     0xffffffff,
     {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
    {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
     0xa4093822,
     0x299f31d0,
     {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
};

TEST(Philox, MatchesRandom123KnownAnswers) {
  for (const KnownAnswer& kat : kKnownAnswers) {
    const Philox4 out = philox4x32_10(kat.counter, kat.key0, kat.key1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], kat.expected.v[i]) << "word " << i;
  }
}

TEST(Philox, CounterLayoutIsCurandsGroupLowSubsequenceHigh) {
  // curand_init(seed, subsequence, offset) puts offset / 4 in counter words 0-1, the subsequence
  // in words 2-3 and the seed in the key; the third known answer, read back through that layout.
  const uint64_t group = 0x85a308d3'243f6a88ull, subsequence = 0x03707344'13198a2eull;
  const uint64_t seed = 0x299f31d0'a4093822ull;
  const Philox4 out = philox_bits(seed, subsequence, group);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], kKnownAnswers[2].expected.v[i]);
}

TEST(BoxMuller, FollowsTheFormulaInDouble) {
  // u = x/2^32 + 2^-33 and v = 2π (y/2^32 + 2^-33); normals are sqrt(-2 ln u) (sin v, cos v).
  const uint32_t draws[][2] = {{0u, 0u}, {1u, 0xffffffffu}, {0x80000000u, 0x40000000u}, {123456789u, 987654321u},
                               {0xf0000000u, 7u}};
  for (const auto& d : draws) {
    const double u = d[0] / 4294967296.0 + 0.5 / 4294967296.0;
    const double v = 2 * M_PI * (d[1] / 4294967296.0 + 0.5 / 4294967296.0);
    const double radius = std::sqrt(-2 * std::log(u));
    const NormalPair pair = box_muller(d[0], d[1]);
    // Float rounding of u and v and of the float sin/cos: a few ulps of the radius.
    const double tolerance = 1e-5 * std::max(1.0, radius);
    EXPECT_NEAR(pair.first, radius * std::sin(v), tolerance) << d[0] << "," << d[1];
    EXPECT_NEAR(pair.second, radius * std::cos(v), tolerance) << d[0] << "," << d[1];
  }
}

TEST(BoxMuller, TopDrawsRoundToRadiusZeroAsInCurand) {
  // float(x) rounds x >= 2^32 - 128 up to 2^32, so u rounds to 1 and the radius to 0: cuRAND's float
  // formula does the same, and matching it matters more than the 1e-4 it loses in the far centre.
  const NormalPair pair = box_muller(0xfffffff0u, 7u);
  EXPECT_EQ(pair.first, 0.0f);
  EXPECT_EQ(pair.second, 0.0f);
}

TEST(BoxMuller, ExtremeDrawsStayFinite) {
  for (uint32_t x : {0u, 1u, 0xffffffffu})
    for (uint32_t y : {0u, 0xffffffffu}) {
      const NormalPair pair = box_muller(x, y);
      EXPECT_TRUE(std::isfinite(pair.first) && std::isfinite(pair.second)) << x << "," << y;
    }
}

TEST(PhiloxNormal, FourPerBlockInCurandNormal4Order) {
  const uint64_t seed = 42, stream = 7;
  for (uint64_t group : {0ull, 1ull, 1000ull, (1ull << 33) + 5}) {
    const Philox4 bits = philox_bits(seed, stream, group);
    const NormalPair first = box_muller(bits.v[0], bits.v[1]);
    const NormalPair second = box_muller(bits.v[2], bits.v[3]);
    const float expected[4] = {first.first, first.second, second.first, second.second};
    for (int lane = 0; lane < 4; ++lane) {
      EXPECT_EQ(philox_normal(seed, stream, group * 4 + lane), expected[lane]);
      EXPECT_EQ(philox_normal4(seed, stream, group).v[lane], expected[lane]);
    }
  }
}

TEST(PhiloxNormal, SeedsAndStreamsGiveDifferentDraws) {
  std::set<float> seen;
  for (uint64_t seed : {1ull, 2ull, 1ull << 40})
    for (uint64_t stream : {0ull, 1ull, 1ull << 60}) seen.insert(philox_normal(seed, stream, 0));
  EXPECT_EQ(seen.size(), 9u);
}

TEST(PhiloxNormal, IsStandardNormal) {
  // 2^20 draws: the standard error of the mean is 1e-3 and of the variance about 1.4e-3, so these
  // bounds are five standard errors and fail only if the transform is wrong.
  constexpr int kCount = 1 << 20;
  double sum = 0, sum_sq = 0, sum_4 = 0;
  int beyond_3_sigma = 0;
  for (int i = 0; i < kCount; i += 4) {
    const Normal4 n = philox_normal4(9, 3, static_cast<uint64_t>(i / 4));
    for (float x : n.v) {
      sum += x;
      sum_sq += static_cast<double>(x) * x;
      sum_4 += std::pow(static_cast<double>(x), 4);
      beyond_3_sigma += std::fabs(x) > 3.0f;
    }
  }
  const double mean = sum / kCount, variance = sum_sq / kCount - mean * mean;
  EXPECT_NEAR(mean, 0.0, 5e-3);
  EXPECT_NEAR(variance, 1.0, 7e-3);
  EXPECT_NEAR(sum_4 / kCount, 3.0, 0.05);  // the normal's fourth moment; sd of the estimate ~ 0.01
  EXPECT_NEAR(beyond_3_sigma / static_cast<double>(kCount), 0.0027, 0.0005);
}

// cuRAND's host-side generator runs the library's own Philox and Box-Muller on the CPU, so it is a
// GPU-free witness of what cuRAND draws. Its default ordering hands out element i (for i < 2^18)
// from subsequence i / 4 at offset 0: the same as philox_normal4(seed, i / 4, 0).
class CurandHostGenerator : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(curandCreateGeneratorHost(&generator_, CURAND_RNG_PSEUDO_PHILOX4_32_10), CURAND_STATUS_SUCCESS);
    ASSERT_EQ(curandSetPseudoRandomGeneratorSeed(generator_, kSeed), CURAND_STATUS_SUCCESS);
  }
  void TearDown() override { curandDestroyGenerator(generator_); }

  static constexpr uint64_t kSeed = 0x1234'5678'9abcull;
  static constexpr size_t kCount = 1 << 16;
  curandGenerator_t generator_ = nullptr;
};

TEST_F(CurandHostGenerator, BitsAreIdentical) {
  std::vector<unsigned int> bits(kCount);
  ASSERT_EQ(curandGenerate(generator_, bits.data(), kCount), CURAND_STATUS_SUCCESS);
  for (size_t i = 0; i < kCount; ++i) ASSERT_EQ(bits[i], philox_bits(kSeed, i / 4, 0).v[i % 4]) << i;
}

TEST_F(CurandHostGenerator, NormalsAgreeToFloatRounding) {
  std::vector<float> normals(kCount);
  ASSERT_EQ(curandGenerateNormal(generator_, normals.data(), kCount, 0.0f, 1.0f), CURAND_STATUS_SUCCESS);
  size_t identical = 0;
  for (size_t i = 0; i < kCount; ++i) {
    const float ours = philox_normal4(kSeed, i / 4, 0).v[i % 4];
    // A few ulps: we pin u and v with fmaf as the device's fused multiply-add rounds them; the
    // host library may round them unfused.
    ASSERT_NEAR(ours, normals[i], 4e-6f * std::max(1.0f, std::fabs(normals[i]))) << i;
    identical += ours == normals[i];
  }
  EXPECT_GT(identical, kCount * 9 / 10);  // most draws agree to the bit
}

TEST(UniformFromBits, CoversTheUnitIntervalHalfOpen) {
  EXPECT_EQ(uniform_from_bits(0u), 0.0f);
  EXPECT_LT(uniform_from_bits(0xffffffffu), 1.0f);
  EXPECT_GT(uniform_from_bits(0xffffffffu), 0.9999f);
}

}  // namespace
}  // namespace vae
