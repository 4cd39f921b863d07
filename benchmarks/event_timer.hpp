// Times GPU work on one stream with CUDA events, one pair per repetition, read back after a single
// synchronisation at the end, so the host never stalls the queue between repetitions. An optional
// L2 flush before each repetition makes every one start cold, as a layer inside a step does.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <vector>

#include "vae/device_buffer.hpp"

namespace vae::bench {

struct TimingPlan {
  int warmups = 20;
  int repetitions = 200;
  bool flush_l2 = true;
};

class EventTimer {
 public:
  // The flush buffer is twice the L2 (cudaDevAttrL2CacheSize), so writing it evicts everything.
  EventTimer(cudaStream_t stream, size_t l2_bytes);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // enqueue() puts one repetition of the work on the stream; returns each timed repetition's
  // microseconds. The flush runs before the start event, so it is never timed.
  std::vector<double> time_us(const std::function<void()>& enqueue, const TimingPlan& plan);

  cudaStream_t stream() const { return stream_; }

 private:
  cudaStream_t stream_;
  DeviceBuffer<unsigned char> flush_;
  std::vector<cudaEvent_t> events_;  // grown to 2 x repetitions, reused
};

}  // namespace vae::bench
