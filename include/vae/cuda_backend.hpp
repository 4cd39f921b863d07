// The GPU backend: the whole step (forward, loss, backward, Adam) on the device, replayed as a CUDA
// graph, with batches copied from pinned host slots on a second stream so that the copy of batch
// k + 1 overlaps the compute of batch k. The host never waits for the GPU inside an epoch.
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "vae/activation_layout.hpp"
#include "vae/config.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/cuda_step_ops.hpp"
#include "vae/device_buffer.hpp"
#include "vae/layout.hpp"
#include "vae/training_backend.hpp"

namespace vae {

class CudaBackend : public TrainingBackend {
 public:
  // train and test fix the sizes of the partial batches; test is uploaded once for evaluation.
  CudaBackend(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string describe() const override;
  std::vector<uint8_t*> host_slots(int count, size_t bytes) override;
  std::function<void()> train_step(const uint8_t* pixels, int rows) override;
  bool use_resident_data(const MnistSplit& train) override;
  void set_epoch_order(const std::vector<uint32_t>& order, uint32_t start) override;
  void train_step_resident(uint32_t first, int rows) override;
  LossSums epoch_sums() override;
  void set_epoch_sums(const LossSums& sums) override;
  long long first_nonfinite_step() override;
  void request_snapshot() override;
  std::optional<Snapshot> take_snapshot() override;
  TestPass evaluate(const MnistSplit& split, int epoch) override;
  void set_learning_rate(double lr) override;
  std::vector<float> parameters() override;
  long long step() const override { return steps_enqueued_; }
  TrainingState state() override;
  void restore(const TrainingState& state) override;

  // Device slots for streamed batches: one being copied into while another is computed on.
  static constexpr int kDeviceSlots = 2;

 private:
  uint8_t* resident_batch();
  void enqueue_gather(int rows);
  // The step's adapter on this backend's buffers, for a batch at `pixels`; the loss adds to totals,
  // with the NaN guard when first_bad_step is not null.
  cuda::StepOps step_ops(const uint8_t* pixels, double* totals, long long* first_bad_step);
  void enqueue_step(const uint8_t* pixels, int rows);
  void run_step(const uint8_t* pixels, int rows, bool gather_first);
  cudaGraphExec_t graph_for(const uint8_t* pixels, int rows, bool gather_first);

  TrainConfig config_;
  ParamLayout layout_;
  std::string device_name_;
  cudaStream_t compute_ = nullptr, copy_ = nullptr;
  cudaEvent_t copy_done_[kDeviceSlots] = {}, compute_done_[kDeviceSlots] = {};

  // One allocation each, as the design asks: parameters, gradients, Adam's two moments, activations
  // (with the GEMM split-K scratch at their end).
  DeviceBuffer<float> params_, grads_, adam_m_, adam_v_, workspace_;
  DeviceBuffer<float> running_stats_;  // BatchNorm's running means and variances (ParamLayout::running_total)
  ActivationLayout activations_;  // the start of workspace_
  DeviceBuffer<unsigned> tile_counters_;  // the layer kernels' hand-over counters
  cuda::GemmWorkspace gemm_workspace_;
  DeviceBuffer<double> loss_scratch_, train_totals_, eval_totals_;
  DeviceBuffer<long long> step_, first_bad_step_;
  DeviceBuffer<AdamCoefficients<float>> adam_coefficients_;  // the step's, derived as it advances
  DeviceBuffer<uint64_t> noise_stream_;
  DeviceBuffer<uint8_t> device_batches_;  // kDeviceSlots streamed batches, then one resident-gather batch
  DeviceBuffer<uint8_t> test_pixels_, resident_pixels_;
  DeviceBuffer<float> eval_posteriors_;  // mu ‖ logvar of the evaluated split, for its active units
  DeviceBuffer<uint32_t> epoch_order_, cursor_;
  const MnistSplit* test_split_ = nullptr;
  uint8_t* pinned_ = nullptr;
  // Where a snapshot lands (pinned, so the copy is truly asynchronous) and the event saying it has.
  struct PinnedSnapshot {
    double sums[2];
    long long first_bad_step;
  };
  PinnedSnapshot* snapshot_ = nullptr;
  cudaEvent_t snapshot_ready_ = nullptr;
  bool snapshot_pending_ = false;
  size_t slot_bytes_ = 0;
  int next_slot_ = 0;
  long long steps_enqueued_ = 0;
  std::map<std::pair<const uint8_t*, int>, cudaGraphExec_t> graphs_;  // (input, rows) -> step graph
};

}  // namespace vae
