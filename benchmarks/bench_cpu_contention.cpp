// CPU training throughput on a quiet machine and beside one competing busy process, in one run, with
// the ratio. A trainer must not collapse when the machine is shared (on 2 cores libgomp's default
// spinning at barriers once left a seventh of the quiet speed; omp_wait_policy.hpp is the fix, and
// OMP_WAIT_POLICY=active in the environment measures the engine without it).
// The busy process is a child spinning on one core for the loaded epochs only. Prints figures; it
// decides nothing.
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "epoch_timing.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/omp_wait_policy.hpp"
#include "vae/reference_backend.hpp"
#include "vae/trainer.hpp"

namespace {

// Training images per second, the best of `epochs` epochs of a fresh trainer.
double training_throughput(const vae::MnistSplit& train, const vae::MnistSplit& test, int epochs) {
  const vae::TrainConfig config;
  vae::Trainer trainer(config, train, test, std::make_unique<vae::ReferenceBackend>(config));
  double best = 0;
  for (int e = 0; e < epochs; ++e) best = std::max(best, trainer.train_epoch().images_per_second);
  return best;
}

// A child process that spins until killed: the competing busy process.
class BusyProcess {
 public:
  BusyProcess() : pid_(fork()) {
    if (pid_ < 0) throw vae::Error("bench_cpu_contention: fork failed");
    if (pid_ == 0) {
      volatile bool spin = true;  // each read is a side effect: the loop stays
      while (spin) {
      }
    }
  }
  ~BusyProcess() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  BusyProcess(const BusyProcess&) = delete;
  BusyProcess& operator=(const BusyProcess&) = delete;

 private:
  pid_t pid_;
};

}  // namespace

int main(int argc, char** argv) {
  vae::prefer_passive_omp_waits(argv);
  std::string data_dir = "data/fashion-mnist";
  int64_t images = 19200;
  int epochs = 2;
  CLI::App app{"bench_cpu_contention: CPU training throughput, quiet and beside a busy process"};
  app.add_option("--data", data_dir, "MNIST-format data")->capture_default_str();
  app.add_option("--images", images, "Training images per epoch")->capture_default_str()->check(CLI::Range(128, 60000));
  app.add_option("--epochs", epochs, "Epochs per case (the best counts)")->capture_default_str()->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  try {
    const vae::MnistData data = vae::load_mnist_dir(data_dir);
    const vae::MnistSplit train = vae::bench::first_images(data.train, images),
                         test = vae::bench::first_images(data.test, 1000);
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    fmt::print("{} threads, OMP_WAIT_POLICY={}, {} images per epoch\n", omp_get_max_threads(),
               policy != nullptr ? policy : "(unset)", train.count);
    const double quiet = training_throughput(train, test, epochs);
    fmt::print("quiet:                    {:.0f} img/s\n", quiet);
    double loaded = 0;
    {
      const BusyProcess busy;
      loaded = training_throughput(train, test, epochs);
    }
    fmt::print("beside one busy process:  {:.0f} img/s\n", loaded);
    fmt::print("ratio loaded / quiet:     {:.2f}\n", loaded / quiet);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_cpu_contention: {}\n", e.what());
    return 1;
  }
}
