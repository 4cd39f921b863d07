// The CPU reference backend: every op of the VAE step, plain and readable. These are the spec the
// CUDA kernels are tested against, so each mirrors its kernel's arguments: sizes, then inputs,
// then outputs. Templates on T let gradient checks run the same code in double.
#pragma once

#include <cstdint>

#include "vae/element_math.hpp"
#include "vae/training_state.hpp"

namespace vae::ref {

// y = x · Wᵀ + b, then ReLU when relu is set. x [rows, in], weight [out, in] (PyTorch's layout),
// bias [out], y [rows, out].
template <typename T>
void linear_forward(int rows, int in, int out, bool relu, const T* x, const T* weight, const T* bias, T* y);

// Backward of linear_forward given dy = dL/dy. With relu, dy is masked in place by (y > 0), which is
// the gradient of the pre-activation; y is the forward output. Writes dweight and dbias (not
// accumulated) and dx unless it is null (the first layer needs none).
template <typename T>
void linear_backward(int rows, int in, int out, bool relu, const T* x, const T* weight, const T* y, T* dy,
                     T* dx, T* dweight, T* dbias);

// z = mu + exp(logvar / 2) ⊙ eps with eps drawn from Philox normals keyed by (seed, stream,
// element index r * latent + j). mu_logvar [rows, 2 * latent] holds mu in the first half of each row.
// eps is written out for the backward pass.
template <typename T>
void reparam_forward(int rows, int latent, uint64_t seed, uint64_t stream, const T* mu_logvar, T* eps, T* z);

// Gradient into mu ‖ logvar from dz, with beta times the KL gradient added in the same pass.
template <typename T>
void reparam_backward(int rows, int latent, T beta, const T* mu_logvar, const T* eps, const T* dz,
                      T* dmu_logvar);

// One pass over the logits: the loss sums and, unless dlogits is null, dL/dlogits = σ(l) − target.
// row_scratch (2 * rows doubles, the caller's, as on the GPU) holds each row's sums before they are
// added in row order, which keeps the total independent of the thread count.
template <typename T>
LossSums bce_kl_loss(int rows, int pixels, int latent, const T* logits, const T* target, const T* mu_logvar,
                     T* dlogits, double* row_scratch);

// torch.optim.Adam (or AdamW) over n contiguous parameters at the 1-based step.
template <typename T>
void adam_step(int64_t n, const AdamHyper& hyper, long long step, const T* grads, T* params, T* m, T* v);

}  // namespace vae::ref
