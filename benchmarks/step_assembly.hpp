// A training step of the default model over one set of buffers, with its linear layers from any
// implementation (ours, cuBLAS, cuBLASLt, cuDNN) behind one interface. Ours is CudaBackend's fused
// step, one forward and one backward launch per layer; the libraries have no epilogues for the
// rest of the step, so theirs is assembled from their layers and our standalone kernels, in the same
// order -- the unfused step a library user would write.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "baseline_cublaslt.hpp"
#include "vae/activation_layout.hpp"
#include "vae/config.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/cuda_step_ops.hpp"
#include "vae/device_buffer.hpp"
#include "vae/element_math.hpp"
#include "vae/layout.hpp"

#if VAE_BENCH_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace vae::bench {

// The model's state and activations for one batch size, laid out as CudaBackend lays them out
// (ActivationLayout; the GEMM scratch apart).
struct StepState {
  StepState(const ParamLayout& layout, int rows, int sm_count);
  // Back to the same starting point: initial parameters, zero moments, step 0.
  void reset();

  // The CUDA step adapter on these buffers; precision is that of our linear layers.
  cuda::StepOps ops(Precision precision, cudaStream_t stream);

  // Layer i's output [rows, out] and its gradient.
  float* out(int i) { return activations.data() + act_layout.out[i]; }
  float* grad(int i) { return activations.data() + act_layout.grad[i]; }
  // Layer i's float input (for layer 0 the library chains' float copy of the pixels) and input
  // gradient (null for layer 0).
  float* input(int i) {
    const LayerInput in = act_layout.input(i);
    return in.images ? pixels_float.data() : activations.data() + in.x;
  }
  float* input_grad(int i) {
    const LayerInput in = act_layout.input(i);
    return in.images ? nullptr : activations.data() + in.dx;
  }
  const float* weight(int i) const { return params.data() + layout.layers[i].weight_offset; }
  const float* bias(int i) const { return params.data() + layout.layers[i].bias_offset; }
  float* dweight(int i) { return grads.data() + layout.layers[i].weight_offset; }
  float* dbias(int i) { return grads.data() + layout.layers[i].bias_offset; }

  ParamLayout layout;
  int rows;
  ActivationLayout act_layout;
  std::vector<float> initial;
  DeviceBuffer<float> params, grads, m, v, activations, pixels_float, dy_masked, gemm_workspace;
  DeviceBuffer<unsigned> gemm_counters_buffer;  // the layer kernels' hand-over counters, zero between launches
  std::vector<DeviceBuffer<uint8_t>> masks;  // cuBLASLt's ReLU bits, per layer
  DeviceBuffer<uint8_t> pixels;
  DeviceBuffer<double> loss_scratch{static_cast<size_t>(cuda::loss_scratch_doubles(rows, layout.layers[0].in))};
  DeviceBuffer<double> totals{2};
  DeviceBuffer<long long> step{1}, first_bad_step{1};
  DeviceBuffer<AdamCoefficients<float>> adam_coefficients{1};  // the step's, derived as it advances
  DeviceBuffer<uint64_t> noise_stream{1};
};

// One implementation of the model's linear layers: layer i's forward and its backward from the
// gradient at its output (the plain layer, nothing else), and a training step built on them.
class LinearChain {
 public:
  virtual ~LinearChain() = default;
  virtual void forward(StepState& s, int i, cudaStream_t stream) = 0;
  virtual void backward(StepState& s, int i, cudaStream_t stream) = 0;
  // One training step on `stream` (vae_step.hpp's, as CudaBackend's). By default the unfused step:
  // these layers, with our standalone kernels between them for the step advance, the
  // reparameterisation, the loss with the NaN guard, its backward and one Adam launch over every
  // parameter. Ours overrides it with the fused step unless asked for the unfused one.
  virtual void enqueue_step(StepState& s, cudaStream_t stream);
};

// Ours fused (CudaBackend's step) or, to measure the fusion, assembled as the libraries' steps are.
std::unique_ptr<LinearChain> ours_chain(Precision precision, bool fused = true);
std::unique_ptr<LinearChain> cublas_chain(cublasHandle_t blas, Precision precision);
std::unique_ptr<LinearChain> cublaslt_chain(const StepState& s, cublasLtHandle_t lt, Precision precision,
                                            cublaslt::Workspace workspace);
#if VAE_BENCH_HAVE_CUDNN
std::unique_ptr<LinearChain> cudnn_chain(const StepState& s, cudnnHandle_t dnn, cublasHandle_t blas,
                                         Precision precision);
#endif

}  // namespace vae::bench
