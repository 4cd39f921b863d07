// --evaluate on the GPU: the EvaluationBackend of evaluation.hpp over the CUDA backend's own layer
// launches (cuda_importance_ops.hpp), in fp32 as the reference computes, with the split's images
// uploaded once and each chunk's figures copied back for the host to combine.
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "vae/activation_layout.hpp"
#include "vae/config.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/cuda_step_ops.hpp"
#include "vae/device_buffer.hpp"
#include "vae/evaluation.hpp"
#include "vae/idx.hpp"
#include "vae/layout.hpp"

namespace vae {

class CudaEvaluation final : public EvaluationBackend {
 public:
  // Importance samples decoded per launch, at most (fewer for a model so wide that the workspace
  // would pass kWorkspaceBytes), and samples per chunk: enough to keep the host's share, one copy
  // and a log-sum-exp per chunk, small.
  static constexpr int kMaxRows = 4096;
  static constexpr int64_t kWorkspaceBytes = int64_t{1} << 30;
  static constexpr int64_t kChunkSamples = 16 * kMaxRows;

  // Uploads the parameters, BatchNorm's running statistics and split's images to device 0. Throws
  // vae::Error when there is no device or the parameters do not fit the model.
  CudaEvaluation(const ModelConfig& model, const std::vector<float>& params, const std::vector<float>& running_stats,
                 const MnistSplit& split);
  ~CudaEvaluation() override;
  CudaEvaluation(const CudaEvaluation&) = delete;
  CudaEvaluation& operator=(const CudaEvaluation&) = delete;

  std::string describe() const override;
  int max_images() const override { return activations_.rows; }
  int64_t chunk_samples() const override { return kChunkSamples; }

 private:
  void encode_images(int64_t first, int images, float* posteriors) override;
  void weigh_samples(int64_t first, int images, int K, uint64_t seed, double* reconstruction,
                     double* log_ratio) override;
  cuda::StepOps step_ops();

  ModelConfig model_;
  ParamLayout layout_;
  ActivationLayout activations_;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<float> params_, running_stats_, workspace_, posteriors_;
  DeviceBuffer<unsigned> tile_counters_;
  cuda::GemmWorkspace gemm_{};
  DeviceBuffer<uint8_t> pixels_, targets_;
  DeviceBuffer<double> reconstruction_, log_ratio_, totals_;
};

}  // namespace vae
