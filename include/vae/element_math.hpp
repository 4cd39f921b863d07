// Per-element formulas of the VAE step, shared by the CPU reference and the CUDA kernels.
// Each is written in the numerically stable form; templates on T let the tests run them in double
// for finite-difference checks while training runs them in float.
#pragma once

#include <cmath>
#include <cstdint>

#include "vae/hd.hpp"

namespace vae {

// Precision-exact overloads, so a template on T calls expf for float and exp for double on both
// host and device (unqualified calls could silently promote float to double).
VAE_HD float fexp(float x) { return expf(x); }
VAE_HD double fexp(double x) { return exp(x); }
VAE_HD float flog1p(float x) { return log1pf(x); }
VAE_HD double flog1p(double x) { return log1p(x); }
VAE_HD float fabs_(float x) { return fabsf(x); }
VAE_HD double fabs_(double x) { return fabs(x); }
VAE_HD float fsqrt(float x) { return sqrtf(x); }
VAE_HD double fsqrt(double x) { return sqrt(x); }
VAE_HD float ftanh(float x) { return tanhf(x); }
VAE_HD double ftanh(double x) { return tanh(x); }

// ReLU as PyTorch computes it: negatives to 0 and NaN kept, so that a NaN born in a hidden layer
// reaches the loss and the NaN guard instead of vanishing.
template <typename T>
VAE_HD T relu(T x) {
  return x < T(0) ? T(0) : x;
}

// ReLU's backward from the layer's output y: dy passes where y > 0 and nothing passes elsewhere (y
// NaN included), as PyTorch's threshold_backward masks it.
template <typename T>
VAE_HD T relu_grad(T dy, T y) {
  return y > T(0) ? dy : T(0);
}

// The activation after a hidden layer (after its BatchNorm when it has one), as torch.nn names them.
// kIdentity is a linear layer with nothing after it.
enum class Activation { kIdentity, kReLU, kLeakyReLU };

// torch.nn.LeakyReLU: x where x > 0, negative_slope * x elsewhere (NaN kept).
template <typename T>
VAE_HD T leaky_relu(T x, T negative_slope) {
  return x > T(0) ? x : x * negative_slope;
}

template <typename T>
VAE_HD T activate(Activation activation, T negative_slope, T x) {
  switch (activation) {
    case Activation::kReLU: return relu(x);
    case Activation::kLeakyReLU: return leaky_relu(x, negative_slope);
    case Activation::kIdentity: break;
  }
  return x;
}

// The backward of activate from its output y. With negative_slope >= 0 (the only slopes the engine
// accepts) y > 0 exactly where the input was > 0, so y is all the mask needs, as for ReLU; elsewhere
// LeakyReLU passes negative_slope * dy, as PyTorch's leaky_relu_backward does.
template <typename T>
VAE_HD T activation_grad(Activation activation, T negative_slope, T dy, T y) {
  switch (activation) {
    case Activation::kReLU: return relu_grad(dy, y);
    case Activation::kLeakyReLU: return y > T(0) ? dy : dy * negative_slope;
    case Activation::kIdentity: break;
  }
  return dy;
}

// p(x | z): kBernoulli is BCE-with-logits against x / 255, summed over the pixels and over the batch
// (PyTorch's VAE example); kGaussian is a Tanh output against data on [-1, 1] with alpha times the
// squared error averaged over the pixels, and the loss averaged over the batch (the seed's VAE).
// Here beside the formulas of both, which the CUDA loss epilogue chooses between.
enum class Likelihood { kBernoulli, kGaussian };

// A pixel as the model sees it, x / 255 correctly rounded, as torchvision's ToTensor computes it.
VAE_HD float pixel_to_unit(uint8_t pixel) { return static_cast<float>(pixel) / 255.0f; }

// A pixel on [-1, 1] as the Gaussian likelihood's data: ToTensor then Normalize(mean 0.5, std 0.5),
// (x / 255 - 0.5) / 0.5, in float and in that order, as torchvision computes it.
VAE_HD float unit_to_signed(float unit) { return (unit - 0.5f) / 0.5f; }
VAE_HD float pixel_to_signed(uint8_t pixel) { return unit_to_signed(pixel_to_unit(pixel)); }
// The model's input and target for a pixel: on [-1, 1] for the Gaussian likelihood (signed_pixels),
// on [0, 1] otherwise.
VAE_HD float pixel_value(uint8_t pixel, bool signed_pixels) {
  return signed_pixels ? pixel_to_signed(pixel) : pixel_to_unit(pixel);
}

template <typename T>
VAE_HD T sigmoid(T x) {
  // Split by sign so that exp never overflows.
  if (x >= T(0)) return T(1) / (T(1) + fexp(-x));
  const T e = fexp(x);
  return e / (T(1) + e);
}

// Binary cross-entropy of target t in [0, 1] against probability sigmoid(logit), computed from
// the logit directly: max(l, 0) - l*t + log(1 + exp(-|l|)). Never takes log of 0.
template <typename T>
VAE_HD T bce_with_logits(T logit, T target) {
  const T positive_part = logit > T(0) ? logit : T(0);
  return positive_part - logit * target + flog1p(fexp(-fabs_(logit)));
}

// d bce_with_logits / d logit.
template <typename T>
VAE_HD T bce_with_logits_grad(T logit, T target) {
  return sigmoid(logit) - target;
}

// The Gaussian likelihood's per-pixel term: the squared error of the Tanh output against a target
// in [-1, 1], (tanh(a) - t)^2, from the pre-activation a.
template <typename T>
VAE_HD T tanh_squared_error(T pre_tanh, T target) {
  const T d = ftanh(pre_tanh) - target;
  return d * d;
}

// d tanh_squared_error / d a = 2 (tanh(a) - t) (1 - tanh(a)^2): MSE's backward, then Tanh's from its
// output, as PyTorch's mse_loss_backward and tanh_backward compose.
template <typename T>
VAE_HD T tanh_squared_error_grad(T pre_tanh, T target) {
  const T y = ftanh(pre_tanh);
  return T(2) * (y - target) * (T(1) - y * y);
}

// One latent coordinate's KL(N(mu, exp(logvar)) || N(0, 1)) = -1/2 (1 + logvar - mu^2 - exp(logvar)).
template <typename T>
VAE_HD T kl_term(T mu, T logvar) {
  return T(-0.5) * (T(1) + logvar - mu * mu - fexp(logvar));
}
template <typename T>
VAE_HD T kl_grad_mu(T mu) {
  return mu;
}
template <typename T>
VAE_HD T kl_grad_logvar(T logvar) {
  return T(0.5) * (fexp(logvar) - T(1));
}

// Reparameterisation z = mu + exp(logvar / 2) * eps and its two partial derivatives.
template <typename T>
VAE_HD T reparam_sample(T mu, T logvar, T eps) {
  return mu + fexp(T(0.5) * logvar) * eps;
}
template <typename T>
VAE_HD T reparam_grad_logvar(T dz, T logvar, T eps) {
  return dz * eps * T(0.5) * fexp(T(0.5) * logvar);
}

// BatchNorm1d's per-element steps (Ioffe & Szegedy 2015), in the order of operations both backends
// use: x̂ = (x - mean) invstd, y = x̂ gamma + beta; with the running statistics in evaluation,
// invstd = 1 / sqrt(running_var + eps) in float; in training from the batch's biased variance in
// double, and the running statistics moved by momentum with the unbiased one, as PyTorch moves them.
template <typename T>
VAE_HD T batch_norm_normalise(T x, T mean, T invstd) {
  return (x - mean) * invstd;
}
template <typename T>
VAE_HD T batch_norm_output(T x, T mean, T invstd, T gamma, T beta) {
  return (x - mean) * invstd * gamma + beta;
}
template <typename T>
VAE_HD T batch_norm_eval_invstd(T running_var, T eps) {
  return T(1) / fsqrt(running_var + eps);
}
// 1 / sqrt(var + eps) from the batch's biased variance (in double).
template <typename T>
VAE_HD T batch_norm_batch_invstd(double var, T eps) {
  return static_cast<T>(1.0 / sqrt(var + static_cast<double>(eps)));
}
// running = (1 - momentum) running + momentum stat, in double.
template <typename T>
VAE_HD T batch_norm_running_update(T running, double stat, T momentum) {
  return static_cast<T>((1.0 - momentum) * running + momentum * stat);
}
// dL/dx from dy = dL/dy and x̂, given mean_dy = Σdy / rows, mean_dy_xhat = Σ(dy x̂) / rows and
// scale = gamma invstd.
template <typename T>
VAE_HD T batch_norm_input_grad(T dy, T xhat, T mean_dy, T mean_dy_xhat, T scale) {
  return scale * (dy - mean_dy - xhat * mean_dy_xhat);
}

// Adam hyper-parameters; decoupled = true gives AdamW (Loshchilov & Hutter) instead of the
// L2 penalty that torch.optim.Adam adds to the gradient. Held in double, as PyTorch holds them in
// Python floats, so that 1 - beta2 rounds to float the way PyTorch's scalar arguments do.
struct AdamHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;
};

// Everything one step's update needs besides the tensors, rounded once to the working precision.
// The bias corrections are computed in double, as PyTorch computes them in Python:
// step_size = lr / (1 - beta1^t), bias2_sqrt = sqrt(1 - beta2^t).
template <typename T>
struct AdamCoefficients {
  T beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay;
  T step_size, bias2_sqrt;
  T decay_factor;  // 1 - lr * weight_decay for AdamW, unused otherwise
  bool decoupled;
};

// Computed the same way on host and device (a kernel reads the step from device memory); the two
// pow implementations differ by a few double ulps, far below the float rounding that follows.
template <typename T>
VAE_HD AdamCoefficients<T> adam_coefficients(const AdamHyper& h, long long step) {
  const double t = static_cast<double>(step);
  const double bias1 = 1.0 - pow(h.beta1, t), bias2 = 1.0 - pow(h.beta2, t);
  return AdamCoefficients<T>{static_cast<T>(h.beta1),        static_cast<T>(1.0 - h.beta1),
                             static_cast<T>(h.beta2),        static_cast<T>(1.0 - h.beta2),
                             static_cast<T>(h.eps),          static_cast<T>(h.weight_decay),
                             static_cast<T>(h.lr / bias1),   static_cast<T>(sqrt(bias2)),
                             static_cast<T>(1.0 - h.lr * h.weight_decay), h.decoupled};
}

// One parameter's Adam update in torch.optim.Adam's order of operations.
template <typename T>
VAE_HD void adam_update(T grad, T& param, T& m, T& v, const AdamCoefficients<T>& c) {
  if (c.decoupled) {
    param *= c.decay_factor;
  } else {
    grad += c.weight_decay * param;
  }
  m = m * c.beta1 + grad * c.one_minus_beta1;
  v = v * c.beta2 + grad * grad * c.one_minus_beta2;
  const T denom = fsqrt(v) / c.bias2_sqrt + c.eps;
  param -= c.step_size * (m / denom);
}

}  // namespace vae
