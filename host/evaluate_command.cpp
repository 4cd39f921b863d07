// run_evaluate: loads the checkpoint and the split, evaluates with a progress bar, prints the
// summary, writes the JSON (atomically) and the latent traversal PNG.
#include "vae/evaluate_command.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "atomic_file.hpp"
#include "progress.hpp"
#include "trained_model.hpp"
#include "vae/cuda_device.hpp"
#include "vae/cuda_evaluation.hpp"
#include "vae/error.hpp"
#include "vae/evaluation.hpp"
#include "vae/idx.hpp"
#include "vae/images.hpp"
#include "vae/reference_model.hpp"

namespace vae {
namespace {

using nlohmann::json;

json to_json(const EvaluateOptions& options, const ModelConfig& model, const Evaluation& ev, const std::string& device,
             double seconds) {
  std::vector<bool> active;
  for (double v : ev.mu_variance) active.push_back(v > kActiveUnitThreshold);
  std::vector<double> elbo(ev.reconstruction.size());
  for (size_t i = 0; i < elbo.size(); ++i) elbo[i] = ev.log_likelihood_constant - ev.reconstruction[i] - ev.kl[i];
  return {
      {"checkpoint", options.checkpoint},
      {"data_dir", options.data_dir},
      {"split", options.train_split ? "train" : "test"},
      {"images", ev.images},
      {"importance_samples", ev.importance_samples},
      {"seed", options.seed},
      {"device", device},
      {"likelihood", likelihood_name(model.likelihood)},
      {"beta", model.beta},
      {"log_likelihood_constant", ev.log_likelihood_constant},
      {"seconds", seconds},
      {"mean",
       {{"loss", ev.mean_reconstruction() + model.beta * ev.mean_kl()},
        {"reconstruction", ev.mean_reconstruction()},
        {"kl", ev.mean_kl()},
        {"elbo", ev.mean_elbo()},
        {"iwae", ev.mean_iwae()}}},
      {"active_units", ev.active_units()},
      {"active_unit_threshold", kActiveUnitThreshold},
      {"per_dimension", {{"kl", ev.kl_per_dim}, {"mu_variance", ev.mu_variance}, {"active", active}}},
      {"per_image", {{"reconstruction", ev.reconstruction}, {"kl", ev.kl}, {"elbo", elbo}, {"iwae", ev.iwae}}},
  };
}

void print_summary(const EvaluateOptions& options, const ModelConfig& model, const Evaluation& ev, double seconds) {
  fmt::print("{} on {} {} images, {} importance sample{} each (seed {}), {:.1f} s\n", options.checkpoint, ev.images,
             options.train_split ? "training" : "test", ev.importance_samples, ev.importance_samples == 1 ? "" : "s",
             options.seed, seconds);
  fmt::print("  loss      {:10.3f}  reconstruction + beta KL per image, as training prints it\n",
             ev.mean_reconstruction() + model.beta * ev.mean_kl());
  fmt::print("  ELBO      {:10.3f}  nats: -reconstruction {:.3f} - KL {:.3f}{}\n", ev.mean_elbo(), ev.mean_reconstruction(),
             ev.mean_kl(),
             ev.log_likelihood_constant != 0 ? fmt::format(" + constant {:.3f}", ev.log_likelihood_constant) : "");
  fmt::print("  IWAE      {:10.3f}  nats: log p(x) >= this (K = {})\n", ev.mean_iwae(), ev.importance_samples);
  fmt::print("  active units  {} of {} (variance of the posterior mean over the images > {})\n", ev.active_units(),
             ev.mu_variance.size(), kActiveUnitThreshold);
  fmt::print("  KL per dimension (nats; * active):\n");
  for (size_t j = 0; j < ev.kl_per_dim.size(); ++j)
    fmt::print("    z{:<3} {:8.4f}{}{}", j, ev.kl_per_dim[j], ev.mu_variance[j] > kActiveUnitThreshold ? "*" : " ",
               (j % 6 == 5 || j + 1 == ev.kl_per_dim.size()) ? "\n" : "");
}

// Rows of kTraversalSteps decodes: the image's posterior mean with one active dimension set to
// -3 ... 3 in turn. Returns false (writing nothing) when no dimension is active.
bool write_traversal(const EvaluateOptions& options, const TrainedModel& trained, const MnistSplit& split,
                     const Evaluation& ev) {
  const ModelConfig& model = trained.model;
  std::vector<int> active;
  for (int j = 0; j < model.latent; ++j)
    if (ev.mu_variance[j] > kActiveUnitThreshold) active.push_back(j);
  if (active.empty()) return false;
  ReferenceVae<float> vae(model, kTraversalSteps);
  const std::vector<float> image = split_images(split, options.traverse_image, 1);
  const std::vector<float> mu = encode_means(vae, 1, image.data(), trained.params, trained.running_stats);
  std::vector<float> images;
  for (int j : active) {
    std::vector<float> z;
    for (int s = 0; s < kTraversalSteps; ++s) {
      std::vector<float> point = mu;
      point[j] = -kTraversalExtent + 2 * kTraversalExtent * static_cast<float>(s) / (kTraversalSteps - 1);
      z.insert(z.end(), point.begin(), point.end());
    }
    const std::vector<float> row = decode_images(vae, kTraversalSteps, z.data(), trained.params, trained.running_stats);
    images.insert(images.end(), row.begin(), row.end());
  }
  write_png_grid(options.out_png, images, static_cast<int>(active.size()) * kTraversalSteps, split.rows, split.cols,
                 kTraversalSteps);
  return true;
}

// An output path is checked, and its folders made, before an evaluation that may take hours: the
// atomic write renames over whatever is there, so only a regular file (or nothing) may be.
void prepare_output(const std::string& flag, const std::filesystem::path& file) {
  std::error_code error;
  const auto status = std::filesystem::status(file, error);
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    throw UsageError(fmt::format("{} {}: exists and is not a regular file", flag, file.string()));
  if (file.has_parent_path()) create_folders(file.parent_path());
}

}  // namespace

void run_evaluate(const EvaluateOptions& options) {
  if (options.importance_samples < 1 || options.importance_samples > kMaxImportanceSamples)
    throw UsageError(fmt::format("--importance-samples: {} is not between 1 and {}", options.importance_samples,
                                 kMaxImportanceSamples));
  const TrainedModel trained = load_trained_model(options.checkpoint);
  const ModelConfig& model = trained.model;
  const MnistSplit split = load_mnist_split(options.data_dir, options.train_split ? SplitName::kTrain : SplitName::kTest);
  const char* split_name = options.train_split ? "training" : "test";
  check_images_fit(trained, split, options.data_dir, options.checkpoint, split_name);
  if (options.traverse_image < 0 || options.traverse_image >= split.count)
    throw UsageError(fmt::format("--traverse-image: image {} is outside the {} {} images", options.traverse_image,
                                 split.count, split_name));

  if (!options.json_file.empty()) prepare_output("--json", options.json_file);
  prepare_output("--out", options.out_png);

  std::string why;
  const std::unique_ptr<EvaluationBackend> backend =
      use_cuda(options.device, &why)
          ? std::unique_ptr<EvaluationBackend>(
                std::make_unique<CudaEvaluation>(model, trained.params, trained.running_stats, split))
          : std::make_unique<ReferenceEvaluation>(model, trained.params, trained.running_stats, split);
  fmt::print("device: {}{}\n", backend->describe(), why);
  std::fflush(stdout);  // the line reaches a pipe or log before an evaluation that may take hours

  ProgressBar bar(options.progress);
  const auto start = std::chrono::steady_clock::now();
  const Evaluation ev = evaluate_model(model, *backend, split, options.importance_samples, options.seed,
                                       [&](int64_t done, int64_t total) {
                                         bar.update("evaluate", static_cast<int>(done), static_cast<int>(total));
                                       });
  bar.clear();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (const int64_t bad = ev.first_non_finite(); bad >= 0)
    throw Error(fmt::format("{}: {} image {} gives a non-finite bound or ELBO (the weights overflow); nothing written",
                            options.checkpoint, split_name, bad));

  print_summary(options, model, ev, seconds);
  if (!options.json_file.empty()) {
    const std::string text = to_json(options, model, ev, backend->describe(), seconds).dump(1) + "\n";
    replace_file_atomically(options.json_file, {{text.data(), text.size()}});
    fmt::print("wrote {}\n", options.json_file);
  }
  if (write_traversal(options, trained, split, ev))
    fmt::print("wrote {} (rows: the active dimensions, each from -3 to 3 around {} image {}'s mean)\n", options.out_png,
               split_name, options.traverse_image);
  else
    fmt::print("no latent traversal: no dimension is active\n");
}

}  // namespace vae
