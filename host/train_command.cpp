// The train command: backend choice, data, resume, the epoch loop with its report lines, and what
// goes to --out: metrics.csv, reconstruction and sample grids per epoch, checkpoint.safetensors
// (every N epochs and at the end, or on SIGINT).
#include "vae/train_command.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <atomic>
#include <csignal>
#include <filesystem>

#include "atomic_file.hpp"
#include "metrics_file.hpp"
#include "progress.hpp"
#include "vae/checkpoint.hpp"
#include "vae/cuda_backend.hpp"
#include "vae/cuda_device.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"
#include "vae/images.hpp"
#include "vae/layout.hpp"
#include "vae/reference_backend.hpp"
#include "vae/trainer.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;

// The GPU when --device says so or finds one; `why` receives the reason when auto falls back to the CPU.
std::unique_ptr<TrainingBackend> make_backend(const TrainConfig& config, const MnistData& data, std::string& why) {
  if (use_cuda(config.device, &why)) return std::make_unique<CudaBackend>(config, data.train, data.test);
  return std::make_unique<ReferenceBackend>(config);
}

std::string describe_model(const ModelConfig& m, int64_t parameters) {
  std::string hidden = fmt::format("{}", fmt::join(m.hidden, "-"));
  if (m.encoder_output > 0) hidden += fmt::format("-{}", m.encoder_output);
  std::string layers = m.batch_norm ? " BatchNorm1d," : "";
  layers += m.activation == Activation::kLeakyReLU ? fmt::format(" LeakyReLU({}),", m.negative_slope) : "";
  const std::string likelihood = m.likelihood == Likelihood::kGaussian
                                     ? fmt::format("Gaussian likelihood (Tanh, alpha {} * MSE), ", m.alpha)
                                     : "";
  return fmt::format("model {}-{}-{} ({} parameters),{} {}beta {}", m.input, hidden, m.latent, parameters, layers,
                     likelihood, m.beta);
}

// The checkpoint's model, seed, batch and optimiser are the run's; a flag given explicitly with
// another value is a mistake worth stopping for rather than silently overriding.
TrainConfig resumed_config(const TrainConfig& flags, const Checkpoint& checkpoint,
                           const std::vector<std::string>& explicit_flags) {
  const TrainConfig& saved = checkpoint.config;
  auto differs = [&](const std::string& flag) {
    if (flag == "--batch") return flags.batch != saved.batch;
    if (flag == "--lr") return flags.adam.lr != saved.adam.lr;
    if (flag == "--hidden") return flags.model.hidden != saved.model.hidden;
    if (flag == "--latent") return flags.model.latent != saved.model.latent;
    if (flag == "--beta") return flags.model.beta != saved.model.beta;
    if (flag == "--seed") return flags.seed != saved.seed;
    if (flag == "--activation") return flags.model.activation != saved.model.activation;
    if (flag == "--negative-slope") return flags.model.negative_slope != saved.model.negative_slope;
    if (flag == "--batch-norm") return flags.model.batch_norm != saved.model.batch_norm;
    if (flag == "--encoder-output") return flags.model.encoder_output != saved.model.encoder_output;
    if (flag == "--likelihood") return flags.model.likelihood != saved.model.likelihood;
    if (flag == "--alpha") return flags.model.alpha != saved.model.alpha;
    if (flag == "--lr-schedule") return flags.lr_schedule != saved.lr_schedule;
    if (flag == "--plateau-factor") return flags.plateau.factor != saved.plateau.factor;
    if (flag == "--plateau-patience") return flags.plateau.patience != saved.plateau.patience;
    if (flag == "--plateau-threshold") return flags.plateau.threshold != saved.plateau.threshold;
    if (flag == "--plateau-cooldown") return flags.plateau.cooldown != saved.plateau.cooldown;
    if (flag == "--min-lr") return flags.plateau.min_lr != saved.plateau.min_lr;
    if (flag == "--weight-decay") return flags.adam.weight_decay != saved.adam.weight_decay;
    return flags.adam.decoupled != saved.adam.decoupled;  // --adamw
  };
  for (const std::string& flag : explicit_flags)
    if (differs(flag))
      throw UsageError(fmt::format("{} differs from the checkpoint {}; drop it to resume with the checkpoint's value",
                                   flag, flags.resume_from));
  TrainConfig run = flags;
  run.model = saved.model;
  run.seed = saved.seed;
  run.batch = saved.batch;
  run.adam = saved.adam;
  run.lr_schedule = saved.lr_schedule;
  run.plateau = saved.plateau;
  return run;
}

// Where a resumed run starts. On the data the checkpoint records: its position, exactly. On other
// data: an error naming both and what differs, or, with --allow-data-change and images of the same
// shape, the start of the interrupted epoch, since a position inside an epoch of other data means
// nothing. A version-1 checkpoint records no data: it resumes with a note that says so.
DataPosition resume_position(const Checkpoint& checkpoint, const DataIdentity& found, const TrainConfig& flags) {
  const DataPosition& at = checkpoint.position;
  const DataPosition fresh{at.epoch, 0, 0, 0};
  const std::string& file = flags.resume_from;
  if (!checkpoint.data) {
    fmt::print("note: {} is a version-1 checkpoint, which does not record its training data: whether {} holds it "
               "is not checked\n",
               file, flags.data_dir);
    if (flags.allow_data_change) {
      fmt::print("--allow-data-change: epoch {} starts afresh on {}\n", at.epoch, flags.data_dir);
      return fresh;
    }
    const int64_t batches = (found.count + checkpoint.config.batch - 1) / checkpoint.config.batch;
    if (at.batch >= batches)
      throw Error(fmt::format("{}: stands at batch {} of epoch {}, past the end of an epoch of {} batches of the {} "
                              "training images in {}: other data; add --allow-data-change to start epoch {} afresh",
                              file, at.batch, at.epoch, batches, found.count, flags.data_dir, at.epoch));
    return at;
  }
  const std::string change = describe_data_change(*checkpoint.data, found);
  if (change.empty()) return at;
  const DataIdentity& recorded = *checkpoint.data;
  if (!flags.allow_data_change)
    throw Error(fmt::format("{}: was trained on other data than {} ({}); resume on its own data, or add "
                            "--allow-data-change to train on these images from the start of epoch {}",
                            file, flags.data_dir, change, at.epoch));
  if (recorded.rows != found.rows || recorded.cols != found.cols)
    throw Error(fmt::format("{}: its model was trained on {}x{} images, {} holds {}x{}; --allow-data-change takes "
                            "other images of the same shape only",
                            file, recorded.rows, recorded.cols, flags.data_dir, found.rows, found.cols));
  fmt::print("data changed since {} ({}); --allow-data-change: epoch {} starts afresh on {}\n", file, change,
             at.epoch, flags.data_dir);
  return fresh;
}

// The end of the one line a non-finite loss gets: which checkpoint the user can go back to.
std::string checkpoint_left(const fs::path& checkpoint_path, const std::string& resumed_from) {
  std::error_code ec;
  if (fs::exists(checkpoint_path, ec))
    return fmt::format("the last checkpoint, {}, is left as it was", checkpoint_path.string());
  if (!resumed_from.empty()) return fmt::format("no checkpoint was written; {} is left as it was", resumed_from);
  return "no checkpoint was written";
}

// SIGINT asks the loop to stop after the current step; a second one ends the process at once.
std::atomic<bool> g_stop_requested{false};

extern "C" void on_interrupt(int) {
  g_stop_requested.store(true);
  std::signal(SIGINT, SIG_DFL);
}

class InterruptGuard {
 public:
  InterruptGuard() {
    g_stop_requested.store(false);
    previous_ = std::signal(SIGINT, on_interrupt);
  }
  ~InterruptGuard() { std::signal(SIGINT, previous_); }

 private:
  void (*previous_)(int) = SIG_DFL;
};

}  // namespace

int run_train(const TrainConfig& flags, const std::vector<std::string>& explicit_model_flags) {
  const MnistData data = load_mnist_dir(flags.data_dir);
  TrainConfig run = flags;
  Checkpoint resume_from;
  if (!flags.resume_from.empty()) {
    resume_from = read_checkpoint(flags.resume_from);
    run = resumed_config(flags, resume_from, explicit_model_flags);
  }
  if (run.model.input != data.train.image_size()) {
    if (!flags.resume_from.empty())
      throw Error(fmt::format("{}: the model reads {} pixels, the images in {} have {}", flags.resume_from,
                              run.model.input, flags.data_dir, data.train.image_size()));
    run.model.input = data.train.image_size();
  }

  std::string why;
  Trainer trainer(run, data.train, data.test, make_backend(run, data, why));
  InterruptGuard interrupts;  // from here on Ctrl-C means "checkpoint and stop"
  trainer.set_stop_request([] { return g_stop_requested.load(); });
  fmt::print("device: {}{}\n", trainer.backend().describe(), why);
  fmt::print("data: {} ({} training, {} test images of {}x{})\n", flags.data_dir, data.train.count, data.test.count,
             data.train.rows, data.train.cols);
  const std::string decay = run.adam.weight_decay == 0.0 ? std::string()
                            : fmt::format(" weight decay {}{}", run.adam.weight_decay, run.adam.decoupled ? " (AdamW)" : "");
  const std::string schedule =
      run.lr_schedule == LrSchedule::kConstant
          ? ""
          : fmt::format(" (ReduceLROnPlateau on the test loss: factor {}, patience {})", run.plateau.factor,
                        run.plateau.patience);
  fmt::print("{}, batch {}, Adam lr {}{}{}, seed {}\n",
             describe_model(run.model, make_layout(run.model).parameter_count()), run.batch, run.adam.lr, schedule,
             decay, run.seed);
  const DataPosition recorded = resume_from.position;  // where the checkpoint's metrics history ends
  if (!flags.resume_from.empty()) {
    resume_from.position = resume_position(resume_from, trainer.data_identity(), flags);
    trainer.resume(resume_from);
    fmt::print("resumed: {} at epoch {}, batch {} (step {})\n", flags.resume_from, resume_from.position.epoch,
               resume_from.position.batch, resume_from.state.step);
  }

  create_folders(run.out_dir);  // before training, so a bad --out costs no time
  const fs::path checkpoint_path = fs::path(run.out_dir) / "checkpoint.safetensors";
  MetricsFile metrics(fs::path(run.out_dir) / "metrics.csv");
  if (!flags.resume_from.empty())
    metrics.carry_history(fs::path(flags.resume_from).parent_path() / "metrics.csv", recorded.epoch,
                          resume_from.state.step - recorded.batch);
  ProgressBar bar(run.progress);
  std::fflush(stdout);  // the header lines reach a pipe or log before training starts

  if (trainer.epoch() >= run.epochs) {
    fmt::print("nothing to do: {} epochs are trained already (--epochs {})\n", trainer.epoch(), run.epochs);
    return 0;
  }
  while (trainer.epoch() < run.epochs) {
    const std::string label = fmt::format("epoch {:>3}/{}", trainer.epoch() + 1, run.epochs);
    EpochStats s;
    try {
      s = trainer.train_epoch([&](int done, int total, double loss) { bar.update(label, done, total, loss); });
    } catch (const NonFiniteLoss& e) {
      bar.clear();
      throw Error(fmt::format("{}; {}", e.what(), checkpoint_left(checkpoint_path, flags.resume_from)));
    }
    bar.clear();
    if (s.interrupted) {
      write_checkpoint(checkpoint_path, trainer.checkpoint());
      metrics.save();  // the folder's history then matches its checkpoint, for the next --resume
      fmt::print("interrupted after step {} (epoch {}); checkpoint written to {}; continue with --resume {}\n", s.step,
                 s.epoch, checkpoint_path.string(), checkpoint_path.string());
      return 0;
    }
    const std::string lr = run.lr_schedule == LrSchedule::kConstant ? "" : fmt::format("  lr {:.3g}", s.lr);
    fmt::print("{}  train {:8.3f}  test {:8.3f}  recon {:8.3f}  kl {:7.3f}  active {:>2}/{}  {:9.0f} img/s  {:6.2f} s{}\n",
               label, s.train_loss, s.test_loss, s.train_reconstruction, s.train_kl, s.active_units, run.model.latent,
               s.images_per_second, s.seconds, lr);
    std::fflush(stdout);
    metrics.add(s);
    const TrainingState state = trainer.backend().state();
    write_epoch_images(run.out_dir, s.epoch, run.model, state.params, data.test, run.seed, state.running_stats);
    const bool last = trainer.epoch() == run.epochs;
    if (last || (run.checkpoint_every > 0 && trainer.epoch() % run.checkpoint_every == 0))
      write_checkpoint(checkpoint_path, trainer.checkpoint());
  }
  fmt::print("checkpoint: {}\n", checkpoint_path.string());
  return 0;
}

}  // namespace vae
