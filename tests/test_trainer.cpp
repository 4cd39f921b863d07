// The epoch loop on the reference backend: the streamed path (producer thread, ring of host slots)
// and the resident path must train on exactly the same batches, so their weights agree bit for bit;
// both must equal a plain loop over the seeded order; partial batches are trained; progress and the
// NaN guard are read without waiting for the device inside an epoch.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <random>
#include <vector>

#include "test_support.hpp"
#include "vae/error.hpp"
#include "vae/reference_backend.hpp"
#include "vae/shuffle.hpp"
#include "vae/trainer.hpp"

namespace vae {
namespace {

using testing_support::random_split;

TrainConfig small_config() {
  TrainConfig config;
  config.batch = 32;
  config.model.hidden = {24};
  config.model.latent = 3;
  config.seed = 11;
  return config;
}

struct TrainingRun {
  std::vector<float> params;
  std::vector<EpochStats> epochs;
};

TrainingRun train(TrainConfig config, const MnistSplit& train_split, const MnistSplit& test_split, int epochs) {
  Trainer trainer(config, train_split, test_split, std::make_unique<ReferenceBackend>(config));
  TrainingRun run;
  for (int e = 0; e < epochs; ++e) run.epochs.push_back(trainer.train_epoch());
  run.params = trainer.backend().parameters();
  return run;
}

// The first `images` images of epoch 1's seeded order trained by a plain loop, batch by batch, the
// last batch partial: what the Trainer must match.
void train_in_seeded_order(ReferenceBackend& backend, const TrainConfig& config, const MnistSplit& split,
                           uint32_t images) {
  const std::vector<uint32_t> order = shuffled_indices(static_cast<uint32_t>(split.count), config.seed, 1);
  std::vector<uint8_t> batch(static_cast<size_t>(config.batch) * 784);
  for (uint32_t first = 0; first < images; first += config.batch) {
    const int rows = static_cast<int>(std::min<uint32_t>(config.batch, images - first));
    for (int r = 0; r < rows; ++r)
      std::copy_n(split.pixels.data() + static_cast<size_t>(order[first + r]) * 784, 784,
                  batch.data() + static_cast<size_t>(r) * 784);
    backend.train_step(batch.data(), rows);
  }
}

TEST(Trainer, StreamedAndResidentDataTrainIdentically) {
  const MnistSplit train_split = random_split(200, 1), test_split = random_split(50, 2);
  TrainConfig streamed = small_config(), resident = small_config();
  resident.data = DataPlacement::kResident;
  const TrainingRun a = train(streamed, train_split, test_split, 2), b = train(resident, train_split, test_split, 2);
  EXPECT_EQ(a.params, b.params);
  for (int e = 0; e < 2; ++e) {
    EXPECT_EQ(a.epochs[e].train_loss, b.epochs[e].train_loss);
    EXPECT_EQ(a.epochs[e].test_loss, b.epochs[e].test_loss);
  }
}

TEST(Trainer, EqualsAPlainLoopOverTheSeededOrder) {
  const MnistSplit train_split = random_split(200, 3), test_split = random_split(50, 4);
  const TrainConfig config = small_config();
  const TrainingRun run = train(config, train_split, test_split, 1);

  ReferenceBackend backend(config);
  train_in_seeded_order(backend, config, train_split, 200);
  EXPECT_EQ(run.params, backend.parameters());
  EXPECT_EQ(run.epochs[0].step, 7);  // 6 batches of 32 and a partial one of 8
  const LossSums sums = backend.epoch_sums();
  EXPECT_DOUBLE_EQ(run.epochs[0].train_loss, (sums.reconstruction + sums.kl) / 200);
}

TEST(Trainer, ReportsProgressEverySoOftenAndAtTheEnd) {
  const MnistSplit train_split = random_split(1000, 5), test_split = random_split(10, 6);
  TrainConfig config = small_config();
  config.batch = 8;  // 125 batches
  Trainer trainer(config, train_split, test_split, std::make_unique<ReferenceBackend>(config));
  std::vector<int> seen;
  double last_loss = 0;
  const EpochStats stats = trainer.train_epoch([&](int done, int total, double loss) {
    EXPECT_EQ(total, 125);
    seen.push_back(done);
    last_loss = loss;
  });
  EXPECT_EQ(seen, (std::vector<int>{25, 50, 75, 100, 125}));
  EXPECT_DOUBLE_EQ(last_loss, stats.train_loss);
}

// The reference backend behind the seam as a device would sit there: a snapshot arrives only
// `lag` polls after it was requested, every read that would wait for the device is counted, and a
// NaN can be planted in a weight before a given step.
class DeviceLikeBackend : public TrainingBackend {
 public:
  DeviceLikeBackend(const TrainConfig& config, int lag) : inner_(config), lag_(lag) {}

  std::string describe() const override { return inner_.describe(); }
  std::vector<uint8_t*> host_slots(int count, size_t bytes) override { return inner_.host_slots(count, bytes); }
  std::function<void()> train_step(const uint8_t* pixels, int rows) override {
    if (++steps == poison_before_step) {
      TrainingState state = inner_.state();
      state.params[7] = std::numeric_limits<float>::quiet_NaN();  // the first encoder layer's weights
      inner_.restore(state);
    }
    return inner_.train_step(pixels, rows);
  }
  LossSums epoch_sums() override {
    ++waits;
    return inner_.epoch_sums();
  }
  void set_epoch_sums(const LossSums& sums) override { inner_.set_epoch_sums(sums); }
  long long first_nonfinite_step() override {
    ++waits;
    return inner_.first_nonfinite_step();
  }
  void request_snapshot() override {
    inner_.request_snapshot();
    polls_left_ = lag_;
  }
  std::optional<Snapshot> take_snapshot() override {
    if (polls_left_-- > 0) return std::nullopt;
    return inner_.take_snapshot();
  }
  TestPass evaluate(const MnistSplit& split, int epoch) override { return inner_.evaluate(split, epoch); }
  void set_learning_rate(double lr) override { inner_.set_learning_rate(lr); }
  std::vector<float> parameters() override { return inner_.parameters(); }
  long long step() const override { return inner_.step(); }
  TrainingState state() override { return inner_.state(); }
  void restore(const TrainingState& state) override { inner_.restore(state); }

  int steps = 0, waits = 0;
  int poison_before_step = 0;

 private:
  ReferenceBackend inner_;
  int lag_, polls_left_ = 0;
};

TEST(Trainer, NeverWaitsForTheDeviceInsideAnEpoch) {
  const MnistSplit train_split = random_split(1000, 5), test_split = random_split(10, 6);
  TrainConfig config = small_config();
  config.batch = 8;  // 125 batches
  auto backend = std::make_unique<DeviceLikeBackend>(config, 3);
  DeviceLikeBackend& device = *backend;
  Trainer trainer(config, train_split, test_split, std::move(backend));
  ReferenceBackend reference(config);  // the same steps, read synchronously
  std::vector<int> seen;
  std::vector<double> losses;
  const EpochStats stats = trainer.train_epoch([&](int done, int total, double loss) {
    EXPECT_EQ(total, 125);
    EXPECT_EQ(device.waits, done == total ? 2 : 0) << "a wait for the device inside the epoch, at batch " << done;
    EXPECT_GT(device.steps, done == total ? done - 1 : done) << "progress is reported after its snapshot arrived";
    seen.push_back(done);
    losses.push_back(loss);
  });
  EXPECT_EQ(seen, (std::vector<int>{25, 50, 75, 100, 125}));
  EXPECT_EQ(device.waits, 2) << "the epoch's end waits once for the NaN guard and once for the sums";
  EXPECT_DOUBLE_EQ(losses.back(), stats.train_loss);
  // Each snapshot's mean is the loss over the images of the batches before it, as a wait would give.
  train_in_seeded_order(reference, config, train_split, 25 * config.batch);
  const LossSums sums = reference.epoch_sums();
  EXPECT_DOUBLE_EQ(losses[0], (sums.reconstruction + config.model.beta * sums.kl) / (25 * config.batch));
}

TEST(Trainer, ANonFiniteLossStopsTheEpochSoonNamingItsStepWithoutAProgressLine) {
  const MnistSplit train_split = random_split(1000, 5), test_split = random_split(10, 6);
  TrainConfig config = small_config();
  config.batch = 8;  // 125 batches
  auto backend = std::make_unique<DeviceLikeBackend>(config, 2);
  DeviceLikeBackend& device = *backend;
  device.poison_before_step = 31;
  Trainer trainer(config, train_split, test_split, std::move(backend));
  try {
    trainer.train_epoch();
    ADD_FAILURE() << "a NaN weight trained on";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite loss at step 31"), std::string::npos) << e.what();
  }
  // Found by the snapshot requested after batch 50, two polls later, long before the epoch's end.
  EXPECT_EQ(device.steps, 53);
  EXPECT_EQ(device.waits, 0);
}

TEST(Trainer, SameSeedSameEpochsDifferentSeedDifferent) {
  const MnistSplit train_split = random_split(100, 7), test_split = random_split(20, 8);
  TrainConfig config = small_config();
  const TrainingRun a = train(config, train_split, test_split, 2), b = train(config, train_split, test_split, 2);
  config.seed = 12;
  const TrainingRun c = train(config, train_split, test_split, 2);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.epochs[1].test_loss, b.epochs[1].test_loss);
  EXPECT_NE(a.params, c.params);
}

TEST(Trainer, RejectsImagesOfTheWrongSize) {
  MnistSplit odd = random_split(10, 9);
  odd.rows = 27;  // 27 x 28 pixels against a 784-input model
  const TrainConfig config = small_config();
  EXPECT_THROW(Trainer(config, odd, odd, std::make_unique<ReferenceBackend>(config)), Error);
}

}  // namespace
}  // namespace vae
