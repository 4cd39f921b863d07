// Per-op figures for the two memory-bound ops of the step: the fused BCE+KL loss against an
// unfused kernel chain, and the single Adam launch against one launch per tensor. Both baselines
// are first run once from the same inputs as ours and their results compared.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "baseline_adam_per_tensor.hpp"
#include "baseline_unfused_loss.hpp"
#include "benches.hpp"
#include "vae/cuda_ops.hpp"
#include "vae/layout.hpp"

namespace vae::bench {
namespace {

double relative_gap(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-30); }

std::vector<double> download_totals(const DeviceBuffer<double>& totals) {
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
  return totals.download();
}

}  // namespace

void bench_loss(Harness& h, int rows) {
  const ModelConfig model;
  const int pixels = model.input, latent = model.latent;
  const size_t elements = static_cast<size_t>(rows) * pixels;
  const DeviceBuffer<float> logits = random_floats(elements, -4.0f, 4.0f, 11);
  const DeviceBuffer<uint8_t> target = random_pixels(elements, 12);
  const DeviceBuffer<float> mu_logvar = random_floats(static_cast<size_t>(rows) * 2 * latent, -1.0f, 1.0f, 13);
  DeviceBuffer<float> dlogits_ours(elements), dlogits_other(elements);
  DeviceBuffer<float> scratch(static_cast<size_t>(unfused::loss_scratch_floats(rows, pixels, latent)));
  DeviceBuffer<double> row_scratch(2 * static_cast<size_t>(rows)), totals_ours(2), totals_other(2);
  const cudaStream_t stream = h.stream();
  const OpCost cost = bce_kl_cost(rows, pixels, latent);
  const std::string shape = fmt::format("{} pixels, {} latents, batch {}", pixels, latent, rows);

  const auto ours = [&] {
    cuda::bce_kl_loss(rows, pixels, latent, logits.data(), target.data(), mu_logvar.data(), dlogits_ours.data(),
                      row_scratch.data(), totals_ours.data(), {}, stream);
  };
  const auto unfused_chain = [&] {
    unfused::bce_kl_loss(rows, pixels, latent, logits.data(), target.data(), mu_logvar.data(), dlogits_other.data(),
                         scratch.data(), totals_other.data(), stream);
  };
  h.time({"op", "bce+kl loss", shape, "ours", Precision::kFp32}, ours, cost);
  h.attempt("unfused bce+kl " + shape, [&] {
    poison(dlogits_other);
    h.time({"op", "bce+kl loss", shape, "unfused chain", Precision::kFp32}, unfused_chain, cost);
    // One run of each from zeroed totals: the sums and the gradient must agree.
    totals_ours.zero();
    totals_other.zero();
    VAE_CUDA_CHECK(cudaDeviceSynchronize());  // the memsets ran on the default stream
    ours();
    unfused_chain();
    const std::vector<double> a = download_totals(totals_other), b = download_totals(totals_ours);
    h.record_difference(worst_of({relative_gap(a[0], b[0]), relative_gap(a[1], b[1]),
                                  max_relative_difference(dlogits_other.data(), dlogits_ours.data(), elements)}));
  });
}

void bench_adam(Harness& h) {
  const ParamLayout layout = make_layout(ModelConfig{});
  const auto n = static_cast<size_t>(layout.total);
  const DeviceBuffer<float> grads = random_floats(n, -1.0f, 1.0f, 21);
  const std::vector<float> initial = random_floats(n, -0.1f, 0.1f, 22).download();
  DeviceBuffer<float> params_ours(initial), params_other(initial), m(n), v(n);
  m.zero();
  v.zero();
  const DeviceBuffer<long long> step(std::vector<long long>{1});  // read, never advanced, by both
  VAE_CUDA_CHECK(cudaDeviceSynchronize());  // uploads and memsets ran on the default stream
  const AdamHyper hyper;
  const cudaStream_t stream = h.stream();
  const OpCost cost = adam_cost(layout.parameter_count());
  const std::string shape = fmt::format("{} parameters, {} tensors", layout.parameter_count(), 2 * layout.layers.size());

  // Agreement first, from the same state: one step each.
  cuda::adam_step(layout.total, hyper, step.data(), grads.data(), params_ours.data(), m.data(), v.data(), stream);
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream));  // zero() runs on the default stream, unordered with ours
  m.zero();
  v.zero();
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
  adam_per_tensor(layout, hyper, step.data(), grads.data(), params_other.data(), m.data(), v.data(), stream);
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  const double difference = max_relative_difference(params_other.data(), params_ours.data(), n);

  h.time({"op", "adam", shape, "ours", Precision::kFp32}, [&] {
    cuda::adam_step(layout.total, hyper, step.data(), grads.data(), params_ours.data(), m.data(), v.data(), stream);
  }, cost);
  h.time({"op", "adam", shape, "one launch per tensor", Precision::kFp32}, [&] {
    adam_per_tensor(layout, hyper, step.data(), grads.data(), params_other.data(), m.data(), v.data(), stream);
  }, cost);
  h.record_difference(difference);
}

}  // namespace vae::bench
