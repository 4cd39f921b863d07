// What every vae_bench measurement shares: the device and its peaks, one stream, the library
// handles, the event timer, and the list of results each timing appends to. Baselines that the
// installed libraries cannot run become notes in the report instead of aborting the run.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "baseline_cublaslt.hpp"
#include "event_timer.hpp"
#include "report.hpp"
#include "roofline.hpp"
#include "vae/config.hpp"
#include "vae/device_buffer.hpp"

#if VAE_BENCH_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace vae::bench {

// The runtime's readings for device 0 (clocks as cudaDeviceGetAttribute reports them).
DeviceInfo query_device_info();

const char* precision_name(Precision precision);

struct RowLabel {
  std::string group, op, shape, impl;
  Precision precision = Precision::kFp32;
};

class Harness {
 public:
  explicit Harness(const TimingPlan& plan);
  ~Harness();
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Times enqueue() (warm-ups, then each repetition between events, L2 flushed first when
  // flush_l2), appends the median -- with its roofline share when a cost is given -- prints it,
  // and returns it in microseconds.
  double time(const RowLabel& label, const std::function<void()>& enqueue, const std::optional<OpCost>& cost,
              bool flush_l2 = true);
  // Runs one implementation's setup and timing; a vae::Error (a library that lacks the algorithm,
  // say) becomes a note naming `what`, and the run goes on.
  void attempt(const std::string& what, const std::function<void()>& body);
  // A note for the report, kept once however often it is added.
  void note_once(const std::string& text);
  // Adds a figure to the last measurement.
  void annotate_last(const std::string& key, double value);
  // Records the last measurement's largest relative difference from ours ("max_rel_diff"); one
  // above kAgreement (or not finite) also becomes a note, since that figure compares different work.
  void record_difference(double difference);
  static constexpr double kAgreement = 1e-2;  // TF32 against TF32 in another order stays near 1e-3

  const DeviceInfo& device() const { return device_; }
  const DevicePeaks& peaks() const { return peaks_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  cublasLtHandle_t lt() const { return lt_; }
  cublaslt::Workspace lt_workspace() { return {lt_workspace_.data(), lt_workspace_.size()}; }
#if VAE_BENCH_HAVE_CUDNN
  cudnnHandle_t dnn() const { return dnn_; }
#endif

  std::vector<Measurement>& results() { return results_; }
  std::vector<std::string>& notes() { return notes_; }

 private:
  TimingPlan plan_;
  DeviceInfo device_;
  DevicePeaks peaks_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
#if VAE_BENCH_HAVE_CUDNN
  cudnnHandle_t dnn_ = nullptr;
#endif
  DeviceBuffer<unsigned char> blas_workspace_, lt_workspace_;
  std::unique_ptr<EventTimer> timer_;
  std::vector<Measurement> results_;
  std::vector<std::string> notes_;
};

// Largest |a - b| over the largest |b|: how far a baseline's output is from ours (b), relative.
// NaN when a holds a non-finite value (poison() below, left unwritten).
double max_relative_difference(const float* a, const float* b, size_t count);

// Fills a baseline's output with NaNs before it runs, so that an output it never writes cannot
// pass for agreement with the values an earlier implementation left there.
void poison(DeviceBuffer<float>& buffer);

// The largest of several differences, NaN if any is NaN (std::max would drop it).
double worst_of(std::initializer_list<double> differences);

// Uniform random floats in [low, high), seeded, uploaded once per benchmark.
DeviceBuffer<float> random_floats(size_t count, float low, float high, unsigned seed);
DeviceBuffer<uint8_t> random_pixels(size_t count, unsigned seed);

}  // namespace vae::bench
