// How good a trained VAE is, as papers measure it: the ELBO and its two parts per image, the
// importance-weighted bound on log p(x) of Burda, Grosse & Salakhutdinov (2016, "Importance Weighted
// Autoencoders"), the KL of each latent dimension and the number of active units. The model runs in
// evaluation mode on a backend (the CPU reference here, the GPU in cuda_evaluation.hpp); the
// log-weights are combined in double on the host, the same code for both.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "vae/config.hpp"
#include "vae/idx.hpp"
#include "vae/reference_model.hpp"

namespace vae {

inline constexpr int kMaxImportanceSamples = limits::kImportanceSamples.max;
// Burda et al.'s threshold: a latent dimension is active when Var_x(E_q(z|x)[z]) exceeds it.
inline constexpr double kActiveUnitThreshold = 0.01;

// ε of image `image`'s importance sample `sample`, latent coordinate `dim`, one value at a time: the
// plain statement of what importance_sample (importance_sample.hpp) draws, for tests and dumps.
float importance_eps(uint64_t seed, int64_t image, int64_t sample, int dim, int latent);

// The variance over n rows of each of the `width` columns of values [n, width] (divided by n, as
// Burda et al.'s active-unit criterion takes it), in double; zeros when n is 0.
std::vector<double> column_variances(const std::vector<double>& values, int64_t n, int width);
// How many of the variances of the posterior means exceed kActiveUnitThreshold.
int count_active_units(const std::vector<double>& mu_variance);

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

// What evaluate_model asks of a backend, which holds a model and a split of images. Chunks of images
// are encoded, then all their importance samples are weighed in one call, so that the backend can
// decode samples of many images at once: K = 1 keeps its GEMMs as full as K = 5000 does.
class EvaluationBackend {
 public:
  virtual ~EvaluationBackend() = default;
  // Where it runs, for the summary.
  virtual std::string describe() const = 0;
  // The most images one encode takes.
  virtual int max_images() const = 0;
  // The importance samples one weigh call is sized for; a chunk of one image has K, whatever this is.
  virtual int64_t chunk_samples() const = 0;
  // mu ‖ logvar [images, 2 latent] of the split's images first .. first + images - 1, into posteriors;
  // vae::Error for images outside the split or more than max_images.
  void encode(int64_t first, int images, float* posteriors);
  // For the images of the last encode (the same first and images), sample f = c K + k of image c for
  // f in [0, images K): z_f drawn as importance_sample draws it for (seed, first + c, k); then
  // reconstruction[f], the training loss's reconstruction term of image c decoded from z_f, and
  // log_ratio[f] = log p(z_f) - log q(z_f | x). vae::Error when it does not follow such an encode.
  void weigh(int64_t first, int images, int K, uint64_t seed, double* reconstruction, double* log_ratio);

 protected:
  explicit EvaluationBackend(int64_t split_images) : split_images_(split_images) {}
  // What encode and weigh do once their arguments are checked.
  virtual void encode_images(int64_t first, int images, float* posteriors) = 0;
  virtual void weigh_samples(int64_t first, int images, int K, uint64_t seed, double* reconstruction,
                             double* log_ratio) = 0;

 private:
  int64_t split_images_;
  int64_t encoded_first_ = -1;  // the last encode's images, which weigh samples
  int encoded_images_ = 0;
};

// The backend on the CPU reference model; it keeps references to params, running_stats and split.
class ReferenceEvaluation final : public EvaluationBackend {
 public:
  ReferenceEvaluation(const ModelConfig& model, const std::vector<float>& params,
                      const std::vector<float>& running_stats, const MnistSplit& split);
  std::string describe() const override { return "CPU reference backend"; }
  int max_images() const override;
  int64_t chunk_samples() const override;

 private:
  void encode_images(int64_t first, int images, float* posteriors) override;
  void weigh_samples(int64_t first, int images, int K, uint64_t seed, double* reconstruction,
                     double* log_ratio) override;

  ModelConfig model_;
  const std::vector<float>& params_;
  const std::vector<float>& running_stats_;
  const MnistSplit& split_;
  ReferenceVae<float> vae_;
  std::vector<float> posteriors_, targets_;  // the last encode's, targets as the loss takes them
};

// Evaluates the model on every image of split with K importance samples (1 <= K <=
// kMaxImportanceSamples) on backend, which must hold the same model and split, calling
// progress(images done, images) as it goes. Throws vae::Error when the split's images are not the
// model's input size or K is out of range. Weights that overflow give non-finite figures, which the
// caller checks (first_non_finite).
Evaluation evaluate_model(const ModelConfig& model, EvaluationBackend& backend, const MnistSplit& split,
                          int importance_samples, uint64_t seed,
                          const std::function<void(int64_t, int64_t)>& progress = {});
// The same on the CPU reference, with params (and BatchNorm's running_stats).
Evaluation evaluate_model(const ModelConfig& model, const std::vector<float>& params,
                          const std::vector<float>& running_stats, const MnistSplit& split, int importance_samples,
                          uint64_t seed, const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace vae
