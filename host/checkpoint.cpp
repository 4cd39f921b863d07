// Checkpoint files: safetensors written atomically, read back with every field checked before use.
#include "vae/checkpoint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "atomic_file.hpp"
#include "safetensors_header.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormatName = "vae_cuda";

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Every tensor of a checkpoint in file order: the weights, BatchNorm's buffers as a state_dict has
// them, then Adam's first and second moments under torch.optim.Adam's state names. `buffer` says
// which flat buffer each comes from; num_batches_tracked is the one I64 scalar, the step count.
enum Buffer { kParams, kAdamM, kAdamV, kRunningStats, kBatchesTracked };

struct FileTensor {
  NamedTensor tensor;
  Buffer buffer;
  const char* dtype() const { return buffer == kBatchesTracked ? "I64" : "F32"; }
  int64_t bytes() const { return tensor.size() * (buffer == kBatchesTracked ? 8 : 4); }
};

std::vector<FileTensor> file_tensors(const ModelConfig& model) {
  const std::vector<NamedTensor> params = parameter_tensors(model);
  std::vector<FileTensor> all;
  for (const NamedTensor& t : params) all.push_back({t, kParams});
  for (const NamedTensor& t : running_stat_tensors(model)) all.push_back({t, kRunningStats});
  for (const std::string& module : batch_norm_modules(model))
    all.push_back({NamedTensor{module + ".num_batches_tracked", 0, {}}, kBatchesTracked});
  const std::pair<const char*, Buffer> moments[] = {{"optimizer.exp_avg.", kAdamM}, {"optimizer.exp_avg_sq.", kAdamV}};
  for (const auto& [prefix, buffer] : moments)
    for (NamedTensor t : params) {
      t.name = prefix + t.name;
      all.push_back({t, buffer});
    }
  return all;
}

// The flat buffer a tensor's values live in; null for num_batches_tracked, which is the step.
template <typename State>
auto* buffer_of(State& state, Buffer buffer) {
  decltype(&state.params) buffers[] = {&state.params, &state.adam_m, &state.adam_v, &state.running_stats, nullptr};
  return buffers[buffer];
}

std::string exact(double value) { return fmt::format("{:.17g}", value); }

std::string hex64(uint64_t value) { return fmt::format("{:016x}", value); }

json metadata_of(const Checkpoint& c) {
  const TrainConfig& t = c.config;
  const DataIdentity& d = *c.data;
  json metadata{{"format", kFormatName},
                {"format_version", std::to_string(kCheckpointFormatVersion)},
                {"input", std::to_string(t.model.input)},
                {"hidden", fmt::format("{}", fmt::join(t.model.hidden, ","))},
                {"latent", std::to_string(t.model.latent)},
                {"beta", exact(t.model.beta)},
                {"activation", activation_name(t.model.activation)},
                {"negative_slope", exact(t.model.negative_slope)},
                {"batch_norm", t.model.batch_norm ? "1" : "0"},
                {"encoder_output", std::to_string(t.model.encoder_output)},
                {"likelihood", likelihood_name(t.model.likelihood)},
                {"alpha", exact(t.model.alpha)},
                {"seed", std::to_string(t.seed)},
                {"batch", std::to_string(t.batch)},
                {"lr", exact(t.adam.lr)},
                {"adam_beta1", exact(t.adam.beta1)},
                {"adam_beta2", exact(t.adam.beta2)},
                {"adam_eps", exact(t.adam.eps)},
                {"weight_decay", exact(t.adam.weight_decay)},
                {"adamw", t.adam.decoupled ? "1" : "0"},
                {"lr_schedule", t.lr_schedule == LrSchedule::kPlateau ? "plateau" : "constant"},
                {"plateau_factor", exact(t.plateau.factor)},
                {"plateau_patience", std::to_string(t.plateau.patience)},
                {"plateau_threshold", exact(t.plateau.threshold)},
                {"plateau_cooldown", std::to_string(t.plateau.cooldown)},
                {"plateau_min_lr", exact(t.plateau.min_lr)},
                {"plateau_eps", exact(t.plateau.eps)},
                {"step", std::to_string(c.state.step)},
                {"epoch", std::to_string(c.position.epoch)},
                {"batch_in_epoch", std::to_string(c.position.batch)},
                {"epoch_reconstruction", exact(c.position.epoch_reconstruction)},
                {"epoch_kl", exact(c.position.epoch_kl)},
                {"image_rows", std::to_string(d.rows)},
                {"image_cols", std::to_string(d.cols)},
                {"train_count", std::to_string(d.count)},
                {"train_images_xxh3", hex64(d.images_xxh3)},
                {"train_labels_xxh3", hex64(d.labels_xxh3)}};
  if (c.plateau) {
    metadata["plateau_best"] = exact(c.plateau->best);
    metadata["plateau_num_bad_epochs"] = std::to_string(c.plateau->num_bad_epochs);
    metadata["plateau_cooldown_counter"] = std::to_string(c.plateau->cooldown_counter);
    metadata["plateau_last_epoch"] = std::to_string(c.plateau->last_epoch);
    metadata["plateau_lr"] = exact(c.plateau->lr);
  }
  return metadata;
}

// Reads a file whole; the sizes involved are a few MB.
std::vector<char> read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open", file.string()));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(fmt::format("{}: read error", file.string()));
  return bytes;
}

class MetadataReader {
 public:
  MetadataReader(const fs::path& file, const json& metadata) : file_(file), metadata_(metadata) {}

  std::string text(const char* key) const {
    const auto found = metadata_.find(key);
    if (found == metadata_.end()) fail(fmt::format("__metadata__ has no \"{}\"", key));
    if (!found->is_string()) fail(fmt::format("__metadata__ \"{}\" is not a string", key));
    return found->get<std::string>();
  }
  template <typename T>
  T number(const char* key) const {
    const std::string s = text(key);
    T value{};
    const auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || err != std::errc() || end != s.data() + s.size())
      fail(fmt::format("__metadata__ \"{}\" = \"{}\" is not a number", key, s));
    return value;
  }
  // "0" or "1", as metadata_of writes a yes/no setting.
  bool flag(const char* key) const {
    const std::string s = text(key);
    if (s != "0" && s != "1") fail(fmt::format("__metadata__ \"{}\" = \"{}\" is not 0 or 1", key, plain_for_message(s)));
    return s == "1";
  }
  // Exactly 16 hex digits, as hex64 writes them.
  uint64_t hex64(const char* key) const {
    const std::string s = text(key);
    uint64_t value = 0;
    const auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), value, 16);
    if (s.size() != 16 || err != std::errc() || end != s.data() + s.size())
      fail(fmt::format("__metadata__ \"{}\" = \"{}\" is not 16 hex digits", key, s));
    return value;
  }
  [[noreturn]] void fail(const std::string& what) const { throw Error(file_.string() + ": " + what); }

 private:
  const fs::path& file_;
  const json& metadata_;
};

// The training data's identity (version 2 on): a shape that holds exactly the model's input pixels.
DataIdentity data_identity_from(const MetadataReader& m, int input) {
  DataIdentity d;
  d.rows = m.number<int>("image_rows");
  d.cols = m.number<int>("image_cols");
  d.count = m.number<int64_t>("train_count");
  d.images_xxh3 = m.hex64("train_images_xxh3");
  d.labels_xxh3 = m.hex64("train_labels_xxh3");
  if (d.rows < 1 || d.cols < 1 || static_cast<int64_t>(d.rows) * d.cols != input)
    m.fail(fmt::format("image_rows x image_cols = {}x{} is not the model's {} input pixels", d.rows, d.cols, input));
  if (d.count < 1) m.fail(fmt::format("train_count {} is not a number of training images", d.count));
  return d;
}

// ReduceLROnPlateau's eps, which no flag sets, and its state: values no schedule reaches, each named
// by its key. The settings the flags share were checked by validate() and name the flag.
void check_plateau(const MetadataReader& m, const PlateauHyper& hyper, const std::optional<PlateauState>& state) {
  auto require = [&](bool ok, const char* key, const char* what) {
    if (!ok) m.fail(fmt::format("__metadata__ \"{}\" = \"{}\" {}", key, m.text(key), what));
  };
  require(hyper.eps >= 0.0 && std::isfinite(hyper.eps), "plateau_eps", "is not a finite number >= 0");
  if (!state) return;
  require(!std::isnan(state->best), "plateau_best", "is not a number a test loss can have been");
  require(state->num_bad_epochs >= 0, "plateau_num_bad_epochs", "is negative");
  require(state->cooldown_counter >= 0, "plateau_cooldown_counter", "is negative");
  require(state->last_epoch >= 0, "plateau_last_epoch", "is negative");
  require(state->lr > 0.0 && std::isfinite(state->lr), "plateau_lr", "is not a learning rate (finite, > 0)");
  try {
    ReduceLROnPlateau(hyper, *state);  // anything the schedule's own checks add
  } catch (const Error& e) {
    m.fail(std::string("its learning rate schedule is invalid: ") + e.what());
  }
}

Checkpoint config_from(const fs::path& file, const json& metadata) {
  const MetadataReader m(file, metadata);
  if (m.text("format") != kFormatName) m.fail("not a vae_cuda checkpoint (__metadata__ format is not \"vae_cuda\")");
  const int version = m.number<int>("format_version");
  if (version < kOldestCheckpointFormatVersion || version > kCheckpointFormatVersion)
    m.fail(fmt::format("format version {}, this build reads versions {} to {}", version,
                       kOldestCheckpointFormatVersion, kCheckpointFormatVersion));
  Checkpoint c;
  TrainConfig& t = c.config;
  t.model.input = m.number<int>("input");
  try {
    t.model.hidden = parse_widths(m.text("hidden"));
  } catch (const Error& e) {
    m.fail(std::string("__metadata__ hidden: ") + e.what());
  }
  t.model.latent = m.number<int>("latent");
  t.model.beta = static_cast<float>(m.number<double>("beta"));
  if (version >= 3) {  // the model options of version 3; earlier files are all of the default model
    const std::string activation = m.text("activation"), likelihood = m.text("likelihood");
    if (!parse_activation(activation, t.model.activation))
      m.fail(fmt::format("__metadata__ activation \"{}\" is not relu or leaky_relu", plain_for_message(activation)));
    if (!parse_likelihood(likelihood, t.model.likelihood))
      m.fail(fmt::format("__metadata__ likelihood \"{}\" is not bernoulli or gaussian", plain_for_message(likelihood)));
    t.model.negative_slope = static_cast<float>(m.number<double>("negative_slope"));
    t.model.batch_norm = m.flag("batch_norm");
    t.model.encoder_output = m.number<int>("encoder_output");
    t.model.alpha = static_cast<float>(m.number<double>("alpha"));
    const std::string schedule = m.text("lr_schedule");
    if (schedule != "constant" && schedule != "plateau")
      m.fail(fmt::format("__metadata__ lr_schedule \"{}\" is not constant or plateau", plain_for_message(schedule)));
    t.lr_schedule = schedule == "plateau" ? LrSchedule::kPlateau : LrSchedule::kConstant;
    t.plateau.factor = m.number<double>("plateau_factor");
    t.plateau.patience = m.number<int>("plateau_patience");
    t.plateau.threshold = m.number<double>("plateau_threshold");
    t.plateau.cooldown = m.number<int>("plateau_cooldown");
    t.plateau.min_lr = m.number<double>("plateau_min_lr");
    t.plateau.eps = m.number<double>("plateau_eps");
    if (t.lr_schedule == LrSchedule::kPlateau) {
      PlateauState p;
      p.best = m.number<double>("plateau_best");
      p.num_bad_epochs = m.number<int>("plateau_num_bad_epochs");
      p.cooldown_counter = m.number<int>("plateau_cooldown_counter");
      p.last_epoch = m.number<int>("plateau_last_epoch");
      p.lr = m.number<double>("plateau_lr");
      c.plateau = p;  // checked below, after the settings it goes with
    }
  }
  t.seed = m.number<uint64_t>("seed");
  t.batch = m.number<int>("batch");
  t.adam.lr = m.number<double>("lr");
  t.adam.beta1 = m.number<double>("adam_beta1");
  t.adam.beta2 = m.number<double>("adam_beta2");
  t.adam.eps = m.number<double>("adam_eps");
  t.adam.weight_decay = m.number<double>("weight_decay");
  t.adam.decoupled = m.flag("adamw");
  c.state.step = m.number<long long>("step");
  c.position.epoch = m.number<int>("epoch");
  c.position.batch = m.number<int>("batch_in_epoch");
  c.position.epoch_reconstruction = m.number<double>(version >= 3 ? "epoch_reconstruction" : "epoch_bce");
  c.position.epoch_kl = m.number<double>("epoch_kl");
  try {
    validate(t);
  } catch (const Error& e) {
    m.fail(std::string("its config is invalid: ") + e.what());
  }
  if (version >= 3) check_plateau(m, t.plateau, c.plateau);
  if (t.model.input < 1 || t.model.input > (1 << 20)) m.fail(fmt::format("input width {} is out of range", t.model.input));
  if (c.state.step < 0 || c.position.epoch < 1 || c.position.batch < 0)
    m.fail("step, epoch or batch_in_epoch is negative or zero where it cannot be");
  if (version >= 2) c.data = data_identity_from(m, t.model.input);
  return c;
}

Error at(const fs::path& file, const std::string& what) { return Error(file.string() + ": " + what); }

bool is_unsigned_list(const json& value) {
  return value.is_array() &&
         std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_number_unsigned(); });
}

// One tensor's entry, its fields checked, and the bytes [begin, end) of the data it names.
struct TensorEntry {
  const FileTensor* tensor;
  uint64_t begin, end;
};

// Checks every expected tensor's header entry, each kind of check over all tensors before the next
// kind, so the message names the real cause: a file of F16 tensors also has the wrong data size,
// but its dtype is what is wrong. Then the data_offsets must tile [0, data_size) exactly, as the
// format requires: no holes, no overlaps, nothing after the last tensor.
std::vector<TensorEntry> check_entries(const fs::path& file, const json& header,
                                       const std::vector<FileTensor>& expected, uint64_t data_size) {
  for (const FileTensor& t : expected) {
    const std::string& name = t.tensor.name;
    const auto entry = header.find(name);
    if (entry == header.end()) throw at(file, fmt::format("tensor {}: missing", name));
    if (!entry->is_object()) throw at(file, fmt::format("tensor {}: entry is not an object", name));
    if (!entry->contains("dtype") || !entry->at("dtype").is_string())
      throw at(file, fmt::format("tensor {}: dtype is missing or not a string", name));
    if (!entry->contains("shape") || !is_unsigned_list(entry->at("shape")))
      throw at(file, fmt::format("tensor {}: shape is missing or not a list of non-negative integers", name));
    const json* offsets = entry->contains("data_offsets") ? &entry->at("data_offsets") : nullptr;
    if (!offsets || !is_unsigned_list(*offsets) || offsets->size() != 2)
      throw at(file, fmt::format("tensor {}: data_offsets must be two non-negative integers", name));
  }
  for (const FileTensor& t : expected) {
    const std::string dtype = header.at(t.tensor.name).at("dtype").get<std::string>();
    if (dtype != t.dtype())
      throw at(file, fmt::format("tensor {} has dtype {}; vae_cuda reads {}", t.tensor.name, plain_for_message(dtype),
                                 t.dtype()));
  }
  for (const FileTensor& t : expected) {
    const auto shape = header.at(t.tensor.name).at("shape").get<std::vector<uint64_t>>();
    if (!std::equal(shape.begin(), shape.end(), t.tensor.shape.begin(), t.tensor.shape.end(),
                    [](uint64_t a, int64_t b) { return a == static_cast<uint64_t>(b); }))
      throw at(file, fmt::format("tensor {} has shape [{}]; the model in __metadata__ needs [{}]", t.tensor.name,
                                 fmt::join(shape, ", "), fmt::join(t.tensor.shape, ", ")));
  }
  std::vector<TensorEntry> entries;
  for (const FileTensor& t : expected) {
    const json& offsets = header.at(t.tensor.name).at("data_offsets");
    const auto begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const std::string& name = t.tensor.name;
    if (begin > end) throw at(file, fmt::format("tensor {}: data_offsets [{}, {}] run backwards", name, begin, end));
    if (end > data_size)
      throw at(file,
               fmt::format("tensor {}: data_offsets [{}, {}] reach past the end of the {} data bytes: the file is "
                           "truncated or the offsets are wrong",
                           name, begin, end, data_size));
    const auto needed = static_cast<uint64_t>(t.bytes());
    if (end - begin != needed)
      throw at(file, fmt::format("tensor {}: data_offsets [{}, {}] hold {} bytes; {} {} values need {}", name, begin,
                                 end, end - begin, t.tensor.size(), t.dtype(), needed));
    entries.push_back({&t, begin, end});
  }
  std::vector<TensorEntry> by_place = entries;
  std::sort(by_place.begin(), by_place.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  uint64_t covered = 0;
  for (size_t i = 0; i < by_place.size(); ++i) {
    const TensorEntry& e = by_place[i];
    if (e.begin < covered)
      throw at(file, fmt::format("tensors {} and {}: data_offsets overlap", by_place[i - 1].tensor->tensor.name,
                                 e.tensor->tensor.name));
    if (e.begin > covered)
      throw at(file,
               fmt::format("data bytes [{}, {}) belong to no tensor: the format allows no holes", covered, e.begin));
    covered = e.end;
  }
  if (covered != data_size)
    throw at(file,
             fmt::format("file size: tensors end at data byte {}, the file has {} data bytes", covered, data_size));
  return entries;
}

// Values no run can produce: NaN or +-Inf anywhere, a negative second moment (a running mean of
// squares) or running variance, or a batch count other than the step count. Accepted, they would
// surface far from their cause, as a black image or a "non-finite loss" steps later; here the
// message names the tensor and the first bad index in it (flat, row-major).
void check_values(const fs::path& file, const std::vector<FileTensor>& tensors, const TrainingState& state,
                  const ParamLayout& layout) {
  std::set<int64_t> variances;  // offsets of the running variances in the running statistics
  for (const LinearSlot& l : layout.layers)
    if (l.batch_norm) variances.insert(l.running_var_offset);
  for (const FileTensor& t : tensors) {
    const std::vector<float>* buffer = buffer_of(state, t.buffer);
    if (buffer == nullptr) continue;  // num_batches_tracked is written as the step, and read against it
    const float* values = buffer->data() + t.tensor.offset;
    const char* nonnegative = t.buffer == kAdamV ? "an Adam second moment"
                              : t.buffer == kRunningStats && variances.count(t.tensor.offset) ? "a running variance"
                                                                                                : nullptr;
    for (int64_t i = 0; i < t.tensor.size(); ++i) {
      if (!std::isfinite(values[i]))
        throw at(file, fmt::format("tensor {}: value {} at index {} is not finite", t.tensor.name, values[i], i));
      if (nonnegative && values[i] < 0.0f)
        throw at(file, fmt::format("tensor {}: value {} at index {} is negative, which {} cannot be", t.tensor.name,
                                   values[i], i, nonnegative));
    }
  }
}

}  // namespace

int64_t NamedTensor::size() const { return element_count(shape); }

namespace {

// The PyTorch module names of each layer's linear part and BatchNorm (empty without one), by the
// naming rule parameter_tensors documents.
struct ModuleNames {
  std::vector<std::string> linear, batch_norm;
};

ModuleNames module_names(const ModelConfig& model) {
  const ParamLayout layout = make_layout(model);
  const int layers = static_cast<int>(layout.layers.size());
  ModuleNames names{std::vector<std::string>(layers), std::vector<std::string>(layers)};
  if (uses_sequential_names(model)) {
    // nn.Sequential positions: the encoder's starts with Flatten, and every hidden layer takes one
    // position for its Linear, one for its BatchNorm1d and one for its activation.
    int position = 1;
    std::string part = "encoder";
    for (int i = 0; i < layers; ++i) {
      if (i == layout.head()) {
        position = 0;
        part = "decoder";
        continue;
      }
      const LinearSlot& l = layout.layers[i];
      names.linear[i] = fmt::format("{}.{}", part, position++);
      if (l.batch_norm) names.batch_norm[i] = fmt::format("{}.{}", part, position++);
      if (l.activation != Activation::kIdentity) ++position;
    }
    return names;
  }
  const bool example = model.hidden.size() == 1;
  for (int i = 0; i < layers; ++i)
    names.linear[i] = !example                 ? layout.layers[i].name  // encoder.{i}, decoder.{i}, output
                      : i < layout.head()      ? "fc1"
                      : i == layout.output()   ? "fc4"
                                               : "fc3";
  return names;
}

}  // namespace

bool uses_sequential_names(const ModelConfig& model) { return model.batch_norm || model.encoder_output > 0; }

std::vector<std::string> batch_norm_modules(const ModelConfig& model) {
  std::vector<std::string> modules;
  for (const std::string& name : module_names(model).batch_norm)
    if (!name.empty()) modules.push_back(name);
  return modules;
}

std::vector<NamedTensor> parameter_tensors(const ModelConfig& model) {
  const ParamLayout layout = make_layout(model);
  const ModuleNames names = module_names(model);
  const bool example = !uses_sequential_names(model) && model.hidden.size() == 1;
  std::vector<NamedTensor> tensors;
  auto add = [&](const std::string& name, const LinearSlot& l, int64_t first_row, int64_t rows) {
    tensors.push_back({name + ".weight", l.weight_offset + first_row * l.in, {rows, l.in}});
    tensors.push_back({name + ".bias", l.bias_offset + first_row, {rows}});
  };
  for (int i = 0; i < static_cast<int>(layout.layers.size()); ++i) {
    const LinearSlot& l = layout.layers[i];
    if (i == layout.head()) {
      const bool seed = uses_sequential_names(model);
      add(example ? "fc21" : seed ? "hidden2mu" : "mu", l, 0, model.latent);
      add(example ? "fc22" : seed ? "hidden2log_var" : "logvar", l, model.latent, model.latent);
      continue;
    }
    add(names.linear[i], l, 0, l.out);
    if (l.batch_norm) {
      tensors.push_back({names.batch_norm[i] + ".weight", l.bn_weight_offset, {l.out}});
      tensors.push_back({names.batch_norm[i] + ".bias", l.bn_bias_offset, {l.out}});
    }
  }
  return tensors;
}

std::vector<NamedTensor> running_stat_tensors(const ModelConfig& model) {
  const ParamLayout layout = make_layout(model);
  const ModuleNames names = module_names(model);
  std::vector<NamedTensor> tensors;
  for (size_t i = 0; i < layout.layers.size(); ++i) {
    const LinearSlot& l = layout.layers[i];
    if (!l.batch_norm) continue;
    tensors.push_back({names.batch_norm[i] + ".running_mean", l.running_mean_offset, {l.out}});
    tensors.push_back({names.batch_norm[i] + ".running_var", l.running_var_offset, {l.out}});
  }
  return tensors;
}

void write_checkpoint(const fs::path& file, const Checkpoint& c) {
  if (!c.data) throw Error(fmt::format("{}: the checkpoint does not say what data it was trained on", file.string()));
  const std::vector<FileTensor> tensors = file_tensors(c.config.model);
  const ParamLayout layout = make_layout(c.config.model);
  const std::vector<float>* buffers[] = {&c.state.params, &c.state.adam_m, &c.state.adam_v};
  for (const auto* b : buffers)
    if (static_cast<int64_t>(b->size()) != layout.total)
      throw Error(fmt::format("{}: state buffers do not match the model's layout", file.string()));
  if (static_cast<int64_t>(c.state.running_stats.size()) != layout.running_total)
    throw Error(fmt::format("{}: running statistics do not match the model's BatchNorm layers", file.string()));
  // What read_checkpoint would refuse is never written: the file already there stays usable.
  check_values(file, tensors, c.state, layout);

  json header;
  header["__metadata__"] = metadata_of(c);
  int64_t offset = 0;
  for (const FileTensor& t : tensors) {
    header[t.tensor.name] = {{"dtype", t.dtype()}, {"shape", t.tensor.shape}, {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // the data then starts 8-byte aligned
  std::string prefix(8, '\0');
  const uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((length >> (8 * i)) & 0xff);

  const int64_t batches_tracked = c.state.step;  // little-endian, as every supported host stores it
  std::vector<ByteRange> pieces = {{prefix.data(), prefix.size()}, {text.data(), text.size()}};
  for (const FileTensor& t : tensors) {
    const std::vector<float>* buffer = buffer_of(c.state, t.buffer);
    pieces.push_back({buffer ? static_cast<const void*>(buffer->data() + t.tensor.offset) : &batches_tracked,
                      static_cast<size_t>(t.bytes())});
  }
  replace_file_atomically(file, pieces);
}

Checkpoint read_checkpoint(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw at(file, "not found or not a file");
  const std::vector<char> bytes = read_all(file);
  const SafetensorsFile contents = split_safetensors(bytes, file);
  const json& header = contents.header;
  if (!header.contains("__metadata__")) throw at(file, "header has no __metadata__");
  Checkpoint c = config_from(file, header.at("__metadata__"));

  const std::vector<FileTensor> expected = file_tensors(c.config.model);
  std::set<std::string> wanted;
  for (const FileTensor& t : expected) wanted.insert(t.tensor.name);
  for (const auto& [name, value] : header.items())
    if (name != "__metadata__" && !wanted.count(name))
      throw at(file, fmt::format("tensor {}: not part of this model", plain_for_message(name)));

  // Nothing is sized from the metadata before the data_offsets are known to tile the file's own
  // bytes, so a small file declaring a huge model cannot ask for gigabytes.
  const std::vector<TensorEntry> entries = check_entries(file, header, expected, contents.data_size);
  const ParamLayout layout = make_layout(c.config.model);
  for (std::vector<float>* b : {&c.state.params, &c.state.adam_m, &c.state.adam_v})
    b->assign(static_cast<size_t>(layout.total), 0.0f);
  c.state.running_stats.assign(static_cast<size_t>(layout.running_total), 0.0f);
  for (const TensorEntry& e : entries) {
    std::vector<float>* buffer = buffer_of(c.state, e.tensor->buffer);
    if (buffer != nullptr) {
      std::memcpy(buffer->data() + e.tensor->tensor.offset, contents.data + e.begin, e.end - e.begin);
      continue;
    }
    int64_t batches_tracked = 0;
    std::memcpy(&batches_tracked, contents.data + e.begin, sizeof batches_tracked);
    if (batches_tracked != c.state.step)
      throw at(file, fmt::format("tensor {}: {} batches tracked, but the checkpoint is at step {}",
                                 e.tensor->tensor.name, batches_tracked, c.state.step));
  }
  check_values(file, expected, c.state, layout);
  return c;
}

}  // namespace vae
