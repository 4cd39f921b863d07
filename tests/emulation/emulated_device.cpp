// The device queries the launchers make (include/vae/cuda_device.hpp), answered for the emulated
// device, so that launch plans in emulation are the ones an H200 gets.
#include "emulator.hpp"
#include "vae/cuda_device.hpp"

namespace vae {

int multiprocessor_count() { return emu::kMultiprocessors; }

}  // namespace vae
