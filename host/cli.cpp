// vae_cuda's flags, on CLI11. A bad flag or value prints one error line to stderr, with a pointer
// to --help rather than the whole usage, and exits 2, as DESIGN.md asks of every usage error.
// Numbers are taken as text and converted by flag_values.hpp, exactly and range-checked. Settings may
// also come from a TOML file (--config, config_file.hpp); the command itself stays on the command line.
#include "vae/cli.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <map>

#include "config_file.hpp"
#include "vae/error.hpp"
#include "vae/presets.hpp"
#include "vae/version.hpp"

namespace vae {
namespace {

std::string preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : presets()) names.push_back(p.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

// A preset's flags, each one only where neither the command line nor --config set it: given the
// value as if typed, so it meets the same conversion and checks.
void apply_preset(CLI::App& app, const Preset& preset) {
  for (const auto& [flag, value] : preset.flags) {
    CLI::Option* option = app.get_option(flag);
    if (option->count() > 0) continue;
    option->add_result(*value ? value : "true");
    option->run_callback();
  }
}

// The flags that only training reads.
constexpr std::initializer_list<const char*> kTrainingFlags = {
    "--checkpoint-every", "--epochs", "--batch", "--lr", "--lr-schedule", "--plateau-factor", "--plateau-patience",
    "--plateau-threshold", "--plateau-cooldown", "--min-lr", "--hidden", "--latent", "--beta", "--activation",
    "--negative-slope", "--batch-norm", "--encoder-output", "--likelihood", "--alpha", "--precision",
    "--data", "--no-graph", "--weight-decay", "--adamw", "--resume", "--allow-data-change", "--preset"};

// "--flag goes with COMMAND" for the first of `flags` given. With leave_config_values, a --config
// file's are not counted: training settings, which one file may hold for every command.
void refuse_flags_of(const CLI::App& app, const ConfigFile& config, std::initializer_list<const char*> flags,
                     const char* command, bool leave_config_values) {
  for (const char* flag : flags)
    if (app.count(flag) > 0 && !(leave_config_values && config.origin(flag)))
      throw UsageError(fmt::format("{} goes with {}", flag, command));
}

// One line, as the README promises: the usage text is 35 lines and would push the error out of view.
void usage_error(const std::string& what) { fmt::print(stderr, "vae_cuda: {} (see --help)\n", what); }

// A message that starts with a flag ("--flag: ..." or "--flag goes with ...") about a value that came
// from --config's file says where it was written.
std::string with_origin(std::string what, const ConfigFile& config) {
  const size_t end = what.find_first_of(": ");
  if (what.rfind("--", 0) == 0 && end != std::string::npos)
    if (const auto origin = config.origin(what.substr(0, end))) what += fmt::format(" (from {})", *origin);
  return what;
}

}  // namespace

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine result;
  TrainConfig& c = result.config;
  CLI::App app{"vae_cuda: trains a variational autoencoder on MNIST-format data, every step on the GPU\n"
               "(or on the CPU reference backend where there is none).",
               "vae_cuda"};
  app.set_version_flag("--version", std::string("vae_cuda ") + kVersion);
  app.get_formatter()->column_width(28);

  std::string hidden = "400", device = "auto", precision = "fp32", data = "stream";
  auto* train = app.add_option("--train", c.data_dir,
                                "Train on the MNIST-format data in DIR (train-/t10k- IDX files, raw or .gz)")
                    ->option_text("DIR");
  auto* sample = app.add_option("--sample", result.checkpoint, "Write a grid of samples from the prior of CKPT")
                     ->option_text("CKPT");
  auto* interpolate =
      app.add_option("--interpolate", result.checkpoint, "Decode along the line between the latent means of two test images")
          ->option_text("CKPT");
  auto* latent_map =
      app.add_option("--latent-map", result.checkpoint, "Decode a grid over the latent plane (latent 2 only)")
          ->option_text("CKPT");
  auto* serve = app.add_option("--serve", result.serve.checkpoints,
                               "Serve the playground (draw, reconstruct, interpolate, explore) for these checkpoints")
                    ->option_text("CKPT...")
                    ->expected(1, -1);
  std::string port = fmt::format("{}", result.serve.port);
  auto* host_option = app.add_option("--host", result.serve.host, "--serve: the address to listen on (loopback: only this machine)")
                          ->capture_default_str();
  auto* port_option = app.add_option("--port", port, "--serve: the port (0: any free one)")->type_name("INT")->capture_default_str();
  auto* evaluate = app.add_option("--evaluate", result.evaluate.checkpoint,
                                  "ELBO, importance-weighted bound, KL per dimension and active units of CKPT on --data-dir")
                       ->option_text("CKPT");
  std::string importance_samples = fmt::format("{}", result.evaluate.importance_samples), split = "test",
              traverse_image = fmt::format("{}", result.evaluate.traverse_image);
  app.add_option("--importance-samples", importance_samples,
                 fmt::format("--evaluate: samples K of the importance-weighted bound (1 to {})",
                             limits::kImportanceSamples.max))
      ->type_name("INT")
      ->capture_default_str();
  app.add_option("--split", split, "--evaluate: the images to evaluate on")
      ->capture_default_str()
      ->check(CLI::IsMember({"test", "train"}));
  auto* json_option =
      app.add_option("--json", result.evaluate.json_file, "--evaluate: write every figure to this JSON file")->option_text("FILE");
  app.add_option("--traverse-image", traverse_image, "--evaluate: the image whose latent mean the traversal PNG varies")
      ->type_name("INT")
      ->capture_default_str();
  std::string pair, interpolate_z = "mean";
  auto* pair_option = app.add_option("--pair", pair, "Test images I,J for --interpolate")->option_text("I,J");
  app.add_option("--interpolate-z", interpolate_z,
                 "The ends of --interpolate: the posterior means, or one draw from each posterior (--seed)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "sampled"}));
  auto* data_option = app.add_option("--data-dir", c.data_dir,
                                     "MNIST-format data: --interpolate's test images, --evaluate's images, or --serve's "
                                     "to pick from")
                          ->option_text("DIR");
  auto* resume = app.add_option("--resume", c.resume_from, "Continue training from this checkpoint")->option_text("CKPT");
  app.add_flag("--allow-data-change", c.allow_data_change,
               "With --resume: train on other images of the same shape, from the start of the checkpoint's epoch");
  // Numbers bind to text, shown in --help with their defaults and types; flag_values converts them.
  std::string checkpoint_every = fmt::format("{}", c.checkpoint_every), epochs = fmt::format("{}", c.epochs),
              batch = fmt::format("{}", c.batch), lr = fmt::format("{}", c.adam.lr),
              latent = fmt::format("{}", c.model.latent), beta = fmt::format("{}", c.model.beta),
              seed = fmt::format("{}", c.seed), weight_decay = fmt::format("{}", c.adam.weight_decay);
  auto number = [&app](const char* flag, std::string& text, const char* type, const char* help) {
    app.add_option(flag, text, help)->type_name(type)->capture_default_str();
  };
  number("--checkpoint-every", checkpoint_every, "INT", "Epochs between checkpoints (0: only the final one)");
  number("--epochs", epochs, "INT", "Passes over the training set");
  number("--batch", batch, "INT", "Images per step");
  number("--lr", lr, "FLOAT", "Adam learning rate (the initial one under a schedule)");
  std::string lr_schedule = "constant", plateau_factor = fmt::format("{}", c.plateau.factor),
              plateau_patience = fmt::format("{}", c.plateau.patience),
              plateau_threshold = fmt::format("{}", c.plateau.threshold),
              plateau_cooldown = fmt::format("{}", c.plateau.cooldown), min_lr = fmt::format("{}", c.plateau.min_lr);
  app.add_option("--lr-schedule", lr_schedule,
                 "constant, or plateau: ReduceLROnPlateau on the test loss after each epoch (PyTorch's semantics)")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "plateau"}));
  number("--plateau-factor", plateau_factor, "FLOAT", "plateau: lr *= factor on a reduction, in (0, 1)");
  number("--plateau-patience", plateau_patience, "INT", "plateau: epochs without improvement before a reduction");
  number("--plateau-threshold", plateau_threshold, "FLOAT", "plateau: relative improvement that counts, in [0, 1)");
  number("--plateau-cooldown", plateau_cooldown, "INT", "plateau: epochs after a reduction that are not counted");
  number("--min-lr", min_lr, "FLOAT", "plateau: the learning rate's floor");
  app.add_option("--hidden", hidden, "Encoder widths, comma-separated (decoder mirrors them)")
      ->type_name("INT,...")
      ->capture_default_str();
  number("--latent", latent, "INT", "Latent dimensions");
  number("--beta", beta, "FLOAT", "Weight of the KL term");
  std::string activation = activation_name(c.model.activation), likelihood = likelihood_name(c.model.likelihood),
              negative_slope = fmt::format("{}", c.model.negative_slope), alpha = fmt::format("{}", c.model.alpha),
              encoder_output = fmt::format("{}", c.model.encoder_output);
  app.add_option("--activation", activation, "After each hidden layer (and its BatchNorm)")
      ->capture_default_str()
      ->check(CLI::IsMember({"relu", "leaky_relu"}));
  number("--negative-slope", negative_slope, "FLOAT", "LeakyReLU's slope for negative inputs, 0 to 1");
  app.add_flag("--batch-norm", c.model.batch_norm, "BatchNorm1d after each hidden layer's linear part");
  number("--encoder-output", encoder_output, "INT",
         "End the encoder with a linear layer of this width and no activation, read by the head (0: none)");
  app.add_option("--likelihood", likelihood,
                 "bernoulli: BCE on x/255, summed over the batch; gaussian: Tanh output, alpha * MSE on [-1, 1] "
                 "data, averaged over the batch")
      ->capture_default_str()
      ->check(CLI::IsMember({"bernoulli", "gaussian"}));
  number("--alpha", alpha, "FLOAT", "Weight of the Gaussian likelihood's mean squared error per image");
  number("--seed", seed, "UINT", "Seed of every random draw (init, shuffling, noise)");
  app.add_option("--device", device, "Where to train or evaluate")->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", precision, "GEMM arithmetic of the CUDA backend")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "tf32"}));
  app.add_option("--data", data, "Training images streamed from host memory, or resident on the GPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"stream", "device"}));
  bool no_graph = false;
  app.add_flag("--no-graph", no_graph, "Plain kernel launches instead of CUDA graph replay (for comparison)");
  number("--weight-decay", weight_decay, "FLOAT", "L2 penalty (Adam) or decoupled decay (--adamw)");
  app.add_flag("--adamw", c.adam.decoupled, "Decoupled weight decay (AdamW) instead of Adam's L2 penalty");
  app.add_option("--out", c.out_dir, "Metrics, images and checkpoints go here (images: the PNG for --sample etc.)")
      ->option_text("DIR")
      ->capture_default_str();
  bool no_progress = false;
  app.add_flag("--no-progress", no_progress, "No progress bar, even on a terminal");
  std::string preset;
  std::string preset_help = "Defaults of a named run, below --config and the command line:";
  for (const Preset& p : presets()) preset_help += fmt::format("\n  {}: {}", p.name, p.summary);
  auto* preset_option =
      app.add_option("--preset", preset, preset_help)->option_text("NAME")->check([](const std::string& name) {
        return find_preset(name) ? std::string() : fmt::format("'{}' is not a preset ({})", name, preset_names());
      });
  // What to do and on what stays on the command line; every other option may come from --config.
  for (CLI::Option* command :
       {train, sample, interpolate, latent_map, serve, evaluate, host_option, port_option, pair_option, data_option,
        resume, json_option})
    command->configurable(false);
  const auto config_file = add_config_option(app);

  try {
    app.parse(argc, argv);
    const int commands = static_cast<int>(train->count() + sample->count() + interpolate->count() +
                                          latent_map->count() + (serve->count() > 0) + evaluate->count());
    if (commands != 1)
      throw UsageError(
          "give exactly one of --train DIR, --sample CKPT, --interpolate CKPT, --latent-map CKPT, --evaluate CKPT, "
          "--serve CKPT...");
    result.command = sample->count() ? Command::kSample
                     : interpolate->count() ? Command::kInterpolate
                     : latent_map->count() ? Command::kLatentMap
                     : serve->count() ? Command::kServe
                     : evaluate->count() ? Command::kEvaluate
                                         : Command::kTrain;
    // A flag of another command than the one asked for would be ignored without a word; the
    // commands that read a checkpoint take the model from it and do not train.
    // An empty path would silently mean "none" (--json) or the current folder (--out).
    for (const char* flag :
         {"--train", "--sample", "--interpolate", "--latent-map", "--evaluate", "--data-dir", "--resume", "--json", "--out"})
      if (app.count(flag) > 0 && app.get_option(flag)->as<std::string>().empty())
        throw UsageError(fmt::format("{}: the path is empty", flag));
    const auto require = [&](Command command, const char* name, std::initializer_list<const char*> flags,
                             bool leave_config_values = false) {
      if (result.command != command) refuse_flags_of(app, *config_file, flags, name, leave_config_values);
    };
    static const std::map<std::string, DeviceChoice> kDevices = {
        {"auto", DeviceChoice::kAuto}, {"cpu", DeviceChoice::kCpu}, {"cuda", DeviceChoice::kCuda}};
    require(Command::kTrain, "--train", kTrainingFlags, true);
    require(Command::kInterpolate, "--interpolate", {"--pair", "--interpolate-z"});
    require(Command::kServe, "--serve", {"--host", "--port"});
    require(Command::kEvaluate, "--evaluate", {"--importance-samples", "--split", "--json", "--traverse-image"});
    if (result.command != Command::kTrain && result.command != Command::kEvaluate)
      refuse_flags_of(app, *config_file, {"--device"}, "--train or --evaluate", true);
    if (result.command == Command::kEvaluate) {
      if (!data_option->count()) throw UsageError("--evaluate needs --data-dir DIR (the images to evaluate on)");
      result.evaluate.data_dir = c.data_dir;
      result.evaluate.importance_samples =
          parse_integer_flag("--importance-samples", importance_samples, limits::kImportanceSamples);
      result.evaluate.train_split = split == "train";
      result.evaluate.traverse_image = parse_integer_flag("--traverse-image", traverse_image, limits::kImageIndex);
      result.evaluate.device = kDevices.at(device);
    }
    if (result.command == Command::kServe) {
      result.serve.port = parse_integer_flag("--port", port, limits::kPort);
      if (data_option->count()) result.serve.data_dir = c.data_dir;
    }
    if (result.command == Command::kInterpolate) {
      if (!pair_option->count() || !data_option->count())
        throw UsageError("--interpolate needs --pair I,J and --data-dir DIR (the test images)");
      const auto ij = parse_int_list(pair, 0);
      if (!ij || ij->size() != 2)
        throw UsageError(fmt::format("--pair: '{}' is not two image indices I,J (whole numbers from 0)", pair));
      result.pair_i = (*ij)[0];
      result.pair_j = (*ij)[1];
      result.sampled_ends = interpolate_z == "sampled";
    }
    if (c.allow_data_change && !resume->count()) throw UsageError("--allow-data-change goes with --resume");
    for (const char* flag : {"--batch", "--lr", "--hidden", "--latent", "--beta", "--seed", "--weight-decay", "--adamw",
                             "--activation", "--negative-slope", "--batch-norm", "--encoder-output", "--likelihood",
                             "--alpha", "--lr-schedule", "--plateau-factor", "--plateau-patience",
                             "--plateau-threshold", "--plateau-cooldown", "--min-lr"})
      if (app.count(flag) > 0) result.explicit_model_flags.push_back(flag);
    if (preset_option->count()) apply_preset(app, *find_preset(preset));
    c.checkpoint_every = parse_integer_flag("--checkpoint-every", checkpoint_every, limits::kCheckpointEvery);
    c.epochs = parse_integer_flag("--epochs", epochs, limits::kEpochs);
    c.batch = parse_integer_flag("--batch", batch, limits::kWidth);
    c.adam.lr = parse_real_flag("--lr", lr, limits::kLr);
    c.model.hidden = parse_widths(hidden);
    c.model.latent = parse_integer_flag("--latent", latent, limits::kWidth);
    c.model.beta = parse_float_flag("--beta", beta, limits::kBeta);
    parse_activation(activation, c.model.activation);  // the option's check admits only the names
    parse_likelihood(likelihood, c.model.likelihood);
    c.model.negative_slope = parse_float_flag("--negative-slope", negative_slope, limits::kNegativeSlope);
    c.model.encoder_output = parse_integer_flag("--encoder-output", encoder_output, limits::kEncoderOutput);
    c.model.alpha = parse_float_flag("--alpha", alpha, limits::kAlpha);
    c.seed = parse_integer_flag("--seed", seed, limits::kSeed);
    c.adam.weight_decay = parse_real_flag("--weight-decay", weight_decay, limits::kWeightDecay);
    c.lr_schedule = lr_schedule == "plateau" ? LrSchedule::kPlateau : LrSchedule::kConstant;
    c.plateau.factor = parse_real_flag("--plateau-factor", plateau_factor, limits::kPlateauFactor);
    c.plateau.patience = parse_integer_flag("--plateau-patience", plateau_patience, limits::kPlateauPatience);
    c.plateau.threshold = parse_real_flag("--plateau-threshold", plateau_threshold, limits::kPlateauThreshold);
    c.plateau.cooldown = parse_integer_flag("--plateau-cooldown", plateau_cooldown, limits::kPlateauCooldown);
    c.plateau.min_lr = parse_real_flag("--min-lr", min_lr, limits::kMinLr);
    c.device = kDevices.at(device);
    c.precision = precision == "tf32" ? Precision::kTf32 : Precision::kFp32;
    c.data = data == "device" ? DataPlacement::kResident : DataPlacement::kStreamed;
    c.cuda_graphs = !no_graph;
    c.progress = !no_progress;
    validate(c);
  } catch (const CLI::CallForHelp&) {
    fmt::print("{}", app.help());
    result.exit_code = 0;
  } catch (const CLI::CallForVersion&) {
    fmt::print("{}\n", app.version());
    result.exit_code = 0;
  } catch (const CLI::FileError&) {  // only --config reads a file while parsing
    usage_error(fmt::format("--config {}: cannot read it (no such file, not a file, or no permission)",
                            app.get_config_ptr()->results().empty() ? "" : app.get_config_ptr()->results().back()));
    result.exit_code = 2;
  } catch (const CLI::ParseError& e) {
    usage_error(with_origin(e.what(), *config_file));
    result.exit_code = 2;
  } catch (const UsageError& e) {
    usage_error(with_origin(e.what(), *config_file));
    result.exit_code = 2;
  }
  return result;
}

}  // namespace vae
