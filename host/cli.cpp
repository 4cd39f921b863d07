// vae_cuda's flags, on CLI11. A bad flag or value prints one error line and the usage to stderr
// and exits 2, as DESIGN.md asks of every usage error.
#include "vae/cli.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <map>

#include "vae/error.hpp"
#include "vae/version.hpp"

namespace vae {

std::vector<int> parse_widths(const std::string& text) {
  std::vector<int> widths;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    int width = 0;
    const char* first = text.data() + start;
    const char* last = text.data() + comma;
    const auto [end, err] = std::from_chars(first, last, width);
    if (first == last || err != std::errc() || end != last || width < 1)
      throw UsageError(fmt::format("--hidden: '{}' is not a comma-separated list of positive widths", text));
    widths.push_back(width);
    start = comma + 1;
  }
  return widths;
}

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine result;
  TrainConfig& c = result.config;
  CLI::App app{"vae_cuda: trains a variational autoencoder on MNIST-format data, every step on the GPU\n"
               "(or on the CPU reference backend where there is none).",
               "vae_cuda"};
  app.set_version_flag("--version", std::string("vae_cuda ") + kVersion);
  app.get_formatter()->column_width(28);

  std::string hidden = "400", device = "auto", precision = "fp32", data = "stream";
  app.add_option("--train", c.data_dir, "Train on the MNIST-format data in DIR (train-/t10k- IDX files, raw or .gz)")
      ->option_text("DIR")
      ->required();
  app.add_option("--epochs", c.epochs, "Passes over the training set")->capture_default_str();
  app.add_option("--batch", c.batch, "Images per step")->capture_default_str();
  app.add_option("--lr", c.adam.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--hidden", hidden, "Encoder widths, comma-separated (decoder mirrors them)")->capture_default_str();
  app.add_option("--latent", c.model.latent, "Latent dimensions")->capture_default_str();
  app.add_option("--beta", c.model.beta, "Weight of the KL term")->capture_default_str();
  app.add_option("--seed", c.seed, "Seed of every random draw (init, shuffling, noise)")->capture_default_str();
  app.add_option("--device", device, "Where to train")->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", precision, "GEMM arithmetic of the CUDA backend")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "tf32"}));
  app.add_option("--data", data, "Training images streamed from host memory, or resident on the GPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"stream", "device"}));
  bool no_graph = false;
  app.add_flag("--no-graph", no_graph, "Plain kernel launches instead of CUDA graph replay (for comparison)");
  app.add_option("--weight-decay", c.adam.weight_decay, "L2 penalty (Adam) or decoupled decay (--adamw)")
      ->capture_default_str();
  app.add_flag("--adamw", c.adam.decoupled, "Decoupled weight decay (AdamW) instead of Adam's L2 penalty");
  app.add_option("--out", c.out_dir, "Write metrics.csv here")->option_text("DIR");
  bool no_progress = false;
  app.add_flag("--no-progress", no_progress, "No progress bar, even on a terminal");

  try {
    app.parse(argc, argv);
    c.model.hidden = parse_widths(hidden);
    static const std::map<std::string, DeviceChoice> kDevices = {
        {"auto", DeviceChoice::kAuto}, {"cpu", DeviceChoice::kCpu}, {"cuda", DeviceChoice::kCuda}};
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
  } catch (const CLI::ParseError& e) {
    // Usage first, the error last, so the error is what stays in view on a terminal.
    fmt::print(stderr, "{}\nvae_cuda: {}\n", app.help(), e.what());
    result.exit_code = 2;
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}\nvae_cuda: {}\n", app.help(), e.what());
    result.exit_code = 2;
  }
  return result;
}

}  // namespace vae
