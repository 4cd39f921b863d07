// CudaEvaluation: device memory sized once for up to kMaxRows decoded samples, the chunk's launches
// of cuda_importance_ops.hpp on one stream, and the copies around them.
#include "vae/cuda_evaluation.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "vae/cuda_check.hpp"
#include "vae/cuda_device.hpp"
#include "vae/cuda_importance_ops.hpp"
#include "vae/gemm_plan.hpp"

namespace vae {

CudaEvaluation::CudaEvaluation(const ModelConfig& model, const std::vector<float>& params,
                               const std::vector<float>& running_stats, const MnistSplit& split)
    : EvaluationBackend(split.count), model_(model), layout_(make_layout(model)) {
  if (static_cast<int64_t>(params.size()) != layout_.total ||
      static_cast<int64_t>(running_stats.size()) != layout_.running_total)
    throw Error(fmt::format("evaluation: {} parameters and {} running statistics given, the model has {} and {}",
                            params.size(), running_stats.size(), layout_.total, layout_.running_total));
  if (split.image_size() != model.input)
    throw Error(fmt::format("evaluation: the images have {} pixels, the model takes {}", split.image_size(), model.input));
  cudaDeviceProp props{};
  VAE_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  device_name_ = props.name;

  params_ = DeviceBuffer<float>(params);
  // One float when there is no BatchNorm, so that the buffer is never empty.
  running_stats_ = DeviceBuffer<float>(running_stats.empty() ? std::vector<float>{0.0f} : running_stats);
  // The training step's workspace layout (its gradient buffers unused here), for as many rows as fit
  // kWorkspaceBytes, and GEMM scratch for every block size a chunk can end on.
  const int64_t floats_per_row = make_activation_layout(layout_, 1).total;
  const int rows = static_cast<int>(std::clamp<int64_t>(kWorkspaceBytes / 4 / floats_per_row, 1, kMaxRows));
  const cuda::GemmWorkspaceSize gemm =
      cuda::model_workspace_size_up_to(layout_, rows, Precision::kFp32, multiprocessor_count());
  activations_ = make_activation_layout(layout_, rows);
  workspace_ = DeviceBuffer<float>(static_cast<size_t>(activations_.total + std::max<int64_t>(gemm.floats, 1)));
  workspace_.zero();
  tile_counters_ = DeviceBuffer<unsigned>(static_cast<size_t>(std::max<int64_t>(gemm.counters, 1)));
  tile_counters_.zero();  // the layer kernels leave them zero after every launch
  gemm_ = cuda::GemmWorkspace{workspace_.data() + activations_.total, gemm.floats, tile_counters_.data(), gemm.counters};

  pixels_ = DeviceBuffer<uint8_t>(split.pixels);
  targets_ = DeviceBuffer<uint8_t>(static_cast<size_t>(rows) * model.input);
  posteriors_ = DeviceBuffer<float>(static_cast<size_t>(rows) * 2 * model.latent);
  totals_ = DeviceBuffer<double>(2);
  // Last: nothing after it may throw, or the stream would outlive a constructor that failed.
  VAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

CudaEvaluation::~CudaEvaluation() {
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

std::string CudaEvaluation::describe() const { return fmt::format("{} (fp32)", device_name_); }

cuda::StepOps CudaEvaluation::step_ops() {
  return cuda::StepOps{.param_layout = &layout_,
                       .act_layout = &activations_,
                       .params = params_.data(),
                       .activations = workspace_.data(),
                       .running_stats = layout_.running_total > 0 ? running_stats_.data() : nullptr,
                       .gemm = gemm_,
                       .totals = totals_.data(),
                       .precision = Precision::kFp32,
                       .beta = model_.beta,
                       .likelihood = model_.likelihood,
                       .alpha = model_.alpha,
                       .stream = stream_};
}

void CudaEvaluation::encode_images(int64_t first, int images, float* posteriors) {
  const cuda::StepOps ops = step_ops();
  cuda::encode_chunk(ops, pixels_.data() + first * model_.input, images);
  // Kept on the device for weigh (the samples' rows overwrite the head's output) and copied back.
  const size_t bytes = static_cast<size_t>(images) * 2 * model_.latent * sizeof(float);
  VAE_CUDA_CHECK(cudaMemcpyAsync(posteriors_.data(), ops.mu_logvar(), bytes, cudaMemcpyDeviceToDevice, stream_));
  VAE_CUDA_CHECK(cudaMemcpyAsync(posteriors, posteriors_.data(), bytes, cudaMemcpyDeviceToHost, stream_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaEvaluation::weigh_samples(int64_t first, int images, int K, uint64_t seed, double* reconstruction,
                                   double* log_ratio) {
  const int64_t samples = static_cast<int64_t>(images) * K;
  const size_t scratch = static_cast<size_t>(samples + cuda::loss_scratch_doubles(activations_.rows, model_.input));
  if (reconstruction_.size() < scratch) {  // grows for a chunk of more samples than any before
    reconstruction_ = DeviceBuffer<double>(scratch);
    log_ratio_ = DeviceBuffer<double>(static_cast<size_t>(samples));
  }
  VAE_CUDA_CHECK(cudaMemsetAsync(totals_.data(), 0, 2 * sizeof(double), stream_));
  cuda::weigh_chunk(step_ops(), cuda::ImportanceChunk{.first = first,
                                                      .images = images,
                                                      .samples_per_image = K,
                                                      .seed = seed,
                                                      .pixels = pixels_.data() + first * model_.input,
                                                      .posteriors = posteriors_.data(),
                                                      .targets = targets_.data(),
                                                      .log_ratio = log_ratio_.data(),
                                                      .reconstruction = reconstruction_.data()});
  const size_t bytes = static_cast<size_t>(samples) * sizeof(double);
  VAE_CUDA_CHECK(cudaMemcpyAsync(reconstruction, reconstruction_.data(), bytes, cudaMemcpyDeviceToHost, stream_));
  VAE_CUDA_CHECK(cudaMemcpyAsync(log_ratio, log_ratio_.data(), bytes, cudaMemcpyDeviceToHost, stream_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace vae
