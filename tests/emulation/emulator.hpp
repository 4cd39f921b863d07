// The CPU emulator of the CUDA execution model that the kernel sources run on in CI (no GPU there).
// A launch runs its blocks one after another (by index, or shuffled: set_block_order); the threads
// of a block are fibers on the calling thread, switched at every barrier, so __syncthreads,
// per-block __shared__ storage, warp shuffles and mma.sync behave as on the device. Under ThreadSanitizer every CUDA thread is its own TSan
// fiber and only barriers order them, so a race between two barriers is reported as racecheck would.
//
// What it cannot see: races between blocks (they run in turn), shared memory read before it is
// written in a block (it holds the previous block's values, not garbage), host pointers passed as
// device pointers (all memory is host memory), and the device's own rounding (host libm, no FMA
// contraction: results agree with a GPU's to float rounding, not bit for bit).
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

// The order in which every later launch runs its blocks: 0 (the default) by index, x fastest, as a
// device usually starts them; any other seed a shuffle of them, different for each launch. Kernels
// whose blocks hand work to each other must give the same bits in any order: which block arrives
// last at a tile or a row then differs from launch to launch.
void set_block_order(uint64_t seed);

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

// The warp-collective primitive under shuffles, votes and __syncwarp: every live lane of the calling
// thread's warp contributes value and gets back the values of all 32 lanes (lanes that do not exist
// read 0). Lanes wait for each other, as on the device. The mask must name exactly the live lanes,
// and all of them must be in the same `collective` (an id of the instruction and its qualifiers,
// such as a shuffle's mode and width); anything else is an error here. Only collectives that order
// memory (__syncwarp) order memory under TSan.
struct WarpValues {
  uint64_t lane[kWarpSize];
};
WarpValues exchange_in_warp(unsigned mask, uint64_t value, uint32_t collective, bool orders_memory);
// Ids of the collectives that are not shuffles (a shuffle's is its mode << 8 | width).
inline constexpr uint32_t kBallotCollective = 4u << 8, kSyncWarpCollective = 5u << 8, kMmaCollective = 6u << 8;
int lane_id();

// The tensor-core instructions the TF32 GEMM uses, as the PTX ISA defines them.
// cvt.rna.tf32.f32: round to nearest, ties away from zero, to TF32's 10 mantissa bits, returned as
// an FP32 bit pattern with the low 13 bits zero (the ISA leaves the layout to the implementation;
// this is what the hardware is observed to give). A NaN gives the canonical NaN.
uint32_t round_to_tf32(float x);
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: D = A · B + C for the warp, each lane holding
// its fragments per the PTX ISA's tables; only the TF32 bits of the inputs take part.
void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

}  // namespace vae::emu
