// evaluate_model: every image's posterior once, then K importance samples per image decoded in
// blocks of rows that span images, so K = 1 keeps the GEMMs as full as K = 5000 does. Each row's
// reconstruction term comes from the training step's own loss op; log-weights are summed in double
// and combined by log-sum-exp per image.
#include "vae/evaluation.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "vae/element_math.hpp"
#include "vae/error.hpp"
#include "vae/images.hpp"
#include "vae/noise_streams.hpp"
#include "vae/philox.hpp"
#include "vae/reference_model.hpp"
#include "vae/reference_ops.hpp"

namespace vae {
namespace {

constexpr int kDecodeRows = 256;  // importance samples decoded at once
// Importance samples one chunk of images holds (its log-weights): chunks of many images for small
// K, down to one image for K past this.
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

void importance_eps_row(uint64_t seed, int64_t image, int64_t sample, int latent, float* eps) {
  const uint64_t subsequence = noise_stream(NoisePurpose::kImportance, static_cast<uint64_t>(image));
  const uint64_t first = static_cast<uint64_t>(sample) * latent;
  Normal4 block{};
  for (int j = 0; j < latent; ++j) {
    const uint64_t element = first + j;
    if (j == 0 || element % 4 == 0) block = philox_normal4(seed, subsequence, element / 4);
    eps[j] = block.v[element % 4];
  }
}

double log_likelihood_constant(const ModelConfig& model) {
  if (model.likelihood == Likelihood::kBernoulli) return 0.0;
  const double d = model.input;
  return -0.5 * d * std::log(std::numbers::pi * d / model.alpha);
}

int Evaluation::active_units() const {
  return static_cast<int>(std::count_if(mu_variance.begin(), mu_variance.end(),
                                        [](double v) { return v > kActiveUnitThreshold; }));
}
double Evaluation::mean_reconstruction() const { return mean(reconstruction); }
double Evaluation::mean_kl() const { return mean(kl); }
double Evaluation::mean_elbo() const { return log_likelihood_constant - mean_reconstruction() - mean_kl(); }
double Evaluation::mean_iwae() const { return mean(iwae); }
int64_t Evaluation::first_non_finite() const {
  for (int64_t i = 0; i < images; ++i)
    if (!std::isfinite(iwae[i]) || !std::isfinite(reconstruction[i]) || !std::isfinite(kl[i])) return i;
  return -1;
}

Evaluation evaluate_model(const ModelConfig& model, const std::vector<float>& params,
                          const std::vector<float>& running_stats, const MnistSplit& split, int importance_samples,
                          uint64_t seed, const std::function<void(int64_t, int64_t)>& progress) {
  const int K = importance_samples, latent = model.latent, input = model.input;
  if (K < 1 || K > kMaxImportanceSamples)
    throw Error(fmt::format("importance samples: {} is not between 1 and {}", K, kMaxImportanceSamples));
  if (split.image_size() != input)
    throw Error(fmt::format("the images are {}x{} ({} pixels), the model takes {}", split.rows, split.cols,
                            split.image_size(), input));
  Evaluation ev;
  ev.images = split.count;
  ev.importance_samples = K;
  ev.log_likelihood_constant = log_likelihood_constant(model);
  ev.reconstruction.assign(static_cast<size_t>(split.count), 0.0);
  ev.kl.assign(ev.reconstruction.size(), 0.0);
  ev.iwae.assign(ev.reconstruction.size(), 0.0);
  std::vector<double> mu_all(static_cast<size_t>(split.count) * latent);  // for the variances
  ev.kl_per_dim.assign(latent, 0.0);  // sums until the end

  ReferenceVae<float> vae(model, kDecodeRows);
  const float* running = running_stats.empty() ? nullptr : running_stats.data();
  const bool gaussian = model.likelihood == Likelihood::kGaussian;
  const int chunk_images = std::clamp(kChunkSamples / K, 1, kDecodeRows);
  std::vector<double> log_weights(static_cast<size_t>(chunk_images) * K), log_ratio(kDecodeRows),
      row_sums(2 * kDecodeRows);
  std::vector<float> targets(static_cast<size_t>(chunk_images) * input), z(static_cast<size_t>(kDecodeRows) * latent),
      eps(latent);
  // Each decoded row's target image and posterior, as the loss op takes them row by row.
  std::vector<float> row_targets(static_cast<size_t>(kDecodeRows) * input),
      row_posteriors(static_cast<size_t>(kDecodeRows) * 2 * latent);

  for (int64_t first = 0; first < split.count; first += chunk_images) {
    const int images = static_cast<int>(std::min<int64_t>(chunk_images, split.count - first));
    const std::vector<float> x = split_images(split, first, images);
    const std::vector<float> posteriors = encode_posteriors(vae, images, x.data(), params, running_stats);
    for (size_t i = 0; i < x.size(); ++i) targets[i] = gaussian ? unit_to_signed(x[i]) : x[i];
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
    // The chunk's images * K samples, row f being image f / K's sample f % K, decoded kDecodeRows at once.
    const int64_t samples = static_cast<int64_t>(images) * K;
    for (int64_t f0 = 0; f0 < samples; f0 += kDecodeRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kDecodeRows, samples - f0));
      for (int r = 0; r < rows; ++r) {
        const int c = static_cast<int>((f0 + r) / K), k = static_cast<int>((f0 + r) % K);
        const float* mu = posteriors.data() + static_cast<size_t>(c) * 2 * latent;
        const float* logvar = mu + latent;
        std::copy_n(mu, 2 * latent, row_posteriors.begin() + static_cast<ptrdiff_t>(r) * 2 * latent);
        std::copy_n(targets.begin() + static_cast<ptrdiff_t>(c) * input, input,
                    row_targets.begin() + static_cast<ptrdiff_t>(r) * input);
        // log p(z) - log q(z | x) for z = mu + sigma eps: sum_j 1/2 (logvar_j + eps_j^2 - z_j^2), the
        // normal densities' 2 pi terms cancelling.
        importance_eps_row(seed, first + c, k, latent, eps.data());
        double ratio = 0;
        for (int j = 0; j < latent; ++j) {
          const float zj = reparam_sample(mu[j], logvar[j], eps[j]);
          z[static_cast<size_t>(r) * latent + j] = zj;
          ratio += 0.5 * (static_cast<double>(logvar[j]) + static_cast<double>(eps[j]) * eps[j] - static_cast<double>(zj) * zj);
        }
        log_ratio[r] = ratio;
      }
      vae.decode(rows, z.data(), params.data(), running);
      reconstruction_terms(model, rows, vae.logits(), row_targets.data(), row_posteriors.data(), row_sums.data());
      for (int r = 0; r < rows; ++r) {
        const int64_t f = f0 + r;
        log_weights[f] = ev.log_likelihood_constant - row_sums[r] + log_ratio[r];
        if (f % K == 0) ev.reconstruction[first + f / K] = row_sums[r];
      }
    }
    for (int c = 0; c < images; ++c)
      ev.iwae[first + c] = log_sum_exp(log_weights.data() + static_cast<size_t>(c) * K, K) - std::log(double(K));
    if (progress) progress(first + images, split.count);
  }

  ev.mu_variance.assign(latent, 0.0);
  const double n = static_cast<double>(std::max<int64_t>(split.count, 1));
  for (int j = 0; j < latent; ++j) {
    ev.kl_per_dim[j] /= n;
    double sum = 0;
    for (int64_t i = 0; i < split.count; ++i) sum += mu_all[i * latent + j];
    const double average = sum / n;
    double squares = 0;
    for (int64_t i = 0; i < split.count; ++i) squares += (mu_all[i * latent + j] - average) * (mu_all[i * latent + j] - average);
    ev.mu_variance[j] = squares / n;
  }
  return ev;
}

}  // namespace vae
