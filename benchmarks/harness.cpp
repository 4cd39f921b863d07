// The harness's shared state and its one timing path, so that every figure in a report is
// measured the same way (events, median, same stream) and labelled the same way.
#include "harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "bench_stats.hpp"
#include "library_check.hpp"
#include "vae/cuda_check.hpp"
#include "vae/error.hpp"

#if VAE_BENCH_HAVE_CUDNN
#include "cudnn_check.hpp"
#endif

namespace vae::bench {

DeviceInfo query_device_info() {
  int device = 0;
  VAE_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp props{};
  VAE_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
  DeviceInfo info;
  info.name = props.name;
  const auto attribute = [&](cudaDeviceAttr which) {
    int value = 0;
    VAE_CUDA_CHECK(cudaDeviceGetAttribute(&value, which, device));
    return value;
  };
  info.sm_count = attribute(cudaDevAttrMultiProcessorCount);
  info.sm_clock_khz = attribute(cudaDevAttrClockRate);
  info.memory_clock_khz = attribute(cudaDevAttrMemoryClockRate);
  info.bus_width_bits = attribute(cudaDevAttrGlobalMemoryBusWidth);
  info.l2_bytes = attribute(cudaDevAttrL2CacheSize);
  int driver = 0;
  VAE_CUDA_CHECK(cudaDriverGetVersion(&driver));
  info.driver = fmt::format("{}.{}", driver / 1000, driver % 1000 / 10);
  return info;
}

const char* precision_name(Precision precision) { return precision == Precision::kTf32 ? "tf32" : "fp32"; }

Harness::Harness(const TimingPlan& plan) : plan_(plan), device_(query_device_info()) {
  peaks_ = device_peaks(device_.sm_count, device_.sm_clock_khz, device_.memory_clock_khz, device_.bus_width_bits);
  VAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  VAE_CUBLAS_CHECK(cublasCreate(&blas_));
  // A workspace of its own, so cuBLAS never allocates mid-run (nor inside a captured graph).
  blas_workspace_ = DeviceBuffer<unsigned char>(cublaslt::kWorkspaceBytes);
  VAE_CUBLAS_CHECK(cublasSetWorkspace(blas_, blas_workspace_.data(), blas_workspace_.size()));
  VAE_CUBLAS_CHECK(cublasLtCreate(&lt_));
  lt_workspace_ = DeviceBuffer<unsigned char>(cublaslt::kWorkspaceBytes);
#if VAE_BENCH_HAVE_CUDNN
  VAE_CUDNN_CHECK(cudnnCreate(&dnn_));
#endif
  timer_ = std::make_unique<EventTimer>(stream_, static_cast<size_t>(device_.l2_bytes));
}

Harness::~Harness() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  timer_.reset();
#if VAE_BENCH_HAVE_CUDNN
  if (dnn_ != nullptr) cudnnDestroy(dnn_);
#endif
  if (lt_ != nullptr) cublasLtDestroy(lt_);
  if (blas_ != nullptr) cublasDestroy(blas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

double Harness::time(const RowLabel& label, const std::function<void()>& enqueue, const std::optional<OpCost>& cost,
                     bool flush_l2) {
  // Setup uploads and memsets ran on the default stream, which ours does not wait for.
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
  TimingPlan plan = plan_;
  plan.flush_l2 = flush_l2;
  const std::vector<double> us = timer_->time_us(enqueue, plan);
  Measurement m{label.group, label.op, label.shape, label.impl, precision_name(label.precision), median(us), {}, {}, {}};
  if (cost) m.roofline_share = roofline_share(*cost, m.median_us * 1e-6, peaks_, label.precision);
  m.extra["min_us"] = minimum(us);
  m.extra["p90_us"] = percentile(us, 90);
  fmt::print("{:<22} {:<28} {:<26} {:4}  {:10.2f} us", label.op, label.shape, label.impl, m.precision, m.median_us);
  if (m.roofline_share) fmt::print("  {:5.1f}% of roofline", 100 * *m.roofline_share);
  fmt::print("\n");
  results_.push_back(std::move(m));
  return results_.back().median_us;
}

void Harness::attempt(const std::string& what, const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    // Drain whatever the failed attempt left queued, so the next one starts clean.
    cudaStreamSynchronize(stream_);
    cudaGetLastError();
    notes_.push_back(fmt::format("{}: not measured ({})", what, e.what()));
    fmt::print("{}: not measured: {}\n", what, e.what());
  }
}

void Harness::note_once(const std::string& text) {
  if (std::find(notes_.begin(), notes_.end(), text) == notes_.end()) notes_.push_back(text);
}

void Harness::annotate_last(const std::string& key, double value) {
  if (!results_.empty()) results_.back().extra[key] = value;
}

void Harness::record_difference(double difference) {
  annotate_last("max_rel_diff", difference);
  if (results_.empty() || difference <= kAgreement) return;
  const Measurement& m = results_.back();
  notes_.push_back(fmt::format("{} {} {} {}: differs from ours by {:.3g} (relative)", m.op, m.shape, m.impl,
                               m.precision, difference));
  fmt::print("  ^ differs from ours by {:.3g} (relative)\n", difference);
}

double max_relative_difference(const float* a, const float* b, size_t count) {
  VAE_CUDA_CHECK(cudaDeviceSynchronize());  // the harness stream does not order with plain cudaMemcpy
  std::vector<float> ha(count), hb(count);
  VAE_CUDA_CHECK(cudaMemcpy(ha.data(), a, count * sizeof(float), cudaMemcpyDeviceToHost));
  VAE_CUDA_CHECK(cudaMemcpy(hb.data(), b, count * sizeof(float), cudaMemcpyDeviceToHost));
  double largest = 0, difference = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(ha[i])) return std::nan("");
    largest = std::max(largest, std::fabs(static_cast<double>(hb[i])));
    difference = std::max(difference, std::fabs(static_cast<double>(ha[i]) - hb[i]));
  }
  return largest > 0 ? difference / largest : difference;
}

double worst_of(std::initializer_list<double> differences) {
  double worst = 0;
  for (double d : differences) {
    if (std::isnan(d)) return d;
    worst = std::max(worst, d);
  }
  return worst;
}

void poison(DeviceBuffer<float>& buffer) {
  if (buffer.size() > 0) VAE_CUDA_CHECK(cudaMemset(buffer.data(), 0xff, buffer.size() * sizeof(float)));
}

DeviceBuffer<float> random_floats(size_t count, float low, float high, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(low, high);
  std::vector<float> host(count);
  for (float& value : host) value = uniform(rng);
  return DeviceBuffer<float>(host);
}

DeviceBuffer<uint8_t> random_pixels(size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> host(count);
  for (uint8_t& value : host) value = static_cast<uint8_t>(rng() % 256);
  return DeviceBuffer<uint8_t>(host);
}

}  // namespace vae::bench
