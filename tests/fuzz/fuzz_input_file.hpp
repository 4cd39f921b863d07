// The readers under test take paths, not buffers, so each fuzz input is written to one temp file per
// process (the pid in its name keeps parallel fuzzers apart) and rewritten on every call; reusing
// the path keeps the temp directory from filling up over millions of executions.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace vae::fuzz {

class FuzzInputFile {
 public:
  explicit FuzzInputFile(const std::string& tag)
      : path_(std::filesystem::temp_directory_path() /
              ("vae_fuzz_" + tag + "_" + std::to_string(::getpid()) + ".bin")) {}
  ~FuzzInputFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  FuzzInputFile(const FuzzInputFile&) = delete;
  FuzzInputFile& operator=(const FuzzInputFile&) = delete;

  // A failure here is the machine's (disk full, no /tmp), not the reader's: say so loudly and stop,
  // rather than let the reader report a missing file as if the input were at fault.
  const std::filesystem::path& write(const uint8_t* data, size_t size) {
    std::FILE* out = std::fopen(path_.c_str(), "wb");
    const bool ok = out && (size == 0 || std::fwrite(data, 1, size, out) == size);
    if (!out || std::fclose(out) != 0 || !ok) {
      std::fprintf(stderr, "fuzz harness: cannot write %s\n", path_.c_str());
      std::abort();
    }
    return path_;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace vae::fuzz
