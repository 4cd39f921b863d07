// The CUDA backend's adapter for the step of vae_step.hpp: each op is one launcher of cuda_ops.hpp on
// the pointers it is given, and nothing else -- no allocation, copy, graph or NVTX call -- so that
// the CPU emulation tests can run this very adapter on host memory with the emulated launchers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "vae/activation_layout.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/element_math.hpp"
#include "vae/layout.hpp"
#include "vae/precision.hpp"

namespace vae::cuda {

// It owns nothing: every pointer is device memory (host memory under emulation) that outlives it,
// and every buffer is sized for act_layout->rows images. The step number and the noise stream are
// read from device memory, so one enqueued step can be captured in a graph and replayed.
struct StepOps {
  const ParamLayout* param_layout = nullptr;
  const ActivationLayout* act_layout = nullptr;
  // params, grads, adam_m, adam_v: [param_layout->total] each, in ParamLayout order.
  float* params = nullptr;
  float* grads = nullptr;
  float* adam_m = nullptr;
  float* adam_v = nullptr;
  float* activations = nullptr;   // [act_layout->total], buffers at the offsets of *act_layout
  GemmWorkspace gemm{};           // split-K scratch for every layer (model_workspace_size)
  double* row_scratch = nullptr;  // [2 * rows]
  double* totals = nullptr;       // [bce, kl]: each loss adds its batch's sums
  long long* step = nullptr;      // Adam's 1-based step; begin_step advances it
  long long* first_bad_step = nullptr;  // the NaN guard's flag; null: no guard (evaluation)
  uint64_t* noise_stream = nullptr;     // ε's Philox stream; begin_step sets it (evaluation: the caller)
  const uint8_t* pixels = nullptr;      // the batch [rows, input], also the targets
  Precision precision = Precision::kFp32;  // of the linear layers' GEMMs
  uint64_t seed = 0;
  float beta = 1.0f;  // weight of the KL term
  AdamHyper adam{};
  cudaStream_t stream = nullptr;

  const ParamLayout& layout() const { return *param_layout; }

  void begin_step() const { cuda::advance_step(step, noise_stream, stream); }

  void linear_forward(int rows, int layer) const {
    const LinearSlot& l = param_layout->layers[layer];
    const LayerInput in = act_layout->input(layer);
    if (in.images)
      cuda::linear_forward_pixels(rows, l.in, l.out, l.relu, pixels, params + l.weight_offset,
                                  params + l.bias_offset, at(act_layout->out[layer]), precision, gemm, stream);
    else
      cuda::linear_forward(rows, l.in, l.out, l.relu, at(in.x), params + l.weight_offset, params + l.bias_offset,
                           at(act_layout->out[layer]), precision, gemm, stream);
  }

  void reparam_forward(int rows) const {
    cuda::reparam_forward(rows, act_layout->latent, seed, noise_stream, at(act_layout->out[param_layout->head()]),
                          at(act_layout->eps), at(act_layout->z), stream);
  }

  // The NaN guard rides on the training loss (first_bad_step set); evaluation passes none.
  void loss(int rows, bool gradient) const {
    const int out = param_layout->output();
    const NonfiniteGuard guard = first_bad_step != nullptr ? NonfiniteGuard{step, first_bad_step} : NonfiniteGuard{};
    cuda::bce_kl_loss(rows, param_layout->layers[0].in, act_layout->latent, at(act_layout->out[out]), pixels,
                      at(act_layout->out[param_layout->head()]), gradient ? at(act_layout->grad[out]) : nullptr,
                      row_scratch, totals, guard, stream);
  }

  void linear_backward(int rows, int layer) const {
    const LinearSlot& l = param_layout->layers[layer];
    const LayerInput in = act_layout->input(layer);
    float* dweight = grads + l.weight_offset;
    float* dbias = grads + l.bias_offset;
    if (in.images)
      cuda::linear_backward_pixels(rows, l.in, l.out, l.relu, pixels, at(act_layout->out[layer]),
                                   at(act_layout->grad[layer]), dweight, dbias, precision, gemm, stream);
    else
      cuda::linear_backward(rows, l.in, l.out, l.relu, at(in.x), params + l.weight_offset, at(act_layout->out[layer]),
                            at(act_layout->grad[layer]), at(in.dx), dweight, dbias, precision, gemm, stream);
  }

  void reparam_backward(int rows) const {
    const int head = param_layout->head();
    cuda::reparam_backward(rows, act_layout->latent, beta, at(act_layout->out[head]), at(act_layout->eps),
                           at(act_layout->dz), at(act_layout->grad[head]), stream);
  }

  void optimizer_step() const {
    cuda::adam_step(param_layout->total, adam, step, grads, params, adam_m, adam_v, stream);
  }

  // The workspace buffer at an ActivationLayout offset.
  float* at(int64_t offset) const { return activations + offset; }
};

}  // namespace vae::cuda
