// Device discovery through the CUDA runtime (linked statically, so the binary starts on machines
// without a driver and reports that plainly).
#include "vae/cuda_device.hpp"

#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include "vae/cuda_check.hpp"

namespace vae {

CudaDevices query_cuda_devices() {
  CudaDevices devices;
  const cudaError_t status = cudaGetDeviceCount(&devices.count);
  if (status != cudaSuccess || devices.count == 0) {
    devices.count = 0;
    if (status == cudaErrorInsufficientDriver) {
      // The runtime's words, "driver version is insufficient", also cover no driver at all, as on a
      // machine without a GPU; say both.
      int runtime = 0;
      cudaRuntimeGetVersion(&runtime);
      devices.why_none = fmt::format("no NVIDIA driver, or one older than this CUDA {}.{} runtime", runtime / 1000,
                                     runtime % 1000 / 10);
    } else {
      devices.why_none = status != cudaSuccess ? cudaGetErrorString(status) : "no CUDA device";
    }
    return devices;
  }
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, 0) == cudaSuccess) devices.first_name = props.name;
  return devices;
}

bool use_cuda(DeviceChoice choice, std::string* fallback_reason) {
  if (choice == DeviceChoice::kCpu) return false;
  const CudaDevices devices = query_cuda_devices();
  if (choice == DeviceChoice::kCuda && devices.count == 0)
    throw Error(fmt::format("--device cuda: no CUDA device available ({})", devices.why_none));
  if (devices.count == 0 && fallback_reason != nullptr)
    *fallback_reason = fmt::format(" (no CUDA device: {})", devices.why_none);
  return devices.count > 0;
}

int multiprocessor_count() {
  // One device per process in this engine, so one cached answer.
  static const int count = [] {
    int device = 0, sms = 0;
    VAE_CUDA_CHECK(cudaGetDevice(&device));
    VAE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms;
  }();
  return count;
}

}  // namespace vae
