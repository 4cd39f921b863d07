// The playground's handlers: validate the request field by field, then encode or decode on the CPU
// reference model in evaluation mode (BatchNorm's running statistics), as --sample and
// --interpolate do.
#include "playground.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "metrics_file.hpp"
#include "request_fields.hpp"
#include "vae/checkpoint.hpp"
#include "vae/error.hpp"
#include "vae/images.hpp"
#include "vae/latent_interpolation.hpp"
#include "vae/mnist_style.hpp"
#include "vae/reference_model.hpp"

namespace vae {
namespace {

using nlohmann::json;

// Rows a batch decode works on at a time: its scratch stays small however many latents are asked for.
constexpr int kDecodeRows = 64;

PlaygroundModel load(const std::filesystem::path& file) {
  Checkpoint checkpoint = read_checkpoint(file);
  PlaygroundModel m;
  m.file_name = file.filename().string();
  m.epochs_trained = checkpoint.position.epoch - 1;  // batch 0 of epoch e + 1 is the end of epoch e
  m.batches_into_epoch = checkpoint.position.batch;
  if (checkpoint.plateau && std::isfinite(checkpoint.plateau->best)) m.best_test_loss = checkpoint.plateau->best;
  static_cast<TrainedModel&>(m) = trained_model(std::move(checkpoint));
  if (m.epochs_trained > 0) m.test_loss = read_test_loss(file.parent_path() / "metrics.csv", m.epochs_trained);
  return m;
}

std::string architecture(const ModelConfig& m) {
  std::string text = fmt::format("{}-{}", m.input, fmt::join(m.hidden, "-"));
  if (m.encoder_output > 0) text += fmt::format("-{}", m.encoder_output);
  text += fmt::format("-{}", m.latent);
  if (m.batch_norm) text += ", BatchNorm1d";
  text += m.activation == Activation::kLeakyReLU ? fmt::format(", LeakyReLU({})", m.negative_slope) : ", ReLU";
  text += m.likelihood == Likelihood::kGaussian ? fmt::format(", Gaussian (alpha {})", m.alpha) : ", Bernoulli";
  return text + fmt::format(", beta {}", m.beta);
}

json describe(const PlaygroundModel& m, size_t id) {
  return {{"id", id},
          {"file", m.file_name},
          {"architecture", architecture(m.model)},
          {"input", m.model.input},
          {"image_rows", m.rows},
          {"image_cols", m.cols},
          {"hidden", m.model.hidden},
          {"latent", m.model.latent},
          {"beta", m.model.beta},
          {"likelihood", likelihood_name(m.model.likelihood)},
          {"alpha", m.model.alpha},
          {"activation", activation_name(m.model.activation)},
          {"batch_norm", m.model.batch_norm},
          {"epochs_trained", m.epochs_trained},
          {"batches_into_epoch", m.batches_into_epoch},
          {"test_loss", m.test_loss ? json(*m.test_loss) : json(nullptr)},
          {"best_test_loss", m.best_test_loss ? json(*m.best_test_loss) : json(nullptr)}};
}

// What one request works with: its model and a reference model sized for `rows`.
class Session {
 public:
  Session(const PlaygroundModel& m, int rows) : m_(m), vae_(m.model, rows) {}
  std::vector<float> posteriors(int count, const std::vector<float>& x) {
    return encode_posteriors(vae_, count, x.data(), m_.params, m_.running_stats);
  }
  std::vector<float> means(int count, const std::vector<float>& x) {
    return encode_means(vae_, count, x.data(), m_.params, m_.running_stats);
  }
  std::vector<float> decode(int count, const std::vector<float>& z) {
    return decode_images(vae_, count, z.data(), m_.params, m_.running_stats);
  }

 private:
  const PlaygroundModel& m_;
  ReferenceVae<float> vae_;
};

class Handlers {
 public:
  Handlers(const std::vector<PlaygroundModel>& models, const MnistSplit& test_images)
      : models_(models), test_images_(test_images) {}

  json models() const {
    json list = json::array();
    for (size_t i = 0; i < models_.size(); ++i) list.push_back(describe(models_[i], i));
    return {{"models", list},
            {"test_images",
             {{"count", test_images_.count}, {"rows", test_images_.rows}, {"cols", test_images_.cols}}}};
  }

  json encode(const json& request) const {
    const PlaygroundModel& m = model(request);
    const std::vector<float> x = image(request, m);
    Session session(m, 1);
    const std::vector<float> mu_logvar = session.posteriors(1, x);
    return {{"mu", slice(mu_logvar, 0, m.model.latent)}, {"logvar", slice(mu_logvar, m.model.latent, m.model.latent)}};
  }

  json decode(const json& request) const {
    const PlaygroundModel& m = model(request);
    const bool one = request.contains("z"), many = request.contains("latents");
    if (one == many) throw RequestError("z, latents: give exactly one of them");
    if (one) {
      const std::vector<float> z = latent(request["z"], "z", m);
      Session session(m, 1);
      return {{"pixels", session.decode(1, z)}};
    }
    const json& rows = request["latents"];
    if (!rows.is_array() || rows.empty() || rows.size() > static_cast<size_t>(kMaxDecodeBatch))
      throw RequestError(fmt::format("latents: an array of 1 to {} latents expected", kMaxDecodeBatch));
    std::vector<float> z;
    for (size_t i = 0; i < rows.size(); ++i) {
      const std::vector<float> row = latent(rows[i], fmt::format("latents[{}]", i), m);
      z.insert(z.end(), row.begin(), row.end());
    }
    const int count = static_cast<int>(rows.size());
    Session session(m, std::min(count, kDecodeRows));
    return {{"images", rows_of(session.decode(count, z), count, m.model.input)}};
  }

  json test_image(const json& request) const {
    if (test_images_.count == 0) throw RequestError("index: no test images (start the server with --data-dir DIR)");
    const int64_t index = integer_field(required_field(request, "index"), "index", 0, test_images_.count - 1);
    const int size = test_images_.image_size();
    std::vector<float> pixels(static_cast<size_t>(size));
    for (int i = 0; i < size; ++i) pixels[i] = test_images_.pixels[index * size + i] / 255.0f;
    return {{"index", index}, {"label", test_images_.labels[index]}, {"rows", test_images_.rows},
            {"cols", test_images_.cols}, {"pixels", pixels}};
  }

  json reconstruct(const json& request) const {
    const PlaygroundModel& m = model(request);
    const std::vector<float> x = image(request, m);
    Session session(m, 1);
    const std::vector<float> mu_logvar = session.posteriors(1, x);
    const std::vector<float> mu = slice(mu_logvar, 0, m.model.latent);
    return {{"input", x}, {"mu", mu}, {"logvar", slice(mu_logvar, m.model.latent, m.model.latent)},
            {"pixels", session.decode(1, mu)}};
  }

  json interpolate(const json& request) const {
    const PlaygroundModel& m = model(request);
    const int frames = static_cast<int>(integer_field(required_field(request, "frames"), "frames", kMinFrames, kMaxFrames));
    LatentPath path = LatentPath::kLinear;
    if (request.contains("mode"))
      path = choice_field(request["mode"], "mode", {"linear", "spherical"}) == "spherical" ? LatentPath::kSpherical
                                                                                           : LatentPath::kLinear;
    const bool has_images = request.contains("images"), has_latents = request.contains("latents");
    if (has_images == has_latents) throw RequestError("images, latents: give exactly one of them");
    const std::string field = has_images ? "images" : "latents";
    const json& ends = request[field];
    if (!ends.is_array() || ends.size() != 2)
      throw RequestError(fmt::format("{}: an array of two {} expected", field, has_images ? "images" : "latents"));
    Session session(m, frames);
    std::vector<float> a, b;
    if (has_images) {
      std::vector<float> pair = image_value(ends[0], "images[0]", m);
      const std::vector<float> second = image_value(ends[1], "images[1]", m);
      pair.insert(pair.end(), second.begin(), second.end());
      const std::vector<float> mu = session.means(2, pair);
      a = slice(mu, 0, m.model.latent), b = slice(mu, m.model.latent, m.model.latent);
    } else {
      a = latent(ends[0], "latents[0]", m), b = latent(ends[1], "latents[1]", m);
    }
    const std::vector<float> z = interpolate_latents(a, b, frames, path);
    return {{"latents", rows_of(z, frames, m.model.latent)}, {"frames", rows_of(session.decode(frames, z), frames, m.model.input)}};
  }

  json sample(const json& request) const {
    const PlaygroundModel& m = model(request);
    const int count = static_cast<int>(integer_field(required_field(request, "count"), "count", 1, kMaxSamples));
    const uint64_t seed = unsigned_field(required_field(request, "seed"), "seed");
    const std::vector<float> z = sample_latents(seed, count, m.model.latent);
    Session session(m, count);
    return {{"latents", rows_of(z, count, m.model.latent)}, {"images", rows_of(session.decode(count, z), count, m.model.input)}};
  }

 private:
  const PlaygroundModel& model(const json& request) const {
    const json& id = required_field(request, "model");
    if (models_.empty()) throw RequestError("model: no models are loaded");
    return models_[static_cast<size_t>(integer_field(id, "model", 0, static_cast<int64_t>(models_.size()) - 1))];
  }

  static std::vector<float> latent(const json& value, const std::string& field, const PlaygroundModel& m) {
    return numbers_field(value, field, static_cast<size_t>(m.model.latent));
  }

  // The request's image: "pixels" or "canvas", exactly one.
  static std::vector<float> image(const json& request, const PlaygroundModel& m) {
    required_field(request, "model");  // request is an object
    const bool has_pixels = request.contains("pixels"), has_canvas = request.contains("canvas");
    if (has_pixels == has_canvas) throw RequestError("pixels, canvas: give exactly one of them");
    if (has_pixels) return numbers_field(request["pixels"], "pixels", static_cast<size_t>(m.model.input), 0.0, 1.0);
    return canvas(request["canvas"], "canvas", m);
  }

  // An image inside an array: a pixel array or a canvas object.
  static std::vector<float> image_value(const json& value, const std::string& field, const PlaygroundModel& m) {
    if (value.is_object()) return canvas(value, field, m);
    return numbers_field(value, field, static_cast<size_t>(m.model.input), 0.0, 1.0);
  }

  static std::vector<float> canvas(const json& value, const std::string& field, const PlaygroundModel& m) {
    if (!value.is_object()) throw RequestError(fmt::format("{}: an object {{width, height, pixels}} expected", field));
    const bool mnist_shaped = m.model.input == kMnistSide * kMnistSide &&
                              (m.rows == 0 || (m.rows == kMnistSide && m.cols == kMnistSide));
    if (!mnist_shaped) {
      const std::string shape = m.rows > 0 ? fmt::format("{}x{} images", m.rows, m.cols)
                                                 : fmt::format("images of {} values", m.model.input);
      throw RequestError(fmt::format("{}: the model takes {}, a canvas becomes 28x28", field, shape));
    }
    const int width = static_cast<int>(integer_field(required_field(value, "width", field), field + ".width", 1, kMaxCanvasSide));
    const int height = static_cast<int>(integer_field(required_field(value, "height", field), field + ".height", 1, kMaxCanvasSide));
    const std::vector<float> pixels = numbers_field(required_field(value, "pixels", field), field + ".pixels",
                                                    static_cast<size_t>(width) * height, 0.0, 1.0);
    return mnist_style_input(width, height, pixels);
  }

  static std::vector<float> slice(const std::vector<float>& v, int first, int count) {
    return {v.begin() + first, v.begin() + first + count};
  }

  static json rows_of(const std::vector<float>& v, int rows, int cols) {
    json out = json::array();
    for (int r = 0; r < rows; ++r) out.push_back(slice(v, r * cols, cols));
    return out;
  }

  const std::vector<PlaygroundModel>& models_;
  const MnistSplit& test_images_;
};

}  // namespace

Playground::Playground(const std::vector<std::filesystem::path>& checkpoints,
                       const std::optional<std::filesystem::path>& data_dir) {
  for (const auto& file : checkpoints) models_.push_back(load(file));
  if (data_dir) test_images_ = load_mnist_split(*data_dir, SplitName::kTest);
}

Playground::Playground(std::vector<PlaygroundModel> models, MnistSplit test_images)
    : models_(std::move(models)), test_images_(std::move(test_images)) {}

PlaygroundResponse Playground::handle(const std::string& endpoint, const json& request) const {
  const Handlers handlers(models_, test_images_);
  try {
    if (endpoint == "models") return {200, handlers.models()};
    if (endpoint == "encode") return {200, handlers.encode(request)};
    if (endpoint == "decode") return {200, handlers.decode(request)};
    if (endpoint == "reconstruct") return {200, handlers.reconstruct(request)};
    if (endpoint == "interpolate") return {200, handlers.interpolate(request)};
    if (endpoint == "sample") return {200, handlers.sample(request)};
    if (endpoint == "test_image") return {200, handlers.test_image(request)};
    return {404, {{"error", fmt::format("{}: no such endpoint", endpoint)}}};
  } catch (const RequestError& e) {
    return {400, {{"error", e.what()}}};
  } catch (const std::exception& e) {
    return {500, {{"error", e.what()}}};
  }
}

}  // namespace vae
