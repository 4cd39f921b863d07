// How close a measured op comes to what the hardware allows: each op's arithmetic (FLOPs) and the
// bytes it must move at least once, the device's peaks derived from what the CUDA runtime reports,
// and the roofline share = the roofline's lower bound on the time over the measured time.
#pragma once

#include <cstdint>

#include "vae/config.hpp"

namespace vae::bench {

// Compulsory work: every operand read once and every result written once, as if caches were
// perfect; re-reads are the implementation's cost, which is what the share exposes.
struct OpCost {
  double flops = 0;
  double bytes = 0;
};

// y = x · Wᵀ + b (+ReLU): the GEMM's 2·rows·in·out; bias and ReLU are not counted (rows·out each,
// under 0.3% at the model's shapes). Bytes: x (uint8 pixels for the first layer, else float),
// W, b, y.
OpCost linear_forward_cost(int rows, int in, int out, bool pixel_input);
// dx (skipped for pixel input: the first layer has no input gradient), dW and db from dy; with relu
// the mask is read from y. Reads x, dy, y (relu), W (when dx); writes dx, dW, db.
OpCost linear_backward_cost(int rows, int in, int out, bool relu, bool pixel_input);
// BCE-with-logits, its gradient and the KL term: reads logits (float) and targets (uint8), writes
// dlogits; reads mu and logvar.
OpCost bce_kl_cost(int rows, int pixels, int latent);
// One Adam step over n parameters: reads grad, param, m, v; writes param, m, v.
OpCost adam_cost(int64_t parameters);

// Per-op arithmetic the counts above use, exposed so tests can hand-check them.
inline constexpr double kBceFlopsPerPixel = 10;  // max, mul, sub, abs, exp, log1p, add; sigmoid, sub, scale
inline constexpr double kKlFlopsPerLatent = 6;   // exp, mul, two sub, add, scale
inline constexpr double kAdamFlopsPerParameter = 12;  // m: 3, v: 4, update: sqrt, add, div, mul, sub

struct DevicePeaks {
  double fp32_flops = 0;        // CUDA-core FMA throughput, as FLOP/s
  double tf32_flops = 0;        // dense tensor-core TF32, as FLOP/s
  double bytes_per_second = 0;  // DRAM
};

// From the runtime's cudaDevAttrMultiProcessorCount, cudaDevAttrClockRate (kHz),
// cudaDevAttrMemoryClockRate (kHz) and cudaDevAttrGlobalMemoryBusWidth (bits). Per-SM rates are
// Hopper's (see roofline.cpp); on other parts the peaks are an estimate.
DevicePeaks device_peaks(int sm_count, int sm_clock_khz, int memory_clock_khz, int bus_width_bits);

// max(flops / peak, bytes / bandwidth) / seconds: 1 means the op ran at the roofline, 0.25 that it
// took four times longer than the hardware bound. Element-wise ops are counted against the FP32
// peak, GEMMs against the peak of the precision they ran in.
double roofline_share(const OpCost& cost, double seconds, const DevicePeaks& peaks, Precision precision);

}  // namespace vae::bench
