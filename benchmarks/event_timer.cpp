// CUDA-event timing of enqueued work; see event_timer.hpp for why the events are read only at the end.
#include "event_timer.hpp"

#include "vae/cuda_check.hpp"

namespace vae::bench {

EventTimer::EventTimer(cudaStream_t stream, size_t l2_bytes) : stream_(stream), flush_(2 * l2_bytes) {}

EventTimer::~EventTimer() {
  for (cudaEvent_t event : events_) cudaEventDestroy(event);
}

std::vector<double> EventTimer::time_us(const std::function<void()>& enqueue, const TimingPlan& plan) {
  const auto flush = [&] {
    if (plan.flush_l2 && flush_.size() > 0) VAE_CUDA_CHECK(cudaMemsetAsync(flush_.data(), 0, flush_.size(), stream_));
  };
  for (int i = 0; i < plan.warmups; ++i) {
    flush();
    enqueue();
  }
  while (events_.size() < 2 * static_cast<size_t>(plan.repetitions)) {
    cudaEvent_t event = nullptr;
    VAE_CUDA_CHECK(cudaEventCreate(&event));
    events_.push_back(event);
  }
  for (int i = 0; i < plan.repetitions; ++i) {
    flush();
    VAE_CUDA_CHECK(cudaEventRecord(events_[2 * i], stream_));
    enqueue();
    VAE_CUDA_CHECK(cudaEventRecord(events_[2 * i + 1], stream_));
  }
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::vector<double> us(plan.repetitions);
  for (int i = 0; i < plan.repetitions; ++i) {
    float ms = 0;
    VAE_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]));
    us[i] = 1e3 * ms;
  }
  return us;
}

}  // namespace vae::bench
