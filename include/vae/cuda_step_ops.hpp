// The CUDA backend's adapter for the step of vae_step.hpp: each op is one launcher of cuda_ops.hpp on
// the pointers it is given, and nothing else -- no allocation, copy, graph or NVTX call -- so that
// the CPU emulation tests can run this very adapter on host memory with the emulated launchers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "vae/activation_layout.hpp"
#include "vae/config.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/element_math.hpp"
#include "vae/layout.hpp"
#include "vae/precision.hpp"
#include "vae/vae_step.hpp"

namespace vae::cuda {

// It owns nothing: every pointer is device memory (host memory under emulation) that outlives it,
// and every buffer is sized for act_layout->rows images. The step number and the noise stream are
// read from device memory, so one enqueued step can be captured in a graph and replayed. Each op is
// one launch, but for a BatchNorm layer's backward, which is two: a training step is one forward and
// one backward launch per layer, and one more per BatchNorm layer (its backward; its forward rides
// on the layer's forward launch).
struct StepOps {
  const ParamLayout* param_layout = nullptr;
  const ActivationLayout* act_layout = nullptr;
  // params, grads, adam_m, adam_v: [param_layout->total] each, in ParamLayout order.
  float* params = nullptr;
  float* grads = nullptr;
  float* adam_m = nullptr;
  float* adam_v = nullptr;
  float* activations = nullptr;    // [act_layout->total], buffers at the offsets of *act_layout
  float* running_stats = nullptr;  // BatchNorm's [param_layout->running_total]; null without BatchNorm
  GemmWorkspace gemm{};            // split-K scratch and counters for every layer (model_workspace_size)
  double* loss_scratch = nullptr;  // [loss_scratch_doubles(rows, input)]; first each row's BCE, then KL
  double* totals = nullptr;        // [bce, kl]: each loss adds its batch's sums
  long long* step = nullptr;       // Adam's 1-based step; the training step's first launch advances it
  AdamCoefficients<float>* adam_coefficients = nullptr;  // derived from *step as it advances
  long long* first_bad_step = nullptr;  // the NaN guard's flag; null: no guard (evaluation)
  uint64_t* noise_stream = nullptr;     // ε's Philox stream; the step sets it (evaluation: the caller)
  const uint8_t* pixels = nullptr;      // the batch [rows, input], also the targets
  Precision precision = Precision::kFp32;  // of the linear layers' GEMMs
  uint64_t seed = 0;
  float beta = 1.0f;  // weight of the KL term
  Likelihood likelihood = Likelihood::kBernoulli;  // and with it how the first layer reads the pixels
  float alpha = 1.0f;                              // kGaussian's weight of the squared error
  AdamHyper adam{};
  cudaStream_t stream = nullptr;

  const ParamLayout& layout() const { return *param_layout; }

  void linear_forward(int rows, int layer, step::ForwardWork work) const {
    const LinearSlot& l = param_layout->layers[layer];
    const LayerInput in = act_layout->input(layer);
    LinearForward f{.rows = rows,
                    .in = l.in,
                    .out = l.out,
                    .activation = l.activation,
                    .negative_slope = l.negative_slope,
                    .signed_pixels = signed_pixels(),
                    .x = in.images ? nullptr : at(in.x),
                    .pixels = in.images ? pixels : nullptr,
                    .weight = params + l.weight_offset,
                    .bias = params + l.bias_offset,
                    .y = at(act_layout->out[layer])};
    if (l.batch_norm)
      f.batch_norm = BatchNormEpilogue{work.training,
                                       kBatchNormMomentum,
                                       kBatchNormEps,
                                       params + l.bn_weight_offset,
                                       params + l.bn_bias_offset,
                                       running_stats + l.running_mean_offset,
                                       running_stats + l.running_var_offset,
                                       at(act_layout->pre[layer]),
                                       at(act_layout->batch_mean[layer]),
                                       at(act_layout->batch_invstd[layer])};
    if (work.begin_step) f.advance = StepAdvance{step, noise_stream, adam, adam_coefficients};
    if (work.reparam) f.reparam = ReparamEpilogue{act_layout->latent, seed, noise_stream, at(act_layout->eps), at(act_layout->z)};
    if (work.loss != step::LossWork::kNone) {
      // The NaN guard rides on the training loss (first_bad_step set); evaluation passes none.
      const NonfiniteGuard guard = first_bad_step != nullptr ? NonfiniteGuard{step, first_bad_step} : NonfiniteGuard{};
      f.loss = LossEpilogue{pixels,
                            mu_logvar(),
                            act_layout->latent,
                            work.loss == step::LossWork::kSumsAndGradient ? at(act_layout->grad[layer]) : nullptr,
                            loss_scratch,
                            totals,
                            guard,
                            likelihood,
                            alpha,
                            static_cast<float>(loss_gradient_scale(likelihood, rows))};
    }
    cuda::linear_forward(f, precision, gemm, stream);
  }

  void linear_backward(int rows, int layer, step::BackwardWork work) const {
    const LinearSlot& l = param_layout->layers[layer];
    const LayerInput in = act_layout->input(layer);
    // A BatchNorm layer: its backward (with the activation's) first, in a launch of its own, then
    // the linear part's from dL/dh with no activation.
    const float* dy = at(act_layout->grad[layer]);
    Activation activation = l.activation;
    if (l.batch_norm) {
      BatchNormBackward bn{rows,
                           l.out,
                           l.activation,
                           l.negative_slope,
                           at(act_layout->pre[layer]),
                           at(act_layout->out[layer]),
                           dy,
                           at(act_layout->batch_mean[layer]),
                           at(act_layout->batch_invstd[layer]),
                           params + l.bn_weight_offset,
                           params + l.bn_bias_offset,
                           at(act_layout->pre_grad[layer]),
                           grads + l.bn_weight_offset,
                           grads + l.bn_bias_offset};
      if (work.optimizer)
        bn.adam = AdamEpilogue{adam_coefficients, adam_m + l.bn_weight_offset, adam_v + l.bn_weight_offset,
                               adam_m + l.bn_bias_offset, adam_v + l.bn_bias_offset};
      cuda::batch_norm_backward(bn, stream);
      dy = at(act_layout->pre_grad[layer]);
      activation = Activation::kIdentity;
    }
    LinearBackward b{.rows = rows,
                     .in = l.in,
                     .out = l.out,
                     .activation = activation,
                     .negative_slope = l.negative_slope,
                     .signed_pixels = signed_pixels(),
                     .x = in.images ? nullptr : at(in.x),
                     .pixels = in.images ? pixels : nullptr,
                     .weight = params + l.weight_offset,
                     .bias = params + l.bias_offset,
                     .y = at(act_layout->out[layer]),
                     .dy = dy,
                     .dx = in.images ? nullptr : at(in.dx),
                     .dweight = grads + l.weight_offset,
                     .dbias = grads + l.bias_offset};
    if (work.reparam) {
      const int head = param_layout->head();
      // The KL term's gradient at the loss's scale (1 / rows for the Gaussian likelihood's batch mean),
      // derived as the reference derives it.
      const float kl_weight = static_cast<float>(beta * loss_gradient_scale(likelihood, rows));
      b.reparam = ReparamGradEpilogue{act_layout->latent, kl_weight, at(act_layout->out[head]), at(act_layout->eps),
                                      at(act_layout->grad[head])};
    }
    if (work.optimizer)
      b.adam = AdamEpilogue{adam_coefficients, adam_m + l.weight_offset, adam_v + l.weight_offset,
                            adam_m + l.bias_offset, adam_v + l.bias_offset};
    cuda::linear_backward(b, precision, gemm, stream);
  }

  // The Gaussian likelihood's data are the pixels on [-1, 1].
  bool signed_pixels() const { return likelihood == Likelihood::kGaussian; }
  // The workspace buffer at an ActivationLayout offset.
  float* at(int64_t offset) const { return activations + offset; }
  // The head's output, mu ‖ logvar [rows, 2 * latent], until the next launch overwrites it.
  float* mu_logvar() const { return at(act_layout->out[param_layout->head()]); }
};

}  // namespace vae::cuda
