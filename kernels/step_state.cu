// The scalars that change from step to step live on the device, so that a captured CUDA graph can
// advance them on every replay: the step counter (Adam's t), the noise stream it keys, and, with
// device-resident data, the cursor into the epoch's order with the gather it drives.
#include "vae/cuda_ops.hpp"
#include "vae/device/kernel_runtime.hpp"
#include "vae/noise_streams.hpp"

namespace vae::cuda {
namespace {

__global__ void advance_step_kernel(long long* __restrict__ step, uint64_t* __restrict__ noise_stream) {
  const long long next = *step + 1;
  *step = next;
  *noise_stream = train_stream(static_cast<uint64_t>(next));
}

__global__ void set_noise_stream_kernel(uint64_t value, uint64_t* __restrict__ noise_stream) {
  *noise_stream = value;
}

// Block y = one row of the batch; threads copy that image's bytes from its place in the data set.
__global__ void gather_rows_kernel(int rows, int row_bytes, const uint32_t* __restrict__ order,
                                   const uint32_t* __restrict__ cursor, const uint8_t* __restrict__ data,
                                   uint8_t* __restrict__ out) {
  const int r = blockIdx.y;
  if (r >= rows) return;
  const uint8_t* src = data + static_cast<int64_t>(order[*cursor + r]) * row_bytes;
  uint8_t* dst = out + static_cast<int64_t>(r) * row_bytes;
  for (int i = threadIdx.x; i < row_bytes; i += blockDim.x) dst[i] = src[i];
}

__global__ void advance_cursor_kernel(int rows, uint32_t* __restrict__ cursor) { *cursor += rows; }

}  // namespace

void advance_step(long long* step, uint64_t* noise_stream, cudaStream_t stream) {
  launch_kernel(advance_step_kernel, 1, 1, stream, step, noise_stream);
}

void set_noise_stream(uint64_t value, uint64_t* noise_stream, cudaStream_t stream) {
  launch_kernel(set_noise_stream_kernel, 1, 1, stream, value, noise_stream);
}

void gather_rows(int rows, int row_bytes, const uint32_t* order, uint32_t* cursor, const uint8_t* data,
                 uint8_t* out, cudaStream_t stream) {
  if (rows <= 0) return;
  launch_kernel(gather_rows_kernel, dim3(1, rows), 256, stream, rows, row_bytes, order, cursor, data, out);
  launch_kernel(advance_cursor_kernel, 1, 1, stream, rows, cursor);
}

}  // namespace vae::cuda
