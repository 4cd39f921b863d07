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

// y = activation(y) in place over count values (activate in element_math.hpp).
template <typename T>
void activation_forward(int64_t count, Activation activation, T negative_slope, T* y);

// dy = dL/d(input) in place from dL/dy and the activation's output y (activation_grad).
template <typename T>
void activation_backward(int64_t count, Activation activation, T negative_slope, const T* y, T* dy);

// torch.nn.BatchNorm1d in training mode over x [rows, features] (rows >= 2, else vae::Error):
// mean and biased variance per feature over the batch, y = gamma (x - mean) / sqrt(var + eps) + beta,
// and the running statistics moved by momentum: running = (1 - momentum) running + momentum stat,
// with the unbiased variance (var * rows / (rows - 1)), as PyTorch does. batch_mean and batch_invstd
// [features] receive mean and 1 / sqrt(var + eps) for the backward. Statistics are summed in double
// in row order. (Ioffe & Szegedy 2015, Algorithm 1.)
template <typename T>
void batch_norm_forward_training(int rows, int features, T momentum, T eps, const T* x, const T* gamma, const T* beta,
                                 T* y, T* batch_mean, T* batch_invstd, T* running_mean, T* running_var);

// Evaluation mode: the running statistics instead of the batch's, y = gamma (x - running_mean) /
// sqrt(running_var + eps) + beta.
template <typename T>
void batch_norm_forward_eval(int rows, int features, T eps, const T* x, const T* gamma, const T* beta,
                             const T* running_mean, const T* running_var, T* y);

// Backward of batch_norm_forward_training given dy = dL/dy: with x̂ = (x - mean) invstd,
// dgamma = Σ_rows dy x̂, dbeta = Σ_rows dy (both written, not accumulated) and
// dx = gamma invstd (dy - Σdy / rows - x̂ Σ(dy x̂) / rows) (Ioffe & Szegedy 2015, section 3).
template <typename T>
void batch_norm_backward(int rows, int features, const T* x, const T* gamma, const T* batch_mean,
                         const T* batch_invstd, const T* dy, T* dx, T* dgamma, T* dbeta);

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

// The Gaussian likelihood's loss over the Tanh output's pre-activations: per row, alpha times the
// mean over the pixels of (tanh(a) - target)^2 (targets on [-1, 1]), and the KL sum as bce_kl_loss;
// the sums come back as LossSums' reconstruction and kl. Unless dpre is null, dpre receives
// grad_scale * d(Σ_rows reconstruction) / da: grad_scale is 1 / rows for the batch mean the seed's VAE
// trains on. row_scratch as for bce_kl_loss.
template <typename T>
LossSums gaussian_kl_loss(int rows, int pixels, int latent, T alpha, T grad_scale, const T* pre_tanh,
                          const T* target, const T* mu_logvar, T* dpre, double* row_scratch);

// torch.optim.Adam (or AdamW) over n contiguous parameters at the 1-based step.
template <typename T>
void adam_step(int64_t n, const AdamHyper& hyper, long long step, const T* grads, T* params, T* m, T* v);

}  // namespace vae::ref
