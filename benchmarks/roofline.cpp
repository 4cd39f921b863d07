// The roofline arithmetic. The per-SM rates are Hopper's, checked against NVIDIA's published
// H100 SXM figures, which the H200 we are lent shares; the clock is whatever the runtime reports
// (for either part, its 1.98 GHz maximum boost), so shares are measured against the best the part
// can do.
#include "roofline.hpp"

#include <algorithm>

namespace vae::bench {
namespace {

constexpr double kFloatBytes = 4;

// Per SM per clock, Hopper (H100 whitepaper, GH100 SM): 128 FP32 lanes, each an FMA (2 FLOPs), and
// four tensor cores doing 1024 dense TF32 FMAs together. Check: 132 SMs x 128 x 2 x 1.98 GHz =
// 66.9 TFLOPS, NVIDIA's FP32 figure for the H100 SXM; 132 x 1024 x 2 x 1.83 GHz = 494.7 TFLOPS,
// its dense TF32 figure (quoted at the 1.83 GHz boost clock it uses for tensor-core peaks).
constexpr double kFp32FmaPerSmPerClock = 128;
constexpr double kTf32FmaPerSmPerClock = 1024;

}  // namespace

OpCost linear_forward_cost(int rows, int in, int out, bool pixel_input) {
  const double r = rows, i = in, o = out;
  const double input_bytes = r * i * (pixel_input ? 1.0 : kFloatBytes);
  return OpCost{2.0 * r * i * o, input_bytes + kFloatBytes * (i * o + o + r * o)};
}

OpCost linear_backward_cost(int rows, int in, int out, bool relu, bool pixel_input) {
  const double r = rows, i = in, o = out;
  const bool input_grad = !pixel_input;
  OpCost cost;
  cost.flops = 2.0 * r * i * o /* dW */ + r * o /* db */ + (input_grad ? 2.0 * r * i * o : 0.0);
  cost.bytes = r * i * (pixel_input ? 1.0 : kFloatBytes)  // x
               + kFloatBytes * r * o                      // dy
               + (relu ? kFloatBytes * r * o : 0.0)       // y, for the mask
               + kFloatBytes * (i * o + o)                // dW, db
               + (input_grad ? kFloatBytes * (i * o + r * i) : 0.0);  // W read, dx written
  return cost;
}

OpCost bce_kl_cost(int rows, int pixels, int latent) {
  const double elements = static_cast<double>(rows) * pixels, latents = static_cast<double>(rows) * latent;
  return OpCost{kBceFlopsPerPixel * elements + kKlFlopsPerLatent * latents,
                elements * (kFloatBytes + 1 + kFloatBytes) + latents * 2 * kFloatBytes};
}

OpCost adam_cost(int64_t parameters) {
  const auto n = static_cast<double>(parameters);
  return OpCost{kAdamFlopsPerParameter * n, n * (4 * kFloatBytes + 3 * kFloatBytes)};
}

DevicePeaks device_peaks(int sm_count, int sm_clock_khz, int memory_clock_khz, int bus_width_bits) {
  const double sm_hz = 1e3 * sm_clock_khz, sms = sm_count;
  DevicePeaks peaks;
  peaks.fp32_flops = sms * kFp32FmaPerSmPerClock * 2.0 * sm_hz;
  peaks.tf32_flops = sms * kTf32FmaPerSmPerClock * 2.0 * sm_hz;
  // HBM and GDDR transfer on both clock edges: two transfers per clock, bus_width bits each.
  peaks.bytes_per_second = 2.0 * 1e3 * memory_clock_khz * bus_width_bits / 8.0;
  return peaks;
}

double roofline_share(const OpCost& cost, double seconds, const DevicePeaks& peaks, Precision precision) {
  const double flop_rate = precision == Precision::kTf32 ? peaks.tf32_flops : peaks.fp32_flops;
  if (!(seconds > 0.0) || !(flop_rate > 0.0) || !(peaks.bytes_per_second > 0.0)) return 0.0;
  const double bound = std::max(cost.flops / flop_rate, cost.bytes / peaks.bytes_per_second);
  return bound / seconds;
}

}  // namespace vae::bench
