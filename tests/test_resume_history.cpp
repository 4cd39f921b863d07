// metrics.csv of a resumed run: the rows of the run it continues (read from beside the checkpoint,
// when they agree with it), then a row per epoch it finishes, so a run resumed into a new --out
// folder, mid-epoch included, holds the same epochs, steps and losses as a run never stopped.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/idx.hpp"
#include "vae/reference_backend.hpp"
#include "vae/trainer.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using testing_support::run_process;
using testing_support::TempDir;

constexpr const char* kHeader = "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds,lr";

std::vector<std::string> rows_of(const fs::path& metrics) {
  std::ifstream in(metrics);
  std::string line;
  std::vector<std::string> rows;
  if (!std::getline(in, line) || line != kHeader) return {"(no header: " + line + ")"};
  while (std::getline(in, line)) rows.push_back(line);
  return rows;
}

// The columns a stopped-and-resumed run must reproduce: epoch, step, the losses. Images/s and
// seconds are timings (of the part of an epoch that run trained).
std::string without_timings(const std::string& row) {
  size_t cut = 0;
  for (int comma = 0; comma < 6 && cut != std::string::npos; ++comma) cut = row.find(',', cut + 1);
  return row.substr(0, cut);
}

std::vector<std::string> without_timings(const std::vector<std::string>& rows) {
  std::vector<std::string> out;
  for (const std::string& row : rows) out.push_back(without_timings(row));
  return out;
}

// 100 images in batches of 16: 7 steps per epoch, the last one partial.
class ResumeHistory : public testing::Test {
 protected:
  static constexpr int kSteps = 7;

  void SetUp() override { testing_support::write_tiny_mnist(dir_.path(), 100, 20); }

  int train(const std::string& extra) {
    const auto r = run_process(VAE_CLI_PATH, "--train " + dir_.path().string() +
                                                 " --device cpu --no-progress --batch 16 --hidden 24 --latent 3 " + extra);
    EXPECT_EQ(r.exit_code, 0) << extra << "\n" << r.output;
    return r.exit_code;
  }
  fs::path folder(const std::string& name) { return dir_.path() / name; }

  // Rewrites `checkpoint` as the same run stopped after `steps` more steps, mid-epoch, as Ctrl-C
  // would leave it (without the timing of a signal).
  void advance_mid_epoch(const fs::path& checkpoint, int steps) {
    const Checkpoint from = read_checkpoint(checkpoint);
    const MnistData data = load_mnist_dir(dir_.path());
    Trainer trainer(from.config, data.train, data.test, std::make_unique<ReferenceBackend>(from.config));
    trainer.resume(from);
    int taken = 0;
    trainer.set_stop_request([&] { return ++taken >= steps; });
    ASSERT_TRUE(trainer.train_epoch().interrupted);
    write_checkpoint(checkpoint, trainer.checkpoint());
  }

  TempDir dir_;
};

TEST_F(ResumeHistory, ANewFolderGetsTheEarlierRowsFromBesideTheCheckpoint) {
  ASSERT_EQ(train("--epochs 3 --out " + folder("straight").string()), 0);
  ASSERT_EQ(train("--epochs 1 --out " + folder("first").string()), 0);
  ASSERT_EQ(train("--epochs 3 --out " + folder("second").string() + " --resume " +
                  (folder("first") / "checkpoint.safetensors").string()),
            0);
  const std::vector<std::string> rows = rows_of(folder("second") / "metrics.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], rows_of(folder("first") / "metrics.csv").at(0));  // carried as it was, timings included
  EXPECT_EQ(without_timings(rows), without_timings(rows_of(folder("straight") / "metrics.csv")));
  EXPECT_EQ(rows[2].rfind("3," + std::to_string(3 * kSteps) + ",", 0), 0u) << rows[2];
  EXPECT_EQ(rows_of(folder("first") / "metrics.csv").size(), 1u);  // the old folder is left alone
}

// Stopped after 2 steps of epoch 2, resumed into a new folder: the row of epoch 2 covers the whole
// epoch's loss, as the run that never stopped reports it.
TEST_F(ResumeHistory, AMidEpochResumeReportsTheWholeEpoch) {
  ASSERT_EQ(train("--epochs 3 --out " + folder("straight").string()), 0);
  ASSERT_EQ(train("--epochs 1 --out " + folder("first").string()), 0);
  advance_mid_epoch(folder("first") / "checkpoint.safetensors", 2);
  ASSERT_EQ(read_checkpoint(folder("first") / "checkpoint.safetensors").position.batch, 2);
  ASSERT_EQ(train("--epochs 3 --out " + folder("second").string() + " --resume " +
                  (folder("first") / "checkpoint.safetensors").string()),
            0);
  EXPECT_EQ(without_timings(rows_of(folder("second") / "metrics.csv")),
            without_timings(rows_of(folder("straight") / "metrics.csv")));
}

// A metrics.csv already in the new folder belongs to some other run: it is replaced, never merged.
TEST_F(ResumeHistory, AnotherRunsFileInTheNewFolderIsNotMixedIn) {
  ASSERT_EQ(train("--epochs 3 --out " + folder("straight").string()), 0);
  ASSERT_EQ(train("--epochs 1 --out " + folder("first").string()), 0);
  fs::create_directories(folder("second"));
  std::ofstream(folder("second") / "metrics.csv") << kHeader << "\n1,999,1,1,1,1,1,1,0.001\n2,1998,2,2,2,2,2,2,0.001\n";
  ASSERT_EQ(train("--epochs 3 --out " + folder("second").string() + " --resume " +
                  (folder("first") / "checkpoint.safetensors").string()),
            0);
  EXPECT_EQ(without_timings(rows_of(folder("second") / "metrics.csv")),
            without_timings(rows_of(folder("straight") / "metrics.csv")));
}

// Without the checkpoint's history (a checkpoint copied on its own, or beside another run's file),
// the file holds the epochs this run trains, their epoch and step numbers continuing the checkpoint's.
TEST_F(ResumeHistory, WithoutItsHistoryOnlyTheResumedEpochsAreWritten) {
  ASSERT_EQ(train("--epochs 3 --out " + folder("straight").string()), 0);
  ASSERT_EQ(train("--epochs 1 --out " + folder("first").string()), 0);
  const std::vector<std::string> straight = without_timings(rows_of(folder("straight") / "metrics.csv"));
  const std::vector<std::string> resumed_epochs(straight.begin() + 1, straight.end());

  fs::create_directories(folder("alone"));
  fs::copy_file(folder("first") / "checkpoint.safetensors", folder("alone") / "checkpoint.safetensors");
  ASSERT_EQ(train("--epochs 3 --out " + folder("from_alone").string() + " --resume " +
                  (folder("alone") / "checkpoint.safetensors").string()),
            0);
  EXPECT_EQ(without_timings(rows_of(folder("from_alone") / "metrics.csv")), resumed_epochs);

  // Beside it, a file whose epoch-1 row ends at another step: not this checkpoint's history.
  std::ofstream(folder("alone") / "metrics.csv") << kHeader << "\n1,5,1,1,1,1,1,1,0.001\n";
  ASSERT_EQ(train("--epochs 3 --out " + folder("from_foreign").string() + " --resume " +
                  (folder("alone") / "checkpoint.safetensors").string()),
            0);
  EXPECT_EQ(without_timings(rows_of(folder("from_foreign") / "metrics.csv")), resumed_epochs);
}

}  // namespace
}  // namespace vae
