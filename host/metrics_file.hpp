// metrics.csv: one row per finished epoch (epoch, step, train loss, reconstruction, KL, test loss,
// images/s, seconds), rewritten whole and atomically. A resumed run's file starts with the history
// of the run it continues, taken from beside the checkpoint, so --out may be a new folder.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "vae/trainer.hpp"

namespace vae {

class MetricsFile {
 public:
  static constexpr const char* kHeader = "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds,lr";

  // Nothing is written until save() or add(), so a run that fails at once leaves --out's file alone.
  explicit MetricsFile(std::filesystem::path path) : path_(std::move(path)) {}

  // For a run resumed at (first_epoch, the step at which first_epoch began): keeps the rows of
  // `history` (another run's metrics.csv, possibly absent) for the epochs before first_epoch, when
  // they belong to the checkpoint's run, i.e. the row of epoch first_epoch - 1 has that step. Rows of
  // a different run (or none) are not carried, so the file then holds only this run's epochs.
  // Returns the number of rows carried.
  int carry_history(const std::filesystem::path& history, int first_epoch, long long first_epoch_step);

  // Appends the epoch's row and rewrites the file. Throws vae::Error naming the file.
  void add(const EpochStats& stats);
  // Rewrites the file with the rows so far (when a checkpoint is written mid-epoch, so the folder's
  // history matches its checkpoint).
  void save() const;

 private:
  std::filesystem::path path_;
  std::string rows_;
};

// The test loss of `epoch`'s row in a metrics.csv written by MetricsFile (this header or an older
// one without the lr column); absent when the file, its header or the row is missing or unreadable,
// since callers only show it.
std::optional<double> read_test_loss(const std::filesystem::path& metrics_csv, int epoch);

}  // namespace vae
