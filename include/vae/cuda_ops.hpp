// The CUDA backend's ops: the same arguments as the reference ops in reference_ops.hpp (sizes, then
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

// ---- linear+bias+ReLU (kernels/linear_relu.cu) ------------------------------------------------
// Scratch for split-K: the partial sums and one arrival counter per output tile, sized by
// linear_workspace_size or model_workspace_size (gemm_plan.hpp). The counters must be
// zero before the first launch; each launch leaves them zero again (so graph replays may reuse them).
struct GemmWorkspace {
  float* data = nullptr;
  int64_t floats = 0;
  unsigned* tile_counters = nullptr;
  int64_t counters = 0;
};

// y = x · Wᵀ + b (+ReLU). x is float [rows, in].
void linear_forward(int rows, int in, int out, bool relu, const float* x, const float* weight, const float* bias,
                    float* y, Precision precision, GemmWorkspace workspace, cudaStream_t stream);
// The first layer: x is the uint8 pixels [rows, in], scaled by 1/255 as they are loaded.
void linear_forward_pixels(int rows, int in, int out, bool relu, const uint8_t* pixels, const float* weight,
                           const float* bias, float* y, Precision precision, GemmWorkspace workspace,
                           cudaStream_t stream);
// Backward given dy; with relu, the mask (y > 0) is applied as dy is loaded, dy itself is not changed.
// dx may be null. dweight and dbias are overwritten.
void linear_backward(int rows, int in, int out, bool relu, const float* x, const float* weight, const float* y,
                     const float* dy, float* dx, float* dweight, float* dbias, Precision precision,
                     GemmWorkspace workspace, cudaStream_t stream);
// The first layer's backward: x is uint8 pixels; no dx.
void linear_backward_pixels(int rows, int in, int out, bool relu, const uint8_t* pixels, const float* y,
                            const float* dy, float* dweight, float* dbias, Precision precision,
                            GemmWorkspace workspace, cudaStream_t stream);

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
// [0, rows) and its KL sum in [rows, 2 * rows).
// The NaN guard rides on the same launch: when `guard` is given, *first_bad_step = *step the first
// time the running totals are not finite (they stay so, so that is the step that went wrong).
struct NonfiniteGuard {
  const long long* step = nullptr;
  long long* first_bad_step = nullptr;
};
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
