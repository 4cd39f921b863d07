// The groups of figures vae_bench measures, one function each, every one appending to the
// harness's results: per-op linear layers, the loss, the optimiser, and whole epochs.
#pragma once

#include "harness.hpp"
#include "vae/idx.hpp"

namespace vae::bench {

// Every layer of the default model (784->400 relu, 400->40, 20->400 relu, 400->784) at this batch,
// forward and backward, FP32 and TF32: ours against cuBLAS, cuBLASLt and cuDNN.
void bench_linear_layers(Harness& harness, int rows);
// BCE+KL at this batch: our fused kernels against the unfused chain.
void bench_loss(Harness& harness, int rows);
// Adam over the default model's parameters: one launch against one per tensor.
void bench_adam(Harness& harness);
// Whole training steps at this batch: ours fused (one forward and one backward launch per layer)
// against the unfused steps assembled from each library's linear layers and our standalone
// kernels, as replayed graphs and as plain launches.
void bench_steps(Harness& harness, int rows);
// Whole epochs of the runtime at batch 128 and 1024: graph replay and plain launches, streamed
// and device-resident data, FP32 and TF32.
void bench_epochs(Harness& harness, const MnistData& data, int epochs);

}  // namespace vae::bench
