// CudaBackend: device memory sized once from the config, the step of vae_step.hpp over the CUDA
// adapter, captured per (input slot, batch rows), streams and events ordering copy before compute.
#include "vae/cuda_backend.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nvtx3/nvtx3.hpp>

#include "vae/cuda_check.hpp"
#include "vae/cuda_device.hpp"
#include "vae/evaluation.hpp"
#include "vae/gemm_plan.hpp"
#include "vae/noise_streams.hpp"
#include "vae/vae_step.hpp"

namespace vae {
namespace {

// The adapter with an NVTX range per phase, for Nsight Systems (tools/profile.sh); the adapter
// itself stays free of profiling calls so that the emulation tests run it as it is.
struct ProfiledStepOps : cuda::StepOps {
  nvtx3::scoped_range phase(step::Phase phase) const { return nvtx3::scoped_range{step::name(phase)}; }
};

}  // namespace

CudaBackend::CudaBackend(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test)
    : config_(config), layout_(make_layout(config.model)) {
  cudaDeviceProp props{};
  VAE_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  device_name_ = props.name;
  VAE_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
  VAE_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
  for (int k = 0; k < kDeviceSlots; ++k) {
    VAE_CUDA_CHECK(cudaEventCreateWithFlags(&copy_done_[k], cudaEventDisableTiming));
    VAE_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_[k], cudaEventDisableTiming));
  }
  VAE_CUDA_CHECK(cudaEventCreateWithFlags(&snapshot_ready_, cudaEventDisableTiming));
  VAE_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&snapshot_), sizeof(PinnedSnapshot), cudaHostAllocDefault));

  // Parameters start exactly where the reference backend's do.
  std::vector<float> initial(static_cast<size_t>(layout_.total), 0.0f);
  init_params(layout_, config.seed, initial.data());
  params_ = DeviceBuffer<float>(initial);
  // BatchNorm's running statistics (one float when there are none, so the buffer is never empty).
  std::vector<float> running(static_cast<size_t>(std::max<int64_t>(layout_.running_total, 1)), 0.0f);
  init_running_stats(layout_, running.data());
  running_stats_ = DeviceBuffer<float>(running);
  for (auto* buffer : {&grads_, &adam_m_, &adam_v_}) {
    *buffer = DeviceBuffer<float>(initial.size());
    buffer->zero();
  }

  // The activation workspace (ActivationLayout), then GEMM scratch large enough for every batch
  // size this run will see (full, the partial last, evaluation's last).
  const int batch = config.batch;
  const int sms = multiprocessor_count();
  cuda::GemmWorkspaceSize gemm;
  for (int rows : {batch, static_cast<int>(train.count % batch), static_cast<int>(test.count % batch)})
    if (rows != 0) gemm.cover(cuda::model_workspace_size(layout_, rows, config.precision, sms));
  activations_ = make_activation_layout(layout_, batch);
  workspace_ = DeviceBuffer<float>(static_cast<size_t>(activations_.total + std::max<int64_t>(gemm.floats, 1)));
  workspace_.zero();  // padding and unused tails stay defined for the sanitizer's initcheck
  tile_counters_ = DeviceBuffer<unsigned>(static_cast<size_t>(std::max<int64_t>(gemm.counters, 1)));
  tile_counters_.zero();  // the layer kernels leave them zero after every launch
  gemm_workspace_ =
      cuda::GemmWorkspace{workspace_.data() + activations_.total, gemm.floats, tile_counters_.data(), gemm.counters};

  loss_scratch_ = DeviceBuffer<double>(static_cast<size_t>(cuda::loss_scratch_doubles(batch, config.model.input)));
  train_totals_ = DeviceBuffer<double>(2);
  eval_totals_ = DeviceBuffer<double>(2);
  train_totals_.zero();
  step_ = DeviceBuffer<long long>(1);
  step_.zero();
  adam_coefficients_ = DeviceBuffer<AdamCoefficients<float>>(1);
  first_bad_step_ = DeviceBuffer<long long>(1);
  first_bad_step_.zero();
  noise_stream_ = DeviceBuffer<uint64_t>(1);
  noise_stream_.zero();
  slot_bytes_ = static_cast<size_t>(batch) * config.model.input;
  device_batches_ = DeviceBuffer<uint8_t>((kDeviceSlots + 1) * slot_bytes_);
  test_pixels_ = DeviceBuffer<uint8_t>(test.pixels);
  test_split_ = &test;
}

CudaBackend::~CudaBackend() {
  // Nothing here may throw: release what exists, in reverse order of need.
  if (compute_ != nullptr) cudaStreamSynchronize(compute_);
  if (copy_ != nullptr) cudaStreamSynchronize(copy_);
  for (auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph);
  for (int k = 0; k < kDeviceSlots; ++k) {
    if (copy_done_[k] != nullptr) cudaEventDestroy(copy_done_[k]);
    if (compute_done_[k] != nullptr) cudaEventDestroy(compute_done_[k]);
  }
  if (pinned_ != nullptr) cudaFreeHost(pinned_);
  if (snapshot_ != nullptr) cudaFreeHost(snapshot_);
  if (snapshot_ready_ != nullptr) cudaEventDestroy(snapshot_ready_);
  if (copy_ != nullptr) cudaStreamDestroy(copy_);
  if (compute_ != nullptr) cudaStreamDestroy(compute_);
}

std::string CudaBackend::describe() const {
  return fmt::format("{} ({}, {}, {} data)", device_name_, config_.precision == Precision::kTf32 ? "tf32" : "fp32",
                     config_.cuda_graphs ? "CUDA graph replay" : "plain launches",
                     config_.data == DataPlacement::kResident ? "device-resident" : "streamed");
}

std::vector<uint8_t*> CudaBackend::host_slots(int count, size_t bytes) {
  if (pinned_ != nullptr) throw Error("CudaBackend::host_slots: already allocated");
  VAE_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&pinned_), static_cast<size_t>(count) * bytes,
                               cudaHostAllocDefault));
  std::vector<uint8_t*> slots;
  for (int i = 0; i < count; ++i) slots.push_back(pinned_ + static_cast<size_t>(i) * bytes);
  return slots;
}

cuda::StepOps CudaBackend::step_ops(const uint8_t* pixels, double* totals, long long* first_bad_step) {
  return cuda::StepOps{
      .param_layout = &layout_,
      .act_layout = &activations_,
      .params = params_.data(),
      .grads = grads_.data(),
      .adam_m = adam_m_.data(),
      .adam_v = adam_v_.data(),
      .activations = workspace_.data(),
      .running_stats = running_stats_.data(),
      .gemm = gemm_workspace_,
      .loss_scratch = loss_scratch_.data(),
      .totals = totals,
      .step = step_.data(),
      .adam_coefficients = adam_coefficients_.data(),
      .first_bad_step = first_bad_step,
      .noise_stream = noise_stream_.data(),
      .pixels = pixels,
      .precision = config_.precision,
      .seed = config_.seed,
      .beta = config_.model.beta,
      .likelihood = config_.model.likelihood,
      .alpha = config_.model.alpha,
      .adam = config_.adam,
      .stream = compute_,
  };
}

// The whole training step, in stream order; captured into a graph or launched as is.
void CudaBackend::enqueue_step(const uint8_t* pixels, int rows) {
  ProfiledStepOps ops{step_ops(pixels, train_totals_.data(), first_bad_step_.data())};
  step::training_step(ops, rows);
}

uint8_t* CudaBackend::resident_batch() {
  return device_batches_.data() + static_cast<size_t>(kDeviceSlots) * slot_bytes_;
}

void CudaBackend::enqueue_gather(int rows) {
  cuda::gather_rows(rows, config_.model.input, epoch_order_.data(), cursor_.data(), resident_pixels_.data(),
                    resident_batch(), compute_);
}

// One graph per (input buffer, rows): the streamed slots and the resident batch are distinct
// buffers, and only the resident one is filled by a gather inside the graph.
cudaGraphExec_t CudaBackend::graph_for(const uint8_t* pixels, int rows, bool gather_first) {
  const auto key = std::make_pair(pixels, rows);
  if (const auto found = graphs_.find(key); found != graphs_.end()) return found->second;
  VAE_CUDA_CHECK(cudaStreamBeginCapture(compute_, cudaStreamCaptureModeRelaxed));
  try {
    if (gather_first) enqueue_gather(rows);
    enqueue_step(pixels, rows);
  } catch (...) {
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(compute_, &partial);
    if (partial != nullptr) cudaGraphDestroy(partial);
    throw;
  }
  cudaGraph_t graph = nullptr;
  VAE_CUDA_CHECK(cudaStreamEndCapture(compute_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  VAE_CUDA_CHECK(status);
  graphs_.emplace(key, exec);
  return exec;
}

void CudaBackend::run_step(const uint8_t* pixels, int rows, bool gather_first) {
  nvtx3::scoped_range range{"step"};
  if (config_.cuda_graphs) {
    VAE_CUDA_CHECK(cudaGraphLaunch(graph_for(pixels, rows, gather_first), compute_));
  } else {
    if (gather_first) enqueue_gather(rows);
    enqueue_step(pixels, rows);
  }
  ++steps_enqueued_;
}

std::function<void()> CudaBackend::train_step(const uint8_t* pixels, int rows) {
  if (rows < 1 || rows > config_.batch)
    throw Error(fmt::format("train_step: {} rows, expected 1 to {}", rows, config_.batch));
  const int k = next_slot_;
  next_slot_ = (next_slot_ + 1) % kDeviceSlots;
  uint8_t* device_slot = device_batches_.data() + static_cast<size_t>(k) * slot_bytes_;
  {
    nvtx3::scoped_range range{"data"};
    // The device slot is free once the step that last read it is done; the copy then runs on its
    // own stream while the previous step computes.
    VAE_CUDA_CHECK(cudaStreamWaitEvent(copy_, compute_done_[k], 0));
    VAE_CUDA_CHECK(cudaMemcpyAsync(device_slot, pixels, static_cast<size_t>(rows) * config_.model.input,
                                   cudaMemcpyHostToDevice, copy_));
    VAE_CUDA_CHECK(cudaEventRecord(copy_done_[k], copy_));
    VAE_CUDA_CHECK(cudaStreamWaitEvent(compute_, copy_done_[k], 0));
  }
  run_step(device_slot, rows, false);
  VAE_CUDA_CHECK(cudaEventRecord(compute_done_[k], compute_));
  // The host slot may be refilled once its copy has finished (or a later copy on the same stream).
  cudaEvent_t copied = copy_done_[k];
  return [copied] { VAE_CUDA_CHECK(cudaEventSynchronize(copied)); };
}

bool CudaBackend::use_resident_data(const MnistSplit& train) {
  resident_pixels_ = DeviceBuffer<uint8_t>(train.pixels);
  epoch_order_ = DeviceBuffer<uint32_t>(static_cast<size_t>(train.count));
  cursor_ = DeviceBuffer<uint32_t>(1);
  cursor_.zero();
  return true;
}

void CudaBackend::set_epoch_order(const std::vector<uint32_t>& order, uint32_t start) {
  if (order.size() != epoch_order_.size()) throw Error("set_epoch_order: order does not match the resident data");
  // Ordered on the compute stream after the previous epoch's steps; one copy and a reset per epoch.
  VAE_CUDA_CHECK(cudaMemcpyAsync(epoch_order_.data(), order.data(), order.size() * sizeof(uint32_t),
                                 cudaMemcpyHostToDevice, compute_));
  VAE_CUDA_CHECK(cudaMemcpyAsync(cursor_.data(), &start, sizeof start, cudaMemcpyHostToDevice, compute_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));  // `order` and `start` are the caller's, pageable
}

void CudaBackend::train_step_resident(uint32_t /*first*/, int rows) {
  // The cursor on the device walks the order, so `first` is implied by the steps before.
  run_step(resident_batch(), rows, true);
}

LossSums CudaBackend::epoch_sums() {
  double host[2] = {0, 0};
  VAE_CUDA_CHECK(cudaMemcpyAsync(host, train_totals_.data(), sizeof host, cudaMemcpyDeviceToHost, compute_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  return LossSums{host[0], host[1]};
}

void CudaBackend::set_epoch_sums(const LossSums& sums) {
  const double host[2] = {sums.reconstruction, sums.kl};
  VAE_CUDA_CHECK(cudaMemcpyAsync(train_totals_.data(), host, sizeof host, cudaMemcpyHostToDevice, compute_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));  // `host` is a local: the copy must finish here
}

long long CudaBackend::first_nonfinite_step() {
  long long host = 0;
  VAE_CUDA_CHECK(cudaMemcpyAsync(&host, first_bad_step_.data(), sizeof host, cudaMemcpyDeviceToHost, compute_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  return host;
}

// Two small copies in stream order after the steps enqueued so far, then an event: nothing waits.
void CudaBackend::request_snapshot() {
  if (snapshot_pending_) throw Error("request_snapshot: the previous snapshot has not been taken");
  VAE_CUDA_CHECK(cudaMemcpyAsync(snapshot_->sums, train_totals_.data(), sizeof snapshot_->sums,
                                 cudaMemcpyDeviceToHost, compute_));
  VAE_CUDA_CHECK(cudaMemcpyAsync(&snapshot_->first_bad_step, first_bad_step_.data(), sizeof(long long),
                                 cudaMemcpyDeviceToHost, compute_));
  VAE_CUDA_CHECK(cudaEventRecord(snapshot_ready_, compute_));
  snapshot_pending_ = true;
}

std::optional<TrainingBackend::Snapshot> CudaBackend::take_snapshot() {
  if (!snapshot_pending_) return std::nullopt;
  const cudaError_t status = cudaEventQuery(snapshot_ready_);
  if (status == cudaErrorNotReady) return std::nullopt;
  VAE_CUDA_CHECK(status);
  snapshot_pending_ = false;
  return Snapshot{LossSums{snapshot_->sums[0], snapshot_->sums[1]}, snapshot_->first_bad_step};
}

TrainingState CudaBackend::state() {
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  std::vector<float> running;
  if (layout_.running_total > 0) {
    running = running_stats_.download();
    running.resize(static_cast<size_t>(layout_.running_total));
  }
  return TrainingState{params_.download(), adam_m_.download(), adam_v_.download(), std::move(running),
                       steps_enqueued_};
}

void CudaBackend::restore(const TrainingState& state) {
  if (state.params.size() != params_.size() || state.adam_m.size() != params_.size() ||
      state.adam_v.size() != params_.size() ||
      state.running_stats.size() != static_cast<size_t>(layout_.running_total))
    throw Error("restore: the state does not match this model's layout");
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  params_.upload(state.params);
  if (layout_.running_total > 0) running_stats_.upload(state.running_stats);
  adam_m_.upload(state.adam_m);
  adam_v_.upload(state.adam_v);
  step_.upload({state.step});
  first_bad_step_.zero();
  steps_enqueued_ = state.step;
}

TrainingBackend::TestPass CudaBackend::evaluate(const MnistSplit& split, int epoch) {
  nvtx3::scoped_range range{"evaluation"};
  const int latent = config_.model.latent;
  const size_t posterior_floats = static_cast<size_t>(split.count) * 2 * latent;
  if (&split != test_split_) {  // the test split is uploaded once; another split when asked for
    test_pixels_ = DeviceBuffer<uint8_t>(split.pixels);
    test_split_ = &split;
  }
  if (eval_posteriors_.size() != posterior_floats) eval_posteriors_ = DeviceBuffer<float>(posterior_floats);
  const auto count = static_cast<uint32_t>(split.count);
  const int image = split.image_size();
  VAE_CUDA_CHECK(cudaMemsetAsync(eval_totals_.data(), 0, 2 * sizeof(double), compute_));
  for (uint32_t first = 0, b = 0; first < count; first += config_.batch, ++b) {
    const int rows = static_cast<int>(std::min<uint32_t>(config_.batch, count - first));
    const uint8_t* pixels = test_pixels_.data() + static_cast<size_t>(first) * image;
    cuda::set_noise_stream(eval_stream(static_cast<uint64_t>(epoch), b), noise_stream_.data(), compute_);
    ProfiledStepOps ops{step_ops(pixels, eval_totals_.data(), nullptr)};
    step::evaluate(ops, rows);
    // Each batch's posteriors, for the active units: the next batch overwrites the workspace.
    VAE_CUDA_CHECK(cudaMemcpyAsync(eval_posteriors_.data() + static_cast<size_t>(first) * 2 * latent, ops.mu_logvar(),
                                   static_cast<size_t>(rows) * 2 * latent * sizeof(float), cudaMemcpyDeviceToDevice,
                                   compute_));
  }
  double host[2] = {0, 0};
  std::vector<float> posteriors(posterior_floats);
  VAE_CUDA_CHECK(cudaMemcpyAsync(host, eval_totals_.data(), sizeof host, cudaMemcpyDeviceToHost, compute_));
  VAE_CUDA_CHECK(cudaMemcpyAsync(posteriors.data(), eval_posteriors_.data(), posterior_floats * sizeof(float),
                                 cudaMemcpyDeviceToHost, compute_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  std::vector<double> mu(static_cast<size_t>(count) * latent);
  for (size_t i = 0; i < count; ++i)
    std::copy_n(posteriors.begin() + static_cast<ptrdiff_t>(i) * 2 * latent, latent,
                mu.begin() + static_cast<ptrdiff_t>(i) * latent);
  return TestPass{(host[0] + config_.model.beta * host[1]) / count,
                  count_active_units(column_variances(mu, count, latent))};
}

// The learning rate is an argument of the step's first launch, so the captured graphs hold the old
// one: they are dropped (after the device has finished with them) and captured again on next use.
void CudaBackend::set_learning_rate(double lr) {
  if (lr == config_.adam.lr) return;
  config_.adam.lr = lr;
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  for (auto& [key, graph] : graphs_) VAE_CUDA_CHECK(cudaGraphExecDestroy(graph));
  graphs_.clear();
}

std::vector<float> CudaBackend::parameters() {
  std::vector<float> host(params_.size());
  VAE_CUDA_CHECK(cudaMemcpyAsync(host.data(), params_.data(), host.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                 compute_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  return host;
}

}  // namespace vae
