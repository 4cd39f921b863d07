// What every GPU test needs: skip cleanly where there is no device (CI, the development machine),
// and fail loudly on any CUDA error. Also what the kernel tests share: a stream of their own,
// output buffers with sentinels past their end, and the tolerances that only the device needs
// (where its library math differs from the CPU's; the emulator runs the CPU's, see kernel_checks.hpp).
#pragma once

#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "kernel_checks.hpp"
#include "vae/cuda_check.hpp"
#include "vae/cuda_device.hpp"
#include "vae/device_buffer.hpp"

// Use as the first statement of a GPU test.
#define VAE_REQUIRE_GPU()                                                         \
  do {                                                                            \
    const ::vae::CudaDevices devices = ::vae::query_cuda_devices();               \
    if (devices.count == 0) GTEST_SKIP() << "no CUDA device: " << devices.why_none; \
  } while (0)

namespace vae::gpu_test {

// ---- buffers ------------------------------------------------------------------------------------

inline constexpr size_t kGuard = 64;
inline constexpr float kSentinel = -7777.0f;

// A stream of our own, so the tests also check that each launcher runs on the stream it is given.
class TestStream {
 public:
  TestStream() { VAE_CUDA_CHECK(cudaStreamCreate(&stream_)); }
  ~TestStream() { cudaStreamDestroy(stream_); }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  cudaStream_t get() const { return stream_; }
  void sync() const { VAE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

// A device buffer holding `contents` followed by kGuard sentinels.
inline DeviceBuffer<float> guarded(const std::vector<float>& contents) {
  std::vector<float> host = contents;
  host.resize(contents.size() + kGuard, kSentinel);
  return DeviceBuffer<float>(host);
}
// An output buffer: sentinels throughout, so an element the kernel fails to write shows up too.
inline DeviceBuffer<float> guarded_output(size_t count) { return guarded(std::vector<float>(count, kSentinel)); }

// The first `count` elements, after checking that the guard past them is untouched.
inline std::vector<float> download_checked(const DeviceBuffer<float>& buffer, size_t count) {
  std::vector<float> host = buffer.download();
  size_t overwritten = 0;
  for (size_t k = count; k < host.size(); ++k) overwritten += host[k] != kSentinel;
  EXPECT_EQ(overwritten, 0u) << "the kernel wrote past element " << count;
  host.resize(count);
  return host;
}

// ---- the device's tolerances against the CPU reference ------------------------------------------

// Reparameterisation, forward:
//  eps: the device's Box-Muller takes sin and cos from __sincosf (absolute error about 2^-20.5 over
//    the (0, 2π] it is given) where the CPU calls sinf/cosf, and logf may differ by an ulp; the
//    radius is at most sqrt(-2 ln 2^-33) = 6.8, so the draws agree to 6.8 * 2^-20.5 + rounding
//    ≈ 5e-6 absolute. We allow 1e-5 absolute.
//  z: recomputed on the host from the device's own eps, so only expf (≤ 2 ulp on the device) and the
//    fused multiply-add differ: a few ulp of terms below 21 in magnitude. 1e-5 relative + 1e-5 absolute.
//  z against the reference's z: adds the eps difference times sigma (≤ e): 1e-4 absolute.
inline constexpr double kEpsAbsolute = 1e-5;
inline constexpr double kZRelative = 1e-5, kZFromDeviceEpsAbsolute = 1e-5, kZAbsolute = 1e-4;

// Reparameterisation, backward: the same float expressions on both sides; expf (≤ 2 ulp on the
// device) and fused multiply-adds differ by a few ulp of terms below 15 in magnitude, and a sum of
// two terms can cancel, so 1e-5 relative plus 1e-5 absolute.
inline constexpr double kReparamGradRelative = 1e-5, kReparamGradAbsolute = 1e-5;

// Adam: the device runs the same float update with the coefficients rounded from the same doubles
// (its pow may differ from glibc's by a double ulp, which float rounding absorbs), so elements
// differ only where fused multiply-adds round once instead of twice: about an ulp per operation, a
// few ulp after three steps. 1e-6 relative; absolute floors for values that cancel toward zero:
// 1e-7 for params and m (their terms are below 1), 1e-12 for v.
inline constexpr double kAdamRelative = 1e-6;

struct AdamState {
  std::vector<float> params, m, v;
};

inline void expect_adam_states_near(const AdamState& got, const AdamState& want) {
  EXPECT_TRUE(kernel_checks::all_near(got.params, want.params, kAdamRelative, 1e-7)) << "params";
  EXPECT_TRUE(kernel_checks::all_near(got.m, want.m, kAdamRelative, 1e-7)) << "m";
  EXPECT_TRUE(kernel_checks::all_near(got.v, want.v, kAdamRelative, 1e-12)) << "v";
}

}  // namespace vae::gpu_test
