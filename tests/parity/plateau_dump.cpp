// plateau_dump: runs vae::ReduceLROnPlateau over a metric sequence given on the command line and
// prints, after each step, the lr and the state (best, num_bad_epochs, cooldown_counter, last_epoch)
// at full precision, for tests/parity/plateau_parity.py to hold against PyTorch's scheduler.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "vae/error.hpp"
#include "vae/lr_scheduler.hpp"

namespace {

// strtod over the whole text: exact for Python's repr of a float, and takes nan and inf. (CLI11
// converts through long double, which can round twice.)
double to_double(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE) throw vae::UsageError(fmt::format("'{}' is not a double", text));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Prints vae::ReduceLROnPlateau's lr and state after each metric"};
  std::string lr = "0.001", factor = "0.1", threshold = "1e-4", min_lr = "0", eps = "1e-8";
  vae::PlateauHyper hyper;
  int restore_at = -1;
  std::vector<std::string> metrics;
  app.add_option("--lr", lr, "Initial learning rate");
  app.add_option("--factor", factor);
  app.add_option("--patience", hyper.patience);
  app.add_option("--threshold", threshold);
  app.add_option("--cooldown", hyper.cooldown);
  app.add_option("--min-lr", min_lr);
  app.add_option("--eps", eps);
  app.add_option("--restore-at", restore_at, "After this many steps, continue on a scheduler rebuilt from state()");
  app.add_option("metrics", metrics, "The metric of each epoch (nan, inf allowed)")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    hyper.factor = to_double(factor);
    hyper.threshold = to_double(threshold);
    hyper.min_lr = to_double(min_lr);
    hyper.eps = to_double(eps);
    vae::ReduceLROnPlateau scheduler(hyper, to_double(lr));
    for (size_t i = 0; i < metrics.size(); ++i) {
      if (static_cast<int>(i) == restore_at) {
        const vae::PlateauState saved = scheduler.state();
        scheduler = vae::ReduceLROnPlateau(hyper, saved);
      }
      const double next_lr = scheduler.step(to_double(metrics[i]));
      const vae::PlateauState& s = scheduler.state();
      fmt::print("{:.17g} {:.17g} {} {} {}\n", next_lr, s.best, s.num_bad_epochs, s.cooldown_counter, s.last_epoch);
    }
  } catch (const vae::Error& e) {
    fmt::print(stderr, "plateau_dump: {}\n", e.what());
    return 2;
  }
  return 0;
}
