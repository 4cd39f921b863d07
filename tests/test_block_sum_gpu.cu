// Ties the emulation suite's block reduction to CUB's on a real GPU: ShuffleBlockSum, which the
// emulator runs in place of cub::BlockReduce, must add in exactly CUB's order, so both sums of the
// same doubles are bitwise equal. Values span many exponents, so any other order would differ.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "gpu_test_support.hpp"
#include "vae/device/block_reduce.hpp"
#include "vae/device_buffer.hpp"

namespace vae {
namespace {

constexpr int kThreads = 256;

__global__ void both_block_sums(const double* values, double* sums) {
  __shared__ typename cub::BlockReduce<double, kThreads>::TempStorage cub_storage;
  __shared__ typename ShuffleBlockSum<kThreads>::TempStorage shuffle_storage;
  const double v = values[blockIdx.x * kThreads + threadIdx.x];
  const double by_cub = cub::BlockReduce<double, kThreads>(cub_storage).Sum(v);
  const double by_shuffles = ShuffleBlockSum<kThreads>(shuffle_storage).Sum(v);
  if (threadIdx.x == 0) {
    sums[2 * blockIdx.x] = by_cub;
    sums[2 * blockIdx.x + 1] = by_shuffles;
  }
}

TEST(BlockSumOnGpu, ShuffleBlockSumAddsInCubsOrder) {
  VAE_REQUIRE_GPU();
  const int blocks = 64;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> mantissa(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-30, 30);
  std::vector<double> values(static_cast<size_t>(blocks) * kThreads);
  for (double& v : values) v = std::ldexp(mantissa(rng), exponent(rng));
  DeviceBuffer<double> d_values(values), d_sums(2 * static_cast<size_t>(blocks));
  both_block_sums<<<blocks, kThreads>>>(d_values.data(), d_sums.data());
  VAE_CUDA_CHECK(cudaGetLastError());
  const std::vector<double> sums = d_sums.download();
  for (int b = 0; b < blocks; ++b) EXPECT_EQ(sums[2 * b], sums[2 * b + 1]) << "block " << b;
}

}  // namespace
}  // namespace vae
