// evaluate_model, written once over an EvaluationBackend: every image's posterior once, the KL per
// image and dimension from it, then each chunk's importance samples weighed by the backend and their
// log-weights combined by log-sum-exp per image, in double. ReferenceEvaluation is that backend on
// the CPU reference model, each row's reconstruction from the training step's own loss op.
#include "vae/evaluation.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/importance_sample.hpp"
#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"
#include "vae/reference_model.hpp"
#include "vae/reference_ops.hpp"

namespace vae {
namespace {

constexpr int kDecodeRows = 256;  // the reference's importance samples decoded at once
// The reference's chunks: many images for small K, down to one image for K past this.
constexpr int kChunkSamples = 16 * kDecodeRows;

// log sum_i exp(v_i), shifted by the largest term so that nothing overflows or vanishes whole.
double log_sum_exp(const double* v, int n) {
  const double top = *std::max_element(v, v + n);
  if (!std::isfinite(top)) return top;  // all -inf, or a +inf or NaN term: the sum is that
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(v[i] - top);
  return top + std::log(sum);
}

// The training loss's reconstruction term of each of `rows` decoded rows, from the reference loss op
// the training step uses (its KL sums, of mu_logvar, are not needed here): into row_sums[0, rows).
void reconstruction_terms(const ModelConfig& model, int rows, const float* logits, const float* targets,
                          const float* mu_logvar, double* row_sums) {
  if (model.likelihood == Likelihood::kGaussian)
    ref::gaussian_kl_loss<float>(rows, model.input, model.latent, model.alpha, 1.0f, logits, targets, mu_logvar,
                                 nullptr, row_sums);
  else
    ref::bce_kl_loss<float>(rows, model.input, model.latent, logits, targets, mu_logvar, nullptr, row_sums);
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

}  // namespace

float importance_eps(uint64_t seed, int64_t image, int64_t sample, int dim, int latent) {
  return philox_normal(seed, noise_stream(NoisePurpose::kImportance, static_cast<uint64_t>(image)),
                       static_cast<uint64_t>(sample) * latent + dim);
}

double log_likelihood_constant(const ModelConfig& model) {
  if (model.likelihood == Likelihood::kBernoulli) return 0.0;
  const double d = model.input;
  return -0.5 * d * std::log(std::numbers::pi * d / model.alpha);
}

std::vector<double> column_variances(const std::vector<double>& values, int64_t n, int width) {
  std::vector<double> variances(static_cast<size_t>(width), 0.0);
  if (n <= 0) return variances;
  for (int j = 0; j < width; ++j) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += values[i * width + j];
    const double average = sum / static_cast<double>(n);
    double squares = 0;
    for (int64_t i = 0; i < n; ++i) squares += (values[i * width + j] - average) * (values[i * width + j] - average);
    variances[j] = squares / static_cast<double>(n);
  }
  return variances;
}

int count_active_units(const std::vector<double>& mu_variance) {
  return static_cast<int>(std::count_if(mu_variance.begin(), mu_variance.end(),
                                        [](double v) { return v > kActiveUnitThreshold; }));
}

int Evaluation::active_units() const { return count_active_units(mu_variance); }
double Evaluation::mean_reconstruction() const { return mean(reconstruction); }
double Evaluation::mean_kl() const { return mean(kl); }
double Evaluation::mean_elbo() const { return log_likelihood_constant - mean_reconstruction() - mean_kl(); }
double Evaluation::mean_iwae() const { return mean(iwae); }
int64_t Evaluation::first_non_finite() const {
  for (int64_t i = 0; i < images; ++i)
    if (!std::isfinite(iwae[i]) || !std::isfinite(reconstruction[i]) || !std::isfinite(kl[i])) return i;
  return -1;
}

ReferenceEvaluation::ReferenceEvaluation(const ModelConfig& model, const std::vector<float>& params,
                                         const std::vector<float>& running_stats, const MnistSplit& split)
    : EvaluationBackend(split.count),
      model_(model),
      params_(params),
      running_stats_(running_stats),
      split_(split),
      vae_(model, kDecodeRows) {
  if (static_cast<int64_t>(params.size()) != vae_.layout().total ||
      static_cast<int64_t>(running_stats.size()) != vae_.layout().running_total)
    throw Error(fmt::format("evaluation: {} parameters and {} running statistics given, the model has {} and {}",
                            params.size(), running_stats.size(), vae_.layout().total, vae_.layout().running_total));
  if (split.image_size() != model.input)
    throw Error(fmt::format("evaluation: the images have {} pixels, the model takes {}", split.image_size(), model.input));
}

void EvaluationBackend::encode(int64_t first, int images, float* posteriors) {
  if (first < 0 || images < 1 || images > max_images() || first + images > split_images_)
    throw Error(fmt::format("evaluation: cannot encode {} images from image {} of a split of {} ({} at once)", images,
                            first, split_images_, max_images()));
  encoded_first_ = -1;  // until the encode has succeeded
  encode_images(first, images, posteriors);
  encoded_first_ = first;
  encoded_images_ = images;
}

void EvaluationBackend::weigh(int64_t first, int images, int K, uint64_t seed, double* reconstruction,
                              double* log_ratio) {
  if (first != encoded_first_ || images != encoded_images_ || K < 1)
    throw Error(fmt::format("evaluation: weigh({}, {}, K = {}) does not follow an encode of those images", first,
                            images, K));
  weigh_samples(first, images, K, seed, reconstruction, log_ratio);
}

int ReferenceEvaluation::max_images() const { return kDecodeRows; }
int64_t ReferenceEvaluation::chunk_samples() const { return kChunkSamples; }

void ReferenceEvaluation::encode_images(int64_t first, int images, float* posteriors) {
  const int input = model_.input, latent = model_.latent;
  // The images as the model reads them, which are also the loss's targets.
  targets_.resize(static_cast<size_t>(images) * input);
  const uint8_t* pixels = split_.pixels.data() + static_cast<size_t>(first) * input;
  const bool signed_pixels = model_.likelihood == Likelihood::kGaussian;
  for (size_t i = 0; i < targets_.size(); ++i) targets_[i] = pixel_value(pixels[i], signed_pixels);
  vae_.encode(images, targets_.data(), params_.data(), running_stats_.empty() ? nullptr : running_stats_.data());
  posteriors_.assign(vae_.mu_logvar(), vae_.mu_logvar() + static_cast<size_t>(images) * 2 * latent);
  std::copy(posteriors_.begin(), posteriors_.end(), posteriors);
}

void ReferenceEvaluation::weigh_samples(int64_t first, int images, int K, uint64_t seed, double* reconstruction,
                                        double* log_ratio) {
  const int latent = model_.latent, input = model_.input;
  const float* running = running_stats_.empty() ? nullptr : running_stats_.data();
  const auto draw = [](uint64_t s, uint64_t subsequence, uint64_t group) { return philox_normal4(s, subsequence, group); };
  std::vector<float> z(static_cast<size_t>(kDecodeRows) * latent);
  std::vector<double> row_sums(2 * kDecodeRows);
  // Each decoded row's target image and posterior, as the loss op takes them row by row.
  std::vector<float> row_targets(static_cast<size_t>(kDecodeRows) * input),
      row_posteriors(static_cast<size_t>(kDecodeRows) * 2 * latent);
  const int64_t samples = static_cast<int64_t>(images) * K;
  for (int64_t f0 = 0; f0 < samples; f0 += kDecodeRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kDecodeRows, samples - f0));
    for (int r = 0; r < rows; ++r) {
      const int64_t c = (f0 + r) / K, k = (f0 + r) % K;
      const float* posterior = posteriors_.data() + c * 2 * latent;
      std::copy_n(posterior, 2 * latent, row_posteriors.begin() + static_cast<ptrdiff_t>(r) * 2 * latent);
      std::copy_n(targets_.begin() + c * input, input, row_targets.begin() + static_cast<ptrdiff_t>(r) * input);
      log_ratio[f0 + r] = importance_sample(latent, posterior, seed, static_cast<uint64_t>(first + c),
                                            static_cast<uint64_t>(k), draw, z.data() + static_cast<size_t>(r) * latent);
    }
    vae_.decode(rows, z.data(), params_.data(), running);
    reconstruction_terms(model_, rows, vae_.logits(), row_targets.data(), row_posteriors.data(), row_sums.data());
    std::copy_n(row_sums.begin(), rows, reconstruction + f0);
  }
}

Evaluation evaluate_model(const ModelConfig& model, EvaluationBackend& backend, const MnistSplit& split,
                          int importance_samples, uint64_t seed, const std::function<void(int64_t, int64_t)>& progress) {
  const int K = importance_samples, latent = model.latent;
  if (K < 1 || K > kMaxImportanceSamples)
    throw Error(fmt::format("importance samples: {} is not between 1 and {}", K, kMaxImportanceSamples));
  if (split.image_size() != model.input)
    throw Error(fmt::format("the images are {}x{} ({} pixels), the model takes {}", split.rows, split.cols,
                            split.image_size(), model.input));
  Evaluation ev;
  ev.images = split.count;
  ev.importance_samples = K;
  ev.log_likelihood_constant = log_likelihood_constant(model);
  ev.reconstruction.assign(static_cast<size_t>(split.count), 0.0);
  ev.kl.assign(ev.reconstruction.size(), 0.0);
  ev.iwae.assign(ev.reconstruction.size(), 0.0);
  std::vector<double> mu_all(static_cast<size_t>(split.count) * latent);  // for the variances
  ev.kl_per_dim.assign(latent, 0.0);  // sums until the end

  const int chunk_images =
      static_cast<int>(std::clamp<int64_t>(backend.chunk_samples() / K, 1, backend.max_images()));
  std::vector<float> posteriors(static_cast<size_t>(chunk_images) * 2 * latent);
  std::vector<double> reconstruction(static_cast<size_t>(chunk_images) * K), log_weights(reconstruction.size());
  for (int64_t first = 0; first < split.count; first += chunk_images) {
    const int images = static_cast<int>(std::min<int64_t>(chunk_images, split.count - first));
    backend.encode(first, images, posteriors.data());
    for (int c = 0; c < images; ++c) {
      const float* mu = posteriors.data() + static_cast<size_t>(c) * 2 * latent;
      double kl = 0;
      for (int j = 0; j < latent; ++j) {
        const double term = kl_term<double>(mu[j], mu[latent + j]);
        kl += term;
        ev.kl_per_dim[j] += term;
        mu_all[static_cast<size_t>(first + c) * latent + j] = mu[j];
      }
      ev.kl[first + c] = kl;
    }
    // log w = log p(x | z) + log p(z) - log q(z | x); the backend leaves log_ratio in log_weights.
    backend.weigh(first, images, K, seed, reconstruction.data(), log_weights.data());
    for (int c = 0; c < images; ++c) {
      double* w = log_weights.data() + static_cast<size_t>(c) * K;
      const double* rec = reconstruction.data() + static_cast<size_t>(c) * K;
      for (int k = 0; k < K; ++k) w[k] += ev.log_likelihood_constant - rec[k];
      ev.reconstruction[first + c] = rec[0];
      ev.iwae[first + c] = log_sum_exp(w, K) - std::log(double(K));
    }
    if (progress) progress(first + images, split.count);
  }

  const double n = static_cast<double>(std::max<int64_t>(split.count, 1));
  for (double& kl : ev.kl_per_dim) kl /= n;
  ev.mu_variance = column_variances(mu_all, split.count, latent);
  return ev;
}

Evaluation evaluate_model(const ModelConfig& model, const std::vector<float>& params,
                          const std::vector<float>& running_stats, const MnistSplit& split, int importance_samples,
                          uint64_t seed, const std::function<void(int64_t, int64_t)>& progress) {
  ReferenceEvaluation backend(model, params, running_stats, split);
  return evaluate_model(model, backend, split, importance_samples, seed, progress);
}

}  // namespace vae
