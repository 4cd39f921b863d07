// What CUDA devices this process can see. Asking never fails: on a machine without a GPU or
// driver the answer is simply "none", with the runtime's reason for the message.
#pragma once

#include <string>

namespace vae {

struct CudaDevices {
  int count = 0;
  std::string first_name;  // name of device 0 when count > 0
  std::string why_none;    // the runtime's message when count == 0
};

CudaDevices query_cuda_devices();

}  // namespace vae
