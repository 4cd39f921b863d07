// Whole training epochs of the real runtime (Trainer over CudaBackend), timed the way
// bench_gpu_epoch and vae_bench both report them: one warm-up epoch, then the median of the rest;
// and the data the benchmarks time on.
#pragma once

#include <cstdint>
#include <string>

#include "vae/config.hpp"
#include "vae/idx.hpp"

namespace vae::bench {

// Real data when a directory is given; otherwise random images of MNIST's shape and count (speed
// does not depend on pixel values).
MnistData load_or_synthesise(const std::string& dir);
// The first `count` images of a split (all of them when it has fewer).
MnistSplit first_images(const MnistSplit& split, int64_t count);

struct EpochTiming {
  double median_seconds = 0;
  double images_per_second = 0;
  double final_test_loss = 0;  // after the last timed epoch
};

// Trains one warm-up epoch (graph capture, caches, clocks), then `epochs` timed ones.
EpochTiming time_gpu_epochs(const TrainConfig& config, const MnistData& data, int epochs);

}  // namespace vae::bench
