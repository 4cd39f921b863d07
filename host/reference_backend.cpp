// ReferenceBackend: the VAE step on the CPU, one batch at a time.
#include "vae/reference_backend.hpp"

#include <algorithm>
#include <cmath>

#include "parallel.hpp"
#include "vae/error.hpp"
#include "vae/evaluation.hpp"
#include "vae/noise_streams.hpp"

namespace vae {

ReferenceBackend::ReferenceBackend(const TrainConfig& config)
    : config_(config), model_(config.model, config.batch) {
  const auto total = static_cast<size_t>(model_.layout().total);
  params_.assign(total, 0.0f);
  grads_.assign(total, 0.0f);
  adam_m_.assign(total, 0.0f);
  adam_v_.assign(total, 0.0f);
  running_stats_.assign(static_cast<size_t>(model_.layout().running_total), 0.0f);
  batch_.resize(static_cast<size_t>(config.batch) * config.model.input);
  init_params(model_.layout(), config.seed, params_.data());
  init_running_stats(model_.layout(), running_stats_.data());
}

std::string ReferenceBackend::describe() const { return "CPU reference backend"; }

std::vector<uint8_t*> ReferenceBackend::host_slots(int count, size_t bytes) {
  slots_.assign(static_cast<size_t>(count), std::vector<uint8_t>(bytes));
  std::vector<uint8_t*> pointers;
  for (auto& slot : slots_) pointers.push_back(slot.data());
  return pointers;
}

void ReferenceBackend::load_pixels(const uint8_t* pixels, int rows) {
  const int64_t count = static_cast<int64_t>(rows) * config_.model.input;
  const bool signed_data = config_.model.likelihood == Likelihood::kGaussian;
#pragma omp parallel for schedule(static) if (ref::worth_parallel(count))
  for (int64_t i = 0; i < count; ++i) batch_[i] = pixel_value(pixels[i], signed_data);
}

std::function<void()> ReferenceBackend::train_step(const uint8_t* pixels, int rows) {
  if (rows < 1 || rows > config_.batch)
    throw Error("train_step: " + std::to_string(rows) + " rows, expected 1 to " + std::to_string(config_.batch));
  load_pixels(pixels, rows);
  ++step_;
  const LossSums loss =
      model_.run(rows, batch_.data(), config_.seed, train_stream(step_), params_.data(), grads_.data(),
                 running_stats_.data());
  ref::adam_step(static_cast<int64_t>(params_.size()), config_.adam, step_, grads_.data(), params_.data(),
                 adam_m_.data(), adam_v_.data());
  sums_.reconstruction += loss.reconstruction;
  sums_.kl += loss.kl;
  if (first_nonfinite_step_ == 0 && !std::isfinite(loss.reconstruction + loss.kl)) first_nonfinite_step_ = step_;
  return {};  // the pixels were consumed synchronously
}

// The steps have finished when train_step returns, so the snapshot is ready at once.
void ReferenceBackend::request_snapshot() {
  if (snapshot_) throw Error("request_snapshot: the previous snapshot has not been taken");
  snapshot_ = Snapshot{sums_, first_nonfinite_step_};
}

bool ReferenceBackend::use_resident_data(const MnistSplit& train) {
  resident_ = &train;
  resident_batch_.resize(static_cast<size_t>(config_.batch) * train.image_size());
  return true;
}

void ReferenceBackend::set_epoch_order(const std::vector<uint32_t>& order, uint32_t /*start*/) { order_ = order; }

void ReferenceBackend::train_step_resident(uint32_t first, int rows) {
  if (resident_ == nullptr || first + static_cast<uint64_t>(rows) > order_.size())
    throw Error("train_step_resident: no resident data or batch outside the epoch order");
  const size_t image = static_cast<size_t>(resident_->image_size());
  for (int r = 0; r < rows; ++r)
    std::copy_n(resident_->pixels.data() + order_[first + r] * image, image, resident_batch_.data() + r * image);
  train_step(resident_batch_.data(), rows);
}

TrainingBackend::TestPass ReferenceBackend::evaluate(const MnistSplit& split, int epoch) {
  const auto count = static_cast<uint32_t>(split.count);
  const size_t image = static_cast<size_t>(split.image_size());
  const int latent = config_.model.latent;
  double total = 0;
  std::vector<double> mu(static_cast<size_t>(count) * latent);
  for (uint32_t first = 0, b = 0; first < count; first += config_.batch, ++b) {
    const int rows = static_cast<int>(std::min<uint32_t>(config_.batch, count - first));
    load_pixels(split.pixels.data() + first * image, rows);
    const LossSums loss =
        model_.run(rows, batch_.data(), config_.seed, eval_stream(epoch, b), params_.data(), nullptr,
                   running_stats_.data());
    total += loss.reconstruction + config_.model.beta * loss.kl;
    for (int r = 0; r < rows; ++r)
      std::copy_n(model_.mu_logvar() + static_cast<size_t>(r) * 2 * latent, latent,
                  mu.begin() + static_cast<ptrdiff_t>(first + r) * latent);
  }
  return TestPass{total / count, count_active_units(column_variances(mu, count, latent))};
}

TrainingState ReferenceBackend::state() {
  return TrainingState{params_, adam_m_, adam_v_, running_stats_, step_};
}

void ReferenceBackend::restore(const TrainingState& state) {
  if (state.params.size() != params_.size() || state.adam_m.size() != params_.size() ||
      state.adam_v.size() != params_.size() || state.running_stats.size() != running_stats_.size())
    throw Error("restore: the state does not match this model's layout");
  params_ = state.params;
  adam_m_ = state.adam_m;
  adam_v_ = state.adam_v;
  running_stats_ = state.running_stats;
  step_ = state.step;
  first_nonfinite_step_ = 0;
}

}  // namespace vae
