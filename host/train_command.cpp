// The train command: device choice, data, the epoch loop and its report lines and metrics.csv.
#include "vae/train_command.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "progress.hpp"
#include "vae/cuda_backend.hpp"
#include "vae/cuda_device.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/layout.hpp"
#include "vae/reference_backend.hpp"
#include "vae/trainer.hpp"

namespace vae {
namespace {

// --device auto takes the GPU when the CUDA runtime finds one; --device cuda insists on it. `why`
// receives the reason when auto falls back to the CPU, for the one line that says so.
std::unique_ptr<TrainingBackend> make_backend(const TrainConfig& config, const MnistData& data, std::string& why) {
  const CudaDevices devices = query_cuda_devices();
  if (config.device == DeviceChoice::kCuda && devices.count == 0)
    throw Error(fmt::format("--device cuda: no CUDA device available ({})", devices.why_none));
  const bool gpu = config.device == DeviceChoice::kCuda || (config.device == DeviceChoice::kAuto && devices.count > 0);
  if (gpu) return std::make_unique<CudaBackend>(config, data.train, data.test);
  if (config.device == DeviceChoice::kAuto) why = fmt::format(" (no CUDA device: {})", devices.why_none);
  return std::make_unique<ReferenceBackend>(config);
}

std::string describe_model(const ModelConfig& m, int64_t parameters) {
  return fmt::format("model {}-{}-{} ({} parameters), beta {}", m.input, fmt::join(m.hidden, "-"), m.latent,
                     parameters, m.beta);
}

// metrics.csv is rewritten whole after every epoch through a temporary file and a rename, so a
// crash never leaves a torn file behind.
class MetricsFile {
 public:
  explicit MetricsFile(const std::string& out_dir) {
    if (out_dir.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    if (ec) throw Error(fmt::format("--out {}: cannot create directory: {}", out_dir, ec.message()));
    path_ = std::filesystem::path(out_dir) / "metrics.csv";
    text_ = "epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds\n";
  }
  void add(const EpochStats& s) {
    if (path_.empty()) return;
    text_ += fmt::format("{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.1f},{:.3f}\n", s.epoch, s.step, s.train_loss,
                         s.train_bce, s.train_kl, s.test_loss, s.images_per_second, s.seconds);
    const auto temp = std::filesystem::path(path_.string() + ".tmp");
    {
      std::ofstream file(temp, std::ios::binary | std::ios::trunc);
      file << text_;
      file.flush();
      if (!file) throw Error(fmt::format("{}: cannot write", temp.string()));
    }
    std::error_code ec;
    std::filesystem::rename(temp, path_, ec);
    if (ec) throw Error(fmt::format("{}: cannot replace: {}", path_.string(), ec.message()));
  }

 private:
  std::filesystem::path path_;
  std::string text_;
};

}  // namespace

int run_train(const TrainConfig& config) {
  const MnistData data = load_mnist_dir(config.data_dir);
  TrainConfig run = config;
  run.model.input = data.train.image_size();
  std::string why;
  Trainer trainer(run, data.train, data.test, make_backend(run, data, why));
  fmt::print("device: {}{}\n", trainer.backend().describe(), why);
  fmt::print("data: {} ({} training, {} test images of {}x{})\n", config.data_dir, data.train.count, data.test.count,
             data.train.rows, data.train.cols);
  const std::string decay = run.adam.weight_decay == 0.0 ? std::string()
                            : fmt::format(" weight decay {}{}", run.adam.weight_decay, run.adam.decoupled ? " (AdamW)" : "");
  fmt::print("{}, batch {}, Adam lr {}{}, seed {}\n", describe_model(run.model, make_layout(run.model).parameter_count()),
             run.batch, run.adam.lr, decay, run.seed);

  MetricsFile metrics(run.out_dir);
  ProgressBar bar(run.progress);
  for (int e = 1; e <= run.epochs; ++e) {
    const std::string label = fmt::format("epoch {:>3}/{}", e, run.epochs);
    const EpochStats s =
        trainer.train_epoch([&](int done, int total, double loss) { bar.update(label, done, total, loss); });
    bar.clear();
    fmt::print("{}  train {:8.3f}  test {:8.3f}  recon {:8.3f}  kl {:7.3f}  {:9.0f} img/s  {:6.2f} s\n", label,
               s.train_loss, s.test_loss, s.train_bce, s.train_kl, s.images_per_second, s.seconds);
    std::fflush(stdout);
    metrics.add(s);
  }
  return 0;
}

}  // namespace vae
