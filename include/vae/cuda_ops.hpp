// The CUDA backend's ops. A fused layer launch takes a struct: the layer and the epilogues riding on
// it; the standalone ops take the arguments of the reference ops in reference_ops.hpp (sizes, then
// inputs, then outputs), then the stream. Every pointer is device memory. Anything that changes
// from step to step (the step number, the noise stream) is read from device memory, so that the
// whole step can be captured once in a CUDA graph and replayed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "vae/element_math.hpp"
#include "vae/precision.hpp"

namespace vae::cuda {

using vae::Precision;

// The NaN guard of the loss: when first_bad_step is set, *first_bad_step = *step the first time the
// running totals are not finite (they stay so, so that is the step that went wrong).
struct NonfiniteGuard {
  const long long* step = nullptr;
  long long* first_bad_step = nullptr;
};

// ---- fused linear layers (kernels/linear_forward.cu, kernels/linear_backward.cu) --------------
// A training step is one forward launch per layer, then one backward launch per layer; what the
// step needs besides the products rides on those launches as epilogues (below).
//
// Scratch for the launches: split-K partial sums and the counters through which blocks hand work
// to each other, sized by linear_workspace_size or model_workspace_size (gemm_plan.hpp). The
// counters must be zero before the first launch; each launch leaves them zero again (so graph
// replays may reuse them).
struct GemmWorkspace {
  float* data = nullptr;
  int64_t floats = 0;
  unsigned* tile_counters = nullptr;
  int64_t counters = 0;
};

// The first launch of a training step: ++*step, *noise_stream = train_stream(*step) and
// *adam_coefficients for that step (so that Adam's bias corrections are derived once per step).
// Enabled when step is set.
struct StepAdvance {
  long long* step = nullptr;
  uint64_t* noise_stream = nullptr;
  AdamHyper adam{};
  AdamCoefficients<float>* adam_coefficients = nullptr;
};

// On the head's forward, whose output is mu ‖ logvar [rows, 2 * latent]: z = mu + exp(logvar / 2) ⊙ eps,
// eps from cuRAND's Philox keyed by (seed, *noise_stream, element), as reparam_forward draws it.
// Enabled when z is set.
struct ReparamEpilogue {
  int latent = 0;
  uint64_t seed = 0;
  const uint64_t* noise_stream = nullptr;
  float* eps = nullptr;  // [rows, latent]
  float* z = nullptr;    // [rows, latent]
};

// On the output layer's forward, whose output is the logits [rows, pixels]: what bce_kl_loss
// computes (kBernoulli) or gaussian_kl_loss (kGaussian: the logits are the Tanh's pre-activations,
// the targets the pixels on [-1, 1]), with the same meaning of every argument. scratch holds
// loss_scratch_doubles(rows, pixels) doubles; on return its first 2 * rows are each row's
// reconstruction and KL sums, as the reference's row_scratch. Enabled when totals is set.
struct LossEpilogue {
  const uint8_t* target = nullptr;     // the batch's pixels [rows, pixels]
  const float* mu_logvar = nullptr;    // [rows, 2 * latent]
  int latent = 0;
  float* dlogits = nullptr;            // null: the sums only (evaluation)
  double* scratch = nullptr;
  double* totals = nullptr;            // [reconstruction, kl], this batch's sums added
  NonfiniteGuard guard{};
  Likelihood likelihood = Likelihood::kBernoulli;
  float alpha = 1.0f;       // kGaussian: the weight of each row's mean squared error
  float grad_scale = 1.0f;  // kGaussian: dlogits is taken at this factor (loss_gradient_scale, 1 / rows)
};
int64_t loss_scratch_doubles(int rows, int pixels);

// On a hidden layer with BatchNorm1d (after the linear part, before the activation): h = x · Wᵀ + b
// goes to pre, and y = activation(gamma (h - mean) invstd + beta) to the layer's y. In training the
// mean and biased variance of each feature over the batch are summed in double, in row order, by the
// last block of each column of tiles to finish (what batch_norm_forward_training computes, into
// batch_mean and batch_invstd; the running statistics moved by momentum with the unbiased
// variance); in evaluation the running statistics are used and left alone. Enabled when gamma is set.
struct BatchNormEpilogue {
  bool training = false;  // needs rows >= 2
  float momentum = 0.1f, eps = 1e-5f;
  const float* gamma = nullptr;  // [out]
  const float* beta = nullptr;   // [out]
  float* running_mean = nullptr;  // [out]
  float* running_var = nullptr;   // [out]
  float* pre = nullptr;           // h [rows, out]
  float* batch_mean = nullptr;    // [out], training
  float* batch_invstd = nullptr;  // [out], training
};

// y = activation(x · Wᵀ + b), x [rows, in] either float or the uint8 pixels (scaled by 1/255 as
// they are loaded, or to [-1, 1] by pixel_to_signed with signed_pixels; exactly one of x and pixels
// is set), W [out, in], y [rows, out].
struct LinearForward {
  int rows = 0, in = 0, out = 0;
  Activation activation = Activation::kIdentity;
  float negative_slope = 0.0f;  // kLeakyReLU's
  bool signed_pixels = false;   // the Gaussian likelihood's data: pixels on [-1, 1]
  const float* x = nullptr;
  const uint8_t* pixels = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  StepAdvance advance{};
  ReparamEpilogue reparam{};
  LossEpilogue loss{};
  BatchNormEpilogue batch_norm{};
};
void linear_forward(const LinearForward& layer, Precision precision, GemmWorkspace workspace, cudaStream_t stream);

// On the first decoder layer's backward, whose dx is dz: d(mu ‖ logvar) from dz plus beta times the
// KL gradient, as reparam_backward computes it. Enabled when dmu_logvar is set.
struct ReparamGradEpilogue {
  int latent = 0;
  float beta = 1.0f;
  const float* mu_logvar = nullptr;
  const float* eps = nullptr;
  float* dmu_logvar = nullptr;
};

// Adam on the layer's weight and bias, applied as each tile's gradient is complete and no block of
// the launch still reads the weight, with the coefficients StepAdvance derived. Enabled when
// coefficients is set; weight and bias of LinearBackward are then updated in place.
struct AdamEpilogue {
  const AdamCoefficients<float>* coefficients = nullptr;
  float* weight_m = nullptr;
  float* weight_v = nullptr;
  float* bias_m = nullptr;
  float* bias_v = nullptr;
};

// Backward given dy [rows, out]; with an activation, its backward from the output y
// (activation_grad) is applied as dy is loaded, dy itself is not changed. dweight and dbias are
// overwritten; dx [rows, in] too unless it is null (the first layer, whose input is the pixels, has
// none). The pixels are read as the forward read them (signed_pixels).
struct LinearBackward {
  int rows = 0, in = 0, out = 0;
  Activation activation = Activation::kIdentity;
  float negative_slope = 0.0f;
  bool signed_pixels = false;
  const float* x = nullptr;
  const uint8_t* pixels = nullptr;
  float* weight = nullptr;
  float* bias = nullptr;
  const float* y = nullptr;
  const float* dy = nullptr;
  float* dx = nullptr;
  float* dweight = nullptr;
  float* dbias = nullptr;
  ReparamGradEpilogue reparam{};
  AdamEpilogue adam{};
};
void linear_backward(const LinearBackward& layer, Precision precision, GemmWorkspace workspace, cudaStream_t stream);

// ---- BatchNorm1d's backward (kernels/batch_norm.cu) ----------------------------------------------
// The one launch a BatchNorm layer adds to a training step, before its linear backward: from
// dy = dL/dy at the activation's output y, per feature, g = activation_grad(dy, y), then what
// batch_norm_backward computes from g: dh = dL/dh [rows, features] (the linear backward's dy, with no
// activation), dgamma and dbeta (overwritten), the sums over rows in double and in a fixed order.
// With adam.coefficients set, Adam then updates gamma and beta in place (adam's weight_m/v are
// gamma's moments, bias_m/v beta's). Needs the batch's mean and invstd from the training forward.
struct BatchNormBackward {
  int rows = 0, features = 0;
  Activation activation = Activation::kIdentity;
  float negative_slope = 0.0f;
  const float* h = nullptr;             // the linear part's output [rows, features]
  const float* y = nullptr;             // the activation's output [rows, features]
  const float* dy = nullptr;            // dL/dy [rows, features]
  const float* batch_mean = nullptr;    // [features]
  const float* batch_invstd = nullptr;  // [features]
  float* gamma = nullptr;
  float* beta = nullptr;
  float* dh = nullptr;
  float* dgamma = nullptr;
  float* dbeta = nullptr;
  AdamEpilogue adam{};
};
void batch_norm_backward(const BatchNormBackward& b, cudaStream_t stream);

// ---- importance sampling (kernels/importance.cu) ---------------------------------------------
// --evaluate's importance samples of a chunk of images, laid out image by image: sample f of the
// chunk is image f / K's sample f % K. For rows r = 0 .. rows - 1, sample f = first_sample + r of
// image c = f / K: z[r] and log_ratio[r] = log p(z) - log q(z | x) as importance_sample draws them
// (importance_sample.hpp, ε keyed by the image's index in the split, first_image + c), and the
// image's posterior and pixels copied to the row's mu_logvar[r] and targets[r], where the output
// layer's loss epilogue reads a row's posterior and target.
struct ImportanceRows {
  int rows = 0, latent = 0, pixels = 0;
  int samples_per_image = 0;  // K
  int64_t first_sample = 0;   // f of row 0
  int64_t first_image = 0;    // the chunk's first image in the split
  uint64_t seed = 0;
  const float* posteriors = nullptr;  // the chunk's mu ‖ logvar [images, 2 * latent]
  const uint8_t* images = nullptr;    // the chunk's pixels [images, pixels]
  float* mu_logvar = nullptr;         // [rows, 2 * latent]
  float* z = nullptr;                 // [rows, latent]
  uint8_t* targets = nullptr;         // [rows, pixels]
  double* log_ratio = nullptr;        // [rows]
};
void importance_rows(const ImportanceRows& p, cudaStream_t stream);

// ---- the step's other ops, one launch each --------------------------------------------------
// The fused step above does their work in its epilogues; these standalone kernels remain for the
// benchmark's library-assembled steps (cuBLAS, cuBLASLt, cuDNN), which have no such epilogues.

// ---- reparameterisation (kernels/reparam.cu) --------------------------------------------------
// z = mu + exp(logvar / 2) ⊙ eps, eps from cuRAND's Philox keyed by (seed, *noise_stream, element).
void reparam_forward(int rows, int latent, uint64_t seed, const uint64_t* noise_stream, const float* mu_logvar,
                     float* eps, float* z, cudaStream_t stream);
// dmu_logvar from dz, with beta times the KL gradient in the same pass.
void reparam_backward(int rows, int latent, float beta, const float* mu_logvar, const float* eps, const float* dz,
                      float* dmu_logvar, cudaStream_t stream);

// ---- BCE-with-logits + KL (kernels/bce_kl.cu) -------------------------------------------------
// Adds this batch's sums to totals[0] (BCE) and totals[1] (KL), in double, deterministically;
// writes dlogits = sigmoid(l) - pixels/255 unless dlogits is null. row_scratch (device, at least
// 2 * rows doubles, from the caller's workspace so that no call allocates) carries the per-row sums
// between the two fixed-order reduction passes; on return it holds each row's BCE sum in
// [0, rows) and its KL sum in [rows, 2 * rows). The NaN guard rides on the same launch.
void bce_kl_loss(int rows, int pixels, int latent, const float* logits, const uint8_t* target,
                 const float* mu_logvar, float* dlogits, double* row_scratch, double* totals, NonfiniteGuard guard,
                 cudaStream_t stream);

// ---- Adam (kernels/adam.cu) -------------------------------------------------------------------
// One torch.optim.Adam (or AdamW) step over all n parameters in one launch, at the 1-based step
// number read from *step (device memory: the runtime advances it inside the captured step, so the
// bias corrections are computed on the device).
void adam_step(int64_t n, const AdamHyper& hyper, const long long* step, const float* grads, float* params,
               float* m, float* v, cudaStream_t stream);

// ---- per-step device state (kernels/step_state.cu) --------------------------------------------
// ++*step, then *noise_stream = train_stream(*step): the first node of every captured step.
void advance_step(long long* step, uint64_t* noise_stream, cudaStream_t stream);
// *noise_stream = value (evaluation keys its noise by epoch and batch).
void set_noise_stream(uint64_t value, uint64_t* noise_stream, cudaStream_t stream);
// Device-resident data: out[r] = data[order[*cursor + r]] for rows images of row_bytes each, then
// *cursor += rows, so replays of one graph walk the epoch's order.
void gather_rows(int rows, int row_bytes, const uint32_t* order, uint32_t* cursor, const uint8_t* data,
                 uint8_t* out, cudaStream_t stream);

}  // namespace vae::cuda
