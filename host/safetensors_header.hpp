// The safetensors container as its specification defines it, apart from what a vae_cuda checkpoint
// needs inside it: an 8-byte little-endian length N, N bytes holding one UTF-8 JSON object (padded
// at the end with spaces, nothing else), no key twice in any object, __metadata__ (if present)
// mapping strings to strings, then the byte buffer that data_offsets index.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vae {

struct SafetensorsFile {
  nlohmann::json header;  // a JSON object; every key in it, at any depth, is unique
  const char* data;       // the byte buffer, pointing into the bytes given to split_safetensors
  uint64_t data_size;     // in bytes
};

// Splits a whole file's bytes into its header and its byte buffer (which still points into `bytes`).
// Throws vae::Error "FILE: ..." when the length is impossible, the header is not one JSON object,
// anything but spaces follows it, an object repeats a key, or __metadata__ holds a non-string.
SafetensorsFile split_safetensors(const std::vector<char>& bytes, const std::filesystem::path& file);

// A string from the file, fit for a one-line message: JSON-quoted with every control and non-ASCII
// character escaped, cut to about 80 characters.
std::string quoted_for_message(const std::string& text);

// The same, but unquoted when it is already short and plain (printable ASCII, no space or quote), as
// tensor names and dtypes are.
std::string plain_for_message(const std::string& text);

}  // namespace vae
