// How good a trained VAE is, as papers measure it: the ELBO and its two parts per image, the
// importance-weighted bound on log p(x) of Burda, Grosse & Salakhutdinov (2016, "Importance Weighted
// Autoencoders"), the KL of each latent dimension and the number of active units. Computed on the CPU
// reference model in evaluation mode, the log-weights in double.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "vae/config.hpp"
#include "vae/idx.hpp"

namespace vae {

inline constexpr int kMaxImportanceSamples = limits::kImportanceSamples.max;
// Burda et al.'s threshold: a latent dimension is active when Var_x(E_q(z|x)[z]) exceeds it.
inline constexpr double kActiveUnitThreshold = 0.01;

// ε of image `image`'s importance sample `sample`, latent coordinate `dim`: Philox keyed by seed and
// a subsequence of the image's own, so an image's draws do not depend on how images are batched.
float importance_eps(uint64_t seed, int64_t image, int64_t sample, int dim, int latent);
// The latent eps of one sample, importance_eps for dim 0 .. latent - 1, into eps[latent]: four per
// Philox block, as the values lie in it.
void importance_eps_row(uint64_t seed, int64_t image, int64_t sample, int latent, float* eps);

// log p(x | z) = log_likelihood_constant(model) - reconstruction, where reconstruction is the
// training loss's term: the BCE of the logits against x/255 summed over pixels (Bernoulli; no
// constant, as PyTorch's example defines it on grey values), or alpha times the mean over the D pixels
// of (tanh(a) - x')^2 on x' = 2 x/255 - 1 (Gaussian): the density N(x'; tanh(a), sigma^2 I) with
// sigma^2 = D / (2 alpha), whose constant is -(D/2) log(pi D / alpha).
double log_likelihood_constant(const ModelConfig& model);

struct Evaluation {
  int64_t images = 0;
  int importance_samples = 0;  // K
  double log_likelihood_constant = 0;
  // Per image, in nats. reconstruction uses z from the first importance sample's ε, so with K = 1
  // iwae = log_likelihood_constant - reconstruction + log p(z) - log q(z | x) at that z.
  std::vector<double> reconstruction;  // the training loss's reconstruction term
  std::vector<double> kl;              // KL(q(z | x) || p(z)), in closed form
  std::vector<double> iwae;            // log (1/K) sum_k p(x, z_k) / q(z_k | x)
  // Per latent dimension.
  std::vector<double> kl_per_dim;     // KL of that coordinate, averaged over the images
  std::vector<double> mu_variance;    // the variance over the images of the posterior mean (divided by N)
  int active_units() const;           // dimensions with mu_variance > kActiveUnitThreshold

  double mean_reconstruction() const;
  double mean_kl() const;
  double mean_elbo() const;  // log_likelihood_constant - reconstruction - kl
  double mean_iwae() const;
  // The first image whose bound or ELBO is not finite, or -1.
  int64_t first_non_finite() const;
};

// Evaluates the model with params (and BatchNorm's running_stats) on every image of split with K
// importance samples (1 <= K <= kMaxImportanceSamples), calling progress(images done, images) as it
// goes. Throws vae::Error when the split's images are not the model's input size or K is out of range.
// Weights that overflow give non-finite figures, which the caller checks (first_non_finite).
Evaluation evaluate_model(const ModelConfig& model, const std::vector<float>& params,
                          const std::vector<float>& running_stats, const MnistSplit& split, int importance_samples,
                          uint64_t seed, const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace vae
