// Device discovery through the CUDA runtime (linked statically, so the binary starts on machines
// without a driver and reports that plainly).
#include "vae/cuda_device.hpp"

#include <cuda_runtime_api.h>

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

}  // namespace vae
