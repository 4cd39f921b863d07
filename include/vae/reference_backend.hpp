// The CPU reference backend behind the TrainingBackend seam: ReferenceVae for the step, the
// reference Adam, and plain host memory. It trains on machines without a GPU and is the oracle
// the GPU backend is compared with step by step.
#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "vae/config.hpp"
#include "vae/reference_model.hpp"
#include "vae/training_backend.hpp"

namespace vae {

class ReferenceBackend : public TrainingBackend {
 public:
  explicit ReferenceBackend(const TrainConfig& config);

  std::string describe() const override;
  std::vector<uint8_t*> host_slots(int count, size_t bytes) override;
  std::function<void()> train_step(const uint8_t* pixels, int rows) override;
  bool use_resident_data(const MnistSplit& train) override;
  void set_epoch_order(const std::vector<uint32_t>& order, uint32_t start) override;
  void train_step_resident(uint32_t first, int rows) override;
  LossSums epoch_sums() override { return sums_; }
  void set_epoch_sums(const LossSums& sums) override { sums_ = sums; }
  long long first_nonfinite_step() override { return first_nonfinite_step_; }
  void request_snapshot() override;
  std::optional<Snapshot> take_snapshot() override { return std::exchange(snapshot_, std::nullopt); }
  TestPass evaluate(const MnistSplit& split, int epoch) override;
  void set_learning_rate(double lr) override { config_.adam.lr = lr; }
  std::vector<float> parameters() override { return params_; }
  long long step() const override { return step_; }
  TrainingState state() override;
  void restore(const TrainingState& state) override;

 private:
  void load_pixels(const uint8_t* pixels, int rows);  // into batch_, scaled as the likelihood's data

  TrainConfig config_;
  ReferenceVae<float> model_;
  std::vector<float> params_, grads_, adam_m_, adam_v_;
  std::vector<float> running_stats_;  // BatchNorm's, [layout.running_total]
  std::vector<float> batch_;
  std::vector<std::vector<uint8_t>> slots_;
  std::vector<uint8_t> resident_batch_;
  const MnistSplit* resident_ = nullptr;
  std::vector<uint32_t> order_;
  LossSums sums_;
  long long step_ = 0;
  long long first_nonfinite_step_ = 0;
  std::optional<Snapshot> snapshot_;  // requested and not yet taken
};

}  // namespace vae
