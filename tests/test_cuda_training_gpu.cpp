// The GPU training runtime: a run reproduces bit for bit; graph replay, plain launches, streamed and
// device-resident data all train on the same batches to the same bits; and the GPU follows the CPU
// reference for its first 100 steps within FP32 tolerance (20 in quick mode, below).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include "gpu_test_support.hpp"
#include "test_support.hpp"
#include "vae/cuda_backend.hpp"
#include "vae/error.hpp"
#include "vae/reference_backend.hpp"
#include "vae/trainer.hpp"

namespace vae {
namespace {

using testing_support::disc_split;

// How much each test trains. tools/gpu-check.sh sets VAE_GPU_TEST_QUICK for its compute-sanitizer
// passes, which run 10-100x slower: there every test keeps its comparison but trains on less data
// (three steps an epoch, the last still a partial batch) and follows the reference for fewer steps,
// under a third of the launches in all.
struct Sizes {
  uint32_t train_images, test_images;
  int reference_steps;  // steps the GPU must follow the CPU reference for
};

const Sizes& sizes() {
  static const Sizes chosen =
      std::getenv("VAE_GPU_TEST_QUICK") != nullptr ? Sizes{300, 100, 20} : Sizes{1000, 300, 100};
  return chosen;
}

// Steps in one epoch of `images` at the default batch: the last, partial batch is a step too.
int steps_per_epoch(uint32_t images) {
  const uint32_t batch = static_cast<uint32_t>(TrainConfig{}.batch);
  return static_cast<int>((images + batch - 1) / batch);
}

struct TrainingRun {
  std::vector<float> params;
  std::vector<EpochStats> epochs;
};

TrainingRun train_on(std::unique_ptr<TrainingBackend> backend, const TrainConfig& config, const MnistSplit& train,
             const MnistSplit& test, int epochs) {
  Trainer trainer(config, train, test, std::move(backend));
  TrainingRun run;
  for (int e = 0; e < epochs; ++e) run.epochs.push_back(trainer.train_epoch());
  run.params = trainer.backend().parameters();
  return run;
}

TrainingRun train_gpu(const TrainConfig& config, const MnistSplit& train, const MnistSplit& test, int epochs) {
  return train_on(std::make_unique<CudaBackend>(config, train, test), config, train, test, epochs);
}

class CudaTraining : public testing::Test {
 protected:
  // 1,000 images in batches of 128: seven full steps and a partial one of 104 per epoch (quick
  // mode: 300, two full steps and a partial one of 44).
  MnistSplit train_ = disc_split(sizes().train_images, 1), test_ = disc_split(sizes().test_images, 2);
};

TEST_F(CudaTraining, SameSeedGivesBitwiseIdenticalLossesAndWeights) {
  VAE_REQUIRE_GPU();
  const TrainConfig config;
  const TrainingRun a = train_gpu(config, train_, test_, 2), b = train_gpu(config, train_, test_, 2);
  EXPECT_EQ(a.params, b.params);
  for (int e = 0; e < 2; ++e) {
    EXPECT_EQ(a.epochs[e].train_loss, b.epochs[e].train_loss);
    EXPECT_EQ(a.epochs[e].test_loss, b.epochs[e].test_loss);
  }
  EXPECT_EQ(a.epochs[1].step, 2 * steps_per_epoch(sizes().train_images));
}

TEST_F(CudaTraining, GraphsPlainLaunchesStreamedAndResidentDataAgreeBitwise) {
  VAE_REQUIRE_GPU();
  TrainConfig graphs, plain, resident;
  plain.cuda_graphs = false;
  resident.data = DataPlacement::kResident;
  const TrainingRun a = train_gpu(graphs, train_, test_, 2);
  EXPECT_EQ(a.params, train_gpu(plain, train_, test_, 2).params);
  EXPECT_EQ(a.params, train_gpu(resident, train_, test_, 2).params);
}

// FP32 on both sides, different summation orders: the first step's loss agrees to ~1e-6; Adam's
// normalised updates then let rounding differences grow slowly. Over 100 steps (20 in quick mode)
// we ask for each step's loss within 1e-3 relative and then the weights within 1e-3 in relative L2
// norm.
TEST_F(CudaTraining, FollowsTheCpuReferenceStepByStep) {
  VAE_REQUIRE_GPU();
  const int steps = sizes().reference_steps;
  TrainConfig config;
  const MnistSplit train = disc_split(static_cast<uint32_t>(steps * config.batch), 3);
  CudaBackend gpu(config, train, test_);
  ReferenceBackend cpu(config);
  std::vector<uint8_t*> slot = gpu.host_slots(1, static_cast<size_t>(config.batch) * 784);
  for (int step = 0; step < steps; ++step) {
    const uint8_t* batch = train.pixels.data() + static_cast<size_t>(step) * config.batch * 784;
    std::copy_n(batch, static_cast<size_t>(config.batch) * 784, slot[0]);
    const LossSums cpu_before = cpu.epoch_sums(), gpu_before = gpu.epoch_sums();
    cpu.train_step(batch, config.batch);
    gpu.train_step(slot[0], config.batch)();  // wait for the copy before refilling the slot
    const LossSums cpu_after = cpu.epoch_sums(), gpu_after = gpu.epoch_sums();
    const double cpu_loss = cpu_after.reconstruction + cpu_after.kl - cpu_before.reconstruction - cpu_before.kl;
    const double gpu_loss = gpu_after.reconstruction + gpu_after.kl - gpu_before.reconstruction - gpu_before.kl;
    ASSERT_NEAR(gpu_loss, cpu_loss, 1e-3 * std::fabs(cpu_loss)) << "step " << step + 1;
  }
  const std::vector<float> a = gpu.parameters(), b = cpu.parameters();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-3);
}

TEST_F(CudaTraining, EvaluationMatchesTheReferenceAtTheStart) {
  VAE_REQUIRE_GPU();
  const TrainConfig config;  // untrained, identical initial weights on both sides
  CudaBackend gpu(config, train_, test_);
  ReferenceBackend cpu(config);
  const TrainingBackend::TestPass expected = cpu.evaluate(test_, 1), got = gpu.evaluate(test_, 1);
  EXPECT_NEAR(got.loss, expected.loss, 1e-4 * expected.loss);
  EXPECT_EQ(got.active_units, expected.active_units);
}

// The NaN guard rides on the loss kernel: a poisoned weight makes step 1's loss non-finite, and the
// epoch must stop naming step 1 exactly.
TEST_F(CudaTraining, NonFiniteLossIsReportedWithItsStep) {
  VAE_REQUIRE_GPU();
  const TrainConfig config;
  auto backend = std::make_unique<CudaBackend>(config, train_, test_);
  TrainingState poisoned = backend->state();
  poisoned.params[0] = std::nanf("");
  backend->restore(poisoned);
  Trainer trainer(config, train_, test_, std::move(backend));
  try {
    trainer.train_epoch();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite loss at step 1 "), std::string::npos) << e.what();
  }
}

TEST_F(CudaTraining, Tf32TrainsToNearlyTheSameLoss) {
  VAE_REQUIRE_GPU();
  TrainConfig fp32, tf32;
  tf32.precision = Precision::kTf32;
  const TrainingRun a = train_gpu(fp32, train_, test_, 2), b = train_gpu(tf32, train_, test_, 2);
  EXPECT_NEAR(b.epochs[1].test_loss, a.epochs[1].test_loss, 0.01 * a.epochs[1].test_loss);
}

}  // namespace
}  // namespace vae
