// The CPU emulator of the CUDA execution model that the kernel sources run on in CI (no GPU there).
// A launch runs its blocks one after another; the threads of a block are fibers on the calling
// thread, switched at every barrier, so __syncthreads, per-block __shared__ storage, warp shuffles
// and mma.sync behave as on the device. Under ThreadSanitizer every CUDA thread is its own TSan
// fiber and only barriers order them, so a race between two barriers is reported as racecheck would.
#pragma once

#include <vector_types.h>

#include <cstdint>
#include <functional>

namespace vae::emu {

// The SM count the emulated device reports (an H200's), so launch plans match the real device's.
inline constexpr int kMultiprocessors = 132;
inline constexpr int kWarpSize = 32;

// Runs body once per thread of grid x block, body reading its coordinates through the accessors
// below. Throws vae::Error for a configuration the device would refuse (0 or more than 1024 threads
// per block, a grid dimension out of range), for a deadlock or a barrier some threads never reach,
// and rethrows what a thread threw.
void launch(dim3 grid, dim3 block, const std::function<void()>& body);

// Launches since the process started (or since reset_launch_count), to count kernels per step.
long long launch_count();
void reset_launch_count();

// The calling CUDA thread's coordinates.
uint3 thread_index();
uint3 block_index();
dim3 block_dim();
dim3 grid_dim();

// __syncthreads: waits until every thread of the block has arrived.
void sync_block();

// The warp-collective primitive under shuffles and votes: every live lane of the calling thread's
// warp (all of them must be in mask) contributes value and gets back the values of all 32 lanes
// (lanes that do not exist read 0). Lanes wait for each other, as on the device.
struct WarpValues {
  uint64_t lane[kWarpSize];
};
WarpValues exchange_in_warp(unsigned mask, uint64_t value);
int lane_id();

// The tensor-core instructions the TF32 GEMM uses, as the PTX ISA defines them.
// cvt.rna.tf32.f32: round to nearest, ties away from zero, to TF32's 10 mantissa bits; the result is
// an FP32 bit pattern whose low 13 bits are zero. NaN stays NaN.
uint32_t round_to_tf32(float x);
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: D = A · B + C for the warp, each lane holding
// its fragments per the PTX ISA's tables; only the TF32 bits of the inputs take part.
void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

}  // namespace vae::emu
