// The emulator itself, on small kernels whose right answers are known: coordinates, per-block shared
// memory and barriers, shuffles and votes, the TF32 instructions, the errors a device would raise,
// and the sanitizers catching what memcheck and racecheck catch.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "vae/device/kernel_runtime.hpp"
#include "vae/device/tensor_core.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

__global__ void write_global_ids(int* out) {
  const unsigned per_block = blockDim.x * blockDim.y * blockDim.z;
  const unsigned in_block = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  out[block * per_block + in_block] += static_cast<int>(block * per_block + in_block) + 1;
}

TEST(Emulator, EveryThreadOfEveryBlockRunsOnceWithItsCoordinates) {
  const dim3 grid(3, 2, 2), block(8, 4, 2);
  std::vector<int> out(3 * 2 * 2 * 8 * 4 * 2, 0);
  launch_kernel(write_global_ids, grid, block, nullptr, out.data());
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], static_cast<int>(i) + 1) << i;
}

// Each thread publishes its value, waits, then reads its neighbour's: right only if the barrier
// holds every thread until all have written, and shared memory is the block's own.
__global__ void rotate_through_shared(const int* in, int* out) {
  __shared__ int values[256];
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  values[t] = in[base + t];
  __syncthreads();
  const int read = values[(t + 1) % blockDim.x];
  __syncthreads();
  values[t] = read * 2;
  __syncthreads();
  out[base + t] = values[(t + blockDim.x - 1) % blockDim.x];
}

TEST(Emulator, BarriersAndSharedMemoryBehaveAsOnTheDevice) {
  const int blocks = 5, threads = 256;
  std::vector<int> in(blocks * threads), out(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i * 7 + 3);
  launch_kernel(rotate_through_shared, blocks, threads, nullptr, in.data(), out.data());
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) ASSERT_EQ(out[b * threads + t], 2 * in[b * threads + t]) << b << " " << t;
}

__global__ void shuffles(int* out) {
  const int lane = threadIdx.x % 32, base = threadIdx.x * 8;
  out[base + 0] = __shfl_down_sync(0xFFFFFFFFu, lane * 10, 3);  // lanes 29..31 keep their own
  out[base + 1] = __shfl_up_sync(0xFFFFFFFFu, lane * 10, 2);    // lanes 0, 1 keep their own
  out[base + 2] = __shfl_xor_sync(0xFFFFFFFFu, lane * 10, 5);
  out[base + 3] = __shfl_sync(0xFFFFFFFFu, lane * 10, 7);
  out[base + 4] = static_cast<int>(__ballot_sync(0xFFFFFFFFu, lane % 3 == 0));
  const double sum = __shfl_down_sync(0xFFFFFFFFu, static_cast<double>(lane) + 0.5, 16, 16);  // width 16
  out[base + 5] = static_cast<int>(sum * 2);
  out[base + 6] = __shfl_xor_sync(0xFFFFFFFFu, lane * 10, 16, 16);  // reads the earlier segment only
  out[base + 7] = __shfl_sync(0xFFFFFFFFu, lane * 10, 37, 8);       // 37 & 7 = 5 within each 8-lane segment
}

TEST(Emulator, ShufflesAndVotesFollowThePtxIsa) {
  std::vector<int> out(64 * 8);
  launch_kernel(shuffles, 1, 64, nullptr, out.data());
  unsigned ballot = 0;
  for (int lane = 0; lane < 32; lane += 3) ballot |= 1u << lane;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32, *o = &out[t * 8];
    EXPECT_EQ(o[0], (lane + 3 < 32 ? lane + 3 : lane) * 10) << t;
    EXPECT_EQ(o[1], (lane >= 2 ? lane - 2 : lane) * 10) << t;
    EXPECT_EQ(o[2], (lane ^ 5) * 10) << t;
    EXPECT_EQ(o[3], 70) << t;
    EXPECT_EQ(static_cast<unsigned>(o[4]), ballot) << t;
    EXPECT_EQ(o[5], 2 * lane + 1) << t;  // delta 16 leaves every 16-lane segment: own value
    EXPECT_EQ(o[6], (lane >= 16 ? lane - 16 : lane) * 10) << t;
    EXPECT_EQ(o[7], (lane / 8 * 8 + 5) * 10) << t;
  }
}

TEST(Emulator, RoundToTf32IsNearestTiesAwayFromZero) {
  auto rounded = [](float x) { return std::bit_cast<float>(emu::round_to_tf32(x)); };
  const float ulp = std::ldexp(1.0f, -10);  // TF32's spacing just above 1
  EXPECT_EQ(rounded(1.0f), 1.0f);
  EXPECT_EQ(rounded(1.0f + ulp / 2), 1.0f + ulp);  // the tie goes away from zero
  EXPECT_EQ(rounded(-1.0f - ulp / 2), -1.0f - ulp);
  EXPECT_EQ(rounded(std::nextafter(1.0f + ulp / 2, 0.0f)), 1.0f);
  EXPECT_EQ(rounded(1.0f + ulp), 1.0f + ulp);
  EXPECT_EQ(rounded(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(rounded(std::numeric_limits<float>::max()), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(rounded(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(emu::round_to_tf32(0.3f) & 0x1FFFu, 0u);
}

// A 16x8 times 8x8 product through the warp's fragments, loaded per the PTX ISA's tables.
__global__ void one_mma(const float* a, const float* b, float* d) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  const uint32_t fa[4] = {round_to_tf32_bits(a[g * 8 + t]), round_to_tf32_bits(a[(g + 8) * 8 + t]),
                          round_to_tf32_bits(a[g * 8 + t + 4]), round_to_tf32_bits(a[(g + 8) * 8 + t + 4])};
  const uint32_t fb[2] = {round_to_tf32_bits(b[t * 8 + g]), round_to_tf32_bits(b[(t + 4) * 8 + g])};
  float acc[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  mma_16x8x8_tf32(acc, fa, fb);
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

TEST(Emulator, MmaComputesTheTileProductPlusTheAccumulator) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> a(16 * 8), b(8 * 8), d(16 * 8, 0.0f);
  for (float& v : a) v = dist(rng);
  for (float& v : b) v = dist(rng);
  launch_kernel(one_mma, 1, 32, nullptr, a.data(), b.data(), d.data());
  auto tf32 = [](float x) { return std::bit_cast<float>(emu::round_to_tf32(x)); };
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double expected = 1.0;
      for (int k = 0; k < 8; ++k) expected += static_cast<double>(tf32(a[i * 8 + k])) * tf32(b[k * 8 + j]);
      EXPECT_NEAR(d[i * 8 + j], expected, 1e-6 * (1 + std::fabs(expected))) << i << "," << j;
    }
}

__global__ void noop() {}

TEST(Emulator, RefusesConfigurationsTheDeviceRefuses) {
  EXPECT_THROW(launch_kernel(noop, 1, 1025, nullptr), Error);
  EXPECT_THROW(launch_kernel(noop, 0, 32, nullptr), Error);
  EXPECT_THROW(launch_kernel(noop, dim3(1, 65536), 32, nullptr), Error);
  EXPECT_THROW(launch_kernel(noop, 1, dim3(1, 1, 65), nullptr), Error);
  EXPECT_NO_THROW(launch_kernel(noop, dim3(2, 3, 4), 1024, nullptr));
}

TEST(Emulator, CountsLaunches) {
  emu::reset_launch_count();
  launch_kernel(noop, 4, 32, nullptr);
  launch_kernel(noop, 1, 1, nullptr);
  EXPECT_EQ(emu::launch_count(), 2);
}

__global__ void barrier_after_early_return(int limit) {
  if (static_cast<int>(threadIdx.x) >= limit) return;
  __syncthreads();
}

__global__ void shuffle_against_barrier() {
  if (threadIdx.x < 16)
    (void)__shfl_sync(0xFFFFFFFFu, 1, 0);
  else
    __syncthreads();
}

__global__ void mixed_collectives() {
  if (threadIdx.x < 16)
    (void)__shfl_sync(0xFFFFFFFFu, 1, 0);
  else
    (void)__ballot_sync(0xFFFFFFFFu, 1);
}

__global__ void shuffle_outside_mask(int width) {
  if (threadIdx.x < 16) (void)__shfl_down_sync(0xFFFFu, 1, 1, width);
}

__global__ void throws_in_thread_7() {
  if (threadIdx.x == 7 && blockIdx.x == 1) throw Error("thrown by thread 7");
  __syncthreads();
}

TEST(Emulator, ReportsBarrierMisuseAndDeadlockInsteadOfHanging) {
  EXPECT_NO_THROW(launch_kernel(barrier_after_early_return, 2, 64, nullptr, 64));
  try {
    launch_kernel(barrier_after_early_return, 2, 64, nullptr, 40);
    ADD_FAILURE() << "a barrier that 24 threads never reach was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("__syncthreads reached by 40 threads while 24 had returned"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(launch_kernel(shuffle_against_barrier, 1, 32, nullptr), Error);
  EXPECT_THROW(launch_kernel(throws_in_thread_7, 3, 32, nullptr), Error);
  EXPECT_THROW(launch_kernel(mixed_collectives, 1, 32, nullptr), Error);
  // A 16-thread block: lane 15 reading lane 16, which is not in the mask, is undefined on the device.
  EXPECT_THROW(launch_kernel(shuffle_outside_mask, 1, 16, nullptr, 32), Error);
  EXPECT_NO_THROW(launch_kernel(shuffle_outside_mask, 1, 16, nullptr, 16));
  EXPECT_THROW(launch_kernel(shuffle_outside_mask, 1, 16, nullptr, 12), Error);
  // The emulator is usable again after a failed launch.
  std::vector<int> out(64, 0);
  launch_kernel(write_global_ids, 2, 32, nullptr, out.data());
  EXPECT_EQ(out[63], 64);
}

#if defined(__SANITIZE_ADDRESS__)
__global__ void shared_overrun(float* out) {
  __shared__ float tile[32];
  tile[threadIdx.x] = 1.0f;  // launched with 33 threads
  __syncthreads();
  out[threadIdx.x] = tile[0];
}

__global__ void global_overrun(float* out, int n) { out[threadIdx.x] = static_cast<float>(n); }

TEST(EmulatorDeathTest, AddressSanitizerCatchesOutOfBoundsLikeMemcheck) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // UBSan's bounds check sees the fixed-size array first; ASan's redzone would catch it otherwise.
  EXPECT_DEATH(
      {
        std::vector<float> out(33);
        launch_kernel(shared_overrun, 1, 33, nullptr, out.data());
      },
      "index 32 out of bounds|global-buffer-overflow");
  EXPECT_DEATH(
      {
        std::vector<float> out(31);
        launch_kernel(global_overrun, 1, 32, nullptr, out.data(), 31);
      },
      "heap-buffer-overflow");
}
#endif

#if defined(__SANITIZE_THREAD__)
// Thread t reads what thread t + 1 wrote with no barrier between: a race racecheck reports.
__global__ void missing_barrier(int* out) {
  __shared__ int values[64];
  values[threadIdx.x] = static_cast<int>(threadIdx.x);
  out[threadIdx.x] = values[(threadIdx.x + 1) % 64];
}

__global__ void with_barrier(int* out) {
  __shared__ int values[64];
  values[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = values[(threadIdx.x + 1) % 64];
}

// Lane 31 leaves; the others go on shuffling: legal, and no race (the slots it read are reused).
__global__ void shuffles_after_an_exit(int* out) {
  const unsigned lane = threadIdx.x;
  int v = __shfl_sync(0xFFFFFFFFu, static_cast<int>(lane), 0) + __shfl_sync(0xFFFFFFFFu, static_cast<int>(lane), 1);
  if (lane == 31) return;
  v += __shfl_sync(0x7FFFFFFFu, v, 2) + __shfl_sync(0x7FFFFFFFu, v, 3);
  out[lane] = v;
}

// A shuffle moves registers and orders no memory: lane 1 reading what lane 0 wrote to shared memory
// is a race unless __syncwarp orders them.
__global__ void warp_handoff(int* out, bool syncwarp) {
  __shared__ int value;
  if (threadIdx.x == 0) value = 42;
  if (syncwarp)
    __syncwarp();
  else
    (void)__ballot_sync(0xFFFFFFFFu, 1);
  if (threadIdx.x == 1) out[0] = value;
}

TEST(EmulatorDeathTest, ThreadSanitizerCatchesARaceBetweenBarriersLikeRacecheck) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<int> out(64);
  launch_kernel(with_barrier, 3, 64, nullptr, out.data());  // no report: the barrier orders them
  launch_kernel(shuffles_after_an_exit, 1, 32, nullptr, out.data());
  EXPECT_EQ(out[0], 3);  // (0 + 1), then plus lanes 2 and 3 of the same: 1 + 1 + 1
  launch_kernel(warp_handoff, 1, 32, nullptr, out.data(), true);
  EXPECT_EQ(out[0], 42);
  EXPECT_DEATH(launch_kernel(missing_barrier, 1, 64, nullptr, out.data()), "data race");
  EXPECT_DEATH(launch_kernel(warp_handoff, 1, 32, nullptr, out.data(), false), "data race");
}
#endif

}  // namespace
}  // namespace vae
