// What CUDA devices this process can see. Asking never fails: on a machine without a GPU or
// driver the answer is simply "none", with the runtime's reason for the message.
#pragma once

#include <string>

#include "vae/config.hpp"

namespace vae {

struct CudaDevices {
  int count = 0;
  std::string first_name;  // name of device 0 when count > 0
  std::string why_none;    // the runtime's message when count == 0
};

CudaDevices query_cuda_devices();

// Whether a command run with --device `choice` uses the GPU: kAuto when the runtime finds one (else
// *fallback_reason, when given, receives " (no CUDA device: <the runtime's reason>)" for the line
// that names the device), kCuda always, kCpu never. Throws vae::Error for kCuda without a device.
bool use_cuda(DeviceChoice choice, std::string* fallback_reason = nullptr);

// The current device's SM count, asked of the runtime once per process: launchers size their grids
// from it on every launch, so it must cost nothing. Throws vae::Error when there is no device.
int multiprocessor_count();

}  // namespace vae
