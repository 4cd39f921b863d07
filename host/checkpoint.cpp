// Checkpoint files: safetensors written atomically, read back with every field checked before use.
#include "vae/checkpoint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

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

// Every tensor of a checkpoint in file order: the weights, then Adam's first and second moments
// under torch.optim.Adam's state names. `buffer` says which flat buffer each comes from.
struct FileTensor {
  NamedTensor tensor;
  int buffer;  // 0 params, 1 adam_m, 2 adam_v
};

std::vector<FileTensor> file_tensors(const ModelConfig& model) {
  const std::vector<NamedTensor> params = parameter_tensors(model);
  std::vector<FileTensor> all;
  const char* prefixes[] = {"", "optimizer.exp_avg.", "optimizer.exp_avg_sq."};
  for (int buffer = 0; buffer < 3; ++buffer)
    for (NamedTensor t : params) {
      t.name = prefixes[buffer] + t.name;
      all.push_back({t, buffer});
    }
  return all;
}

std::string exact(double value) { return fmt::format("{:.17g}", value); }

json metadata_of(const Checkpoint& c) {
  const TrainConfig& t = c.config;
  return json{{"format", kFormatName},
              {"format_version", std::to_string(kCheckpointFormatVersion)},
              {"input", std::to_string(t.model.input)},
              {"hidden", fmt::format("{}", fmt::join(t.model.hidden, ","))},
              {"latent", std::to_string(t.model.latent)},
              {"beta", exact(t.model.beta)},
              {"seed", std::to_string(t.seed)},
              {"batch", std::to_string(t.batch)},
              {"lr", exact(t.adam.lr)},
              {"adam_beta1", exact(t.adam.beta1)},
              {"adam_beta2", exact(t.adam.beta2)},
              {"adam_eps", exact(t.adam.eps)},
              {"weight_decay", exact(t.adam.weight_decay)},
              {"adamw", t.adam.decoupled ? "1" : "0"},
              {"step", std::to_string(c.state.step)},
              {"epoch", std::to_string(c.position.epoch)},
              {"batch_in_epoch", std::to_string(c.position.batch)},
              {"epoch_bce", exact(c.position.epoch_bce)},
              {"epoch_kl", exact(c.position.epoch_kl)}};
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
  [[noreturn]] void fail(const std::string& what) const { throw Error(file_.string() + ": " + what); }

 private:
  const fs::path& file_;
  const json& metadata_;
};

Checkpoint config_from(const fs::path& file, const json& metadata) {
  const MetadataReader m(file, metadata);
  if (m.text("format") != kFormatName) m.fail("not a vae_cuda checkpoint (__metadata__ format is not \"vae_cuda\")");
  const int version = m.number<int>("format_version");
  if (version != kCheckpointFormatVersion)
    m.fail(fmt::format("format version {}, this build reads version {}", version, kCheckpointFormatVersion));
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
  t.seed = m.number<uint64_t>("seed");
  t.batch = m.number<int>("batch");
  t.adam.lr = m.number<double>("lr");
  t.adam.beta1 = m.number<double>("adam_beta1");
  t.adam.beta2 = m.number<double>("adam_beta2");
  t.adam.eps = m.number<double>("adam_eps");
  t.adam.weight_decay = m.number<double>("weight_decay");
  t.adam.decoupled = m.number<int>("adamw") != 0;
  c.state.step = m.number<long long>("step");
  c.position.epoch = m.number<int>("epoch");
  c.position.batch = m.number<int>("batch_in_epoch");
  c.position.epoch_bce = m.number<double>("epoch_bce");
  c.position.epoch_kl = m.number<double>("epoch_kl");
  try {
    validate(t);
  } catch (const Error& e) {
    m.fail(std::string("its config is invalid: ") + e.what());
  }
  if (t.model.input < 1 || t.model.input > (1 << 20)) m.fail(fmt::format("input width {} is out of range", t.model.input));
  if (c.state.step < 0 || c.position.epoch < 1 || c.position.batch < 0)
    m.fail("step, epoch or batch_in_epoch is negative or zero where it cannot be");
  return c;
}

}  // namespace

int64_t NamedTensor::size() const { return element_count(shape); }

std::vector<NamedTensor> parameter_tensors(const ModelConfig& model) {
  const ParamLayout layout = make_layout(model);
  const bool pytorch_names = model.hidden.size() == 1;
  std::vector<NamedTensor> tensors;
  auto add = [&](std::string name, const LinearSlot& l, int64_t first_row, int64_t rows) {
    tensors.push_back({name + ".weight", l.weight_offset + first_row * l.in, {rows, l.in}});
    tensors.push_back({name + ".bias", l.bias_offset + first_row, {rows}});
  };
  for (int i = 0; i < static_cast<int>(layout.layers.size()); ++i) {
    const LinearSlot& l = layout.layers[i];
    if (i == layout.head()) {
      add(pytorch_names ? "fc21" : "mu", l, 0, model.latent);
      add(pytorch_names ? "fc22" : "logvar", l, model.latent, model.latent);
    } else if (pytorch_names) {
      add(i < layout.head() ? "fc1" : i == layout.output() ? "fc4" : "fc3", l, 0, l.out);
    } else {
      add(l.name, l, 0, l.out);  // encoder.{i}, decoder.{i}, output
    }
  }
  return tensors;
}

void write_checkpoint(const fs::path& file, const Checkpoint& c) {
  const std::vector<FileTensor> tensors = file_tensors(c.config.model);
  const std::vector<float>* buffers[] = {&c.state.params, &c.state.adam_m, &c.state.adam_v};
  const int64_t total = make_layout(c.config.model).total;
  for (const auto* b : buffers)
    if (static_cast<int64_t>(b->size()) != total)
      throw Error(fmt::format("{}: state buffers do not match the model's layout", file.string()));

  json header;
  header["__metadata__"] = metadata_of(c);
  int64_t offset = 0;
  for (const FileTensor& t : tensors) {
    const int64_t bytes = t.tensor.size() * static_cast<int64_t>(sizeof(float));
    header[t.tensor.name] = {{"dtype", "F32"}, {"shape", t.tensor.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // the data then starts 8-byte aligned
  std::string prefix(8, '\0');
  const uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((length >> (8 * i)) & 0xff);

  std::vector<ByteRange> pieces = {{prefix.data(), prefix.size()}, {text.data(), text.size()}};
  for (const FileTensor& t : tensors)
    pieces.push_back({buffers[t.buffer]->data() + t.tensor.offset, static_cast<size_t>(t.tensor.size()) * sizeof(float)});
  replace_file_atomically(file, pieces);
}

Checkpoint read_checkpoint(const fs::path& file) {
  auto fail = [&](const std::string& what) -> Error { return Error(file.string() + ": " + what); };
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw fail("not found or not a file");
  const std::vector<char> bytes = read_all(file);
  const SafetensorsFile contents = split_safetensors(bytes, file);
  const json& header = contents.header;
  if (!header.contains("__metadata__")) throw fail("header has no __metadata__");
  Checkpoint c = config_from(file, header.at("__metadata__"));

  const uint64_t data_size = contents.data_size;
  const char* data = contents.data;
  const std::vector<FileTensor> expected = file_tensors(c.config.model);
  std::map<std::string, const FileTensor*> wanted;
  for (const FileTensor& t : expected) wanted[t.tensor.name] = &t;
  for (const auto& [name, value] : header.items())
    if (name != "__metadata__" && !wanted.count(name)) throw fail(fmt::format("tensor {}: not part of this model", plain_for_message(name)));

  // The metadata alone may declare a model of any size: check the file really holds its tensors
  // before sizing buffers from it, so a small lying file cannot ask for gigabytes.
  uint64_t expected_bytes = 0;
  for (const FileTensor& t : expected) expected_bytes += static_cast<uint64_t>(t.tensor.size()) * sizeof(float);
  if (expected_bytes != data_size)
    throw fail(fmt::format("file size: the model in __metadata__ needs {} data bytes, the file has {}", expected_bytes,
                           data_size));
  const int64_t total = make_layout(c.config.model).total;
  c.state.params.assign(static_cast<size_t>(total), 0.0f);
  c.state.adam_m.assign(static_cast<size_t>(total), 0.0f);
  c.state.adam_v.assign(static_cast<size_t>(total), 0.0f);
  std::vector<float>* buffers[] = {&c.state.params, &c.state.adam_m, &c.state.adam_v};
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const FileTensor& t : expected) {
    const std::string& name = t.tensor.name;
    if (!header.contains(name)) throw fail(fmt::format("tensor {}: missing", name));
    const json& entry = header.at(name);
    if (!entry.is_object()) throw fail(fmt::format("tensor {}: entry is not an object", name));
    if (!entry.contains("dtype") || entry["dtype"] != "F32")
      throw fail(fmt::format("tensor {}: dtype {}, expected F32", name,
                             entry.contains("dtype") ? entry["dtype"].dump() : "missing"));
    if (!entry.contains("shape") || !entry["shape"].is_array() ||
        !std::all_of(entry["shape"].begin(), entry["shape"].end(), [](const json& d) { return d.is_number_unsigned(); }) ||
        entry["shape"].get<std::vector<int64_t>>() != t.tensor.shape)
      throw fail(fmt::format("tensor {}: shape {}, expected [{}]", name,
                             entry.contains("shape") ? entry["shape"].dump() : "missing",
                             fmt::join(t.tensor.shape, ", ")));
    const json& offsets = entry.contains("data_offsets") ? entry["data_offsets"] : json();
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      throw fail(fmt::format("tensor {}: data_offsets must be two non-negative integers", name));
    const auto begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const uint64_t bytes_needed = static_cast<uint64_t>(t.tensor.size()) * sizeof(float);
    if (begin > end || end > data_size)
      throw fail(fmt::format("tensor {}: data_offsets [{}, {}] outside the {} data bytes", name, begin, end, data_size));
    if (end - begin != bytes_needed)
      throw fail(fmt::format("tensor {}: {} data bytes for {} floats", name, end - begin, t.tensor.size()));
    spans.emplace_back(begin, end);
    std::memcpy(buffers[t.buffer]->data() + t.tensor.offset, data + begin, bytes_needed);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) throw fail("two tensors' data_offsets overlap");
  const uint64_t covered = spans.empty() ? 0 : spans.back().second;
  if (covered != data_size)
    throw fail(fmt::format("file size: tensors end at data byte {}, the file has {} data bytes", covered, data_size));
  return c;
}

}  // namespace vae
