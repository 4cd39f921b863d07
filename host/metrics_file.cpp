// MetricsFile: the rows of the run so far, carried over from a resumed run's metrics.csv when they
// agree with its checkpoint.
#include "metrics_file.hpp"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "atomic_file.hpp"

namespace vae {

int MetricsFile::carry_history(const std::filesystem::path& history, int first_epoch, long long first_epoch_step) {
  std::ifstream in(history);
  std::string line, carried;
  if (first_epoch <= 1 || !std::getline(in, line) || line != kHeader) return 0;
  // Epochs 1 .. first_epoch - 1 in order, steps rising, ending where the checkpoint's epoch began:
  // anything else is another run's history (or a damaged one), and none of it is carried.
  int last_epoch = 0;
  long long last_step = 0;
  while (std::getline(in, line)) {
    int epoch = 0;
    long long step = 0;
    char comma = 0;
    if (!(std::istringstream(line) >> epoch >> comma >> step) || comma != ',') return 0;
    if (epoch >= first_epoch) continue;  // epochs the resumed run trains again
    if (epoch != last_epoch + 1 || step <= last_step) return 0;
    carried += line + "\n";
    last_epoch = epoch;
    last_step = step;
  }
  if (last_epoch != first_epoch - 1 || last_step != first_epoch_step) return 0;
  rows_ = carried;
  return last_epoch;
}

void MetricsFile::add(const EpochStats& s) {
  rows_ += fmt::format("{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.1f},{:.3f},{}\n", s.epoch, s.step, s.train_loss,
                       s.train_reconstruction, s.train_kl, s.test_loss, s.images_per_second, s.seconds, s.lr);
  save();
}

void MetricsFile::save() const {
  const std::string text = std::string(kHeader) + "\n" + rows_;
  replace_file_atomically(path_, {{text.data(), text.size()}});
}

std::optional<double> read_test_loss(const std::filesystem::path& metrics_csv, int epoch) {
  std::ifstream in(metrics_csv);
  std::string line;
  const std::string columns_up_to_test_loss = "epoch,step,train_loss,reconstruction,kl,test_loss";
  if (!std::getline(in, line) || line.rfind(columns_up_to_test_loss, 0) != 0) return std::nullopt;
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string field;
    std::vector<std::string> fields;
    while (std::getline(row, field, ',')) fields.push_back(field);
    if (fields.size() < 6 || fields[0] != std::to_string(epoch)) continue;
    try {
      size_t used = 0;
      const double loss = std::stod(fields[5], &used);
      if (used == fields[5].size() && std::isfinite(loss)) return loss;
    } catch (const std::exception&) {
    }
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace vae
