// Every random draw of a run is Philox keyed by (seed, stream); the top four bits of the stream say
// what the draw is for, so training noise, evaluation noise, initialisation and shuffling never
// share a counter.
#pragma once

#include <cstdint>

namespace vae {

// kSample: the latents decoded into sample images (epoch pictures, --sample), drawn apart from
// training so that the same seed shows the same z every epoch and progress is visible.
// kImportance: --evaluate's importance samples, one stream per image (importance_sample.hpp).
enum class NoisePurpose : uint64_t { kTrain = 0, kEval = 1, kInit = 2, kShuffle = 3, kSample = 4, kImportance = 5 };

constexpr uint64_t noise_stream(NoisePurpose purpose, uint64_t index) {
  return (static_cast<uint64_t>(purpose) << 60) | (index & ((uint64_t{1} << 60) - 1));
}

// Training step s (1-based, as Adam counts) draws its ε from this stream.
constexpr uint64_t train_stream(uint64_t step) { return noise_stream(NoisePurpose::kTrain, step); }

// Evaluation of batch b after epoch e.
constexpr uint64_t eval_stream(uint64_t epoch, uint64_t batch) {
  return noise_stream(NoisePurpose::kEval, (epoch << 32) | batch);
}

}  // namespace vae
