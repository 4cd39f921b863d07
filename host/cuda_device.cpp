// Device discovery through the CUDA runtime (linked statically, so the binary starts on machines
// without a driver and reports that plainly).
#include "vae/cuda_device.hpp"

#include <cuda_runtime_api.h>

#include "vae/cuda_check.hpp"

namespace vae {

CudaDevices query_cuda_devices() {
  CudaDevices devices;
  const cudaError_t status = cudaGetDeviceCount(&devices.count);
  if (status != cudaSuccess || devices.count == 0) {
    devices.count = 0;
    devices.why_none = status != cudaSuccess ? cudaGetErrorString(status) : "no CUDA device";
    return devices;
  }
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, 0) == cudaSuccess) devices.first_name = props.name;
  return devices;
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
