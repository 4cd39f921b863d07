// A minimal safetensors writer for the parity dump: named tensors of float32, float64 or uint8,
// written in the order added. The checkpoint writer only knows a model's weights; the dump also
// hands PyTorch pixels, noise and losses, and the same format keeps the Python reader one function.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vae/error.hpp"

namespace vae::parity {

class TensorFile {
 public:
  void add(const std::string& name, std::vector<int64_t> shape, const float* data) { put(name, "F32", shape, data, 4); }
  void add(const std::string& name, std::vector<int64_t> shape, const double* data) { put(name, "F64", shape, data, 8); }
  void add(const std::string& name, std::vector<int64_t> shape, const uint8_t* data) { put(name, "U8", shape, data, 1); }

  // The file is a test artefact read once, so a plain write is enough (no atomic rename).
  void write(const std::filesystem::path& file) const {
    std::string text = header_.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');  // data starts 8-byte aligned, so numpy views are aligned
    char prefix[8];
    for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((uint64_t{text.size()} >> (8 * i)) & 0xff);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(prefix, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.write(data_.data(), static_cast<std::streamsize>(data_.size()));
    if (!out.flush()) throw Error(fmt::format("{}: cannot write", file.string()));
  }

 private:
  void put(const std::string& name, const char* dtype, const std::vector<int64_t>& shape, const void* data,
           size_t element_bytes) {
    size_t count = 1;
    for (int64_t d : shape) count *= static_cast<size_t>(d);
    const size_t begin = data_.size(), bytes = count * element_bytes;
    header_[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, begin + bytes}}};
    data_.resize(begin + bytes);
    std::memcpy(data_.data() + begin, data, bytes);  // host byte order: little-endian on every target we build
  }

  nlohmann::json header_ = nlohmann::json::object();
  std::vector<char> data_;
};

}  // namespace vae::parity
