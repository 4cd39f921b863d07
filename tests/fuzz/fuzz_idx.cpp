// libFuzzer target for the IDX reader: every input is tried both as an images file and as a labels
// file. vae::Error is the reader's contract for bad input; any other exception, a crash or a
// sanitizer report escapes and is a finding. gzip needs no switch: the reader sniffs it by content.
#include <cstddef>
#include <cstdint>

#include "fuzz_input_file.hpp"
#include "vae/error.hpp"
#include "vae/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static vae::fuzz::FuzzInputFile input("idx");
  const auto& path = input.write(data, size);
  try {
    const vae::IdxImages images = vae::read_idx_images(path);
    // An accepted file must hold exactly what its header promised.
    if (images.pixels.size() != static_cast<size_t>(images.count) * images.rows * images.cols) __builtin_trap();
  } catch (const vae::Error&) {
  }
  try {
    vae::read_idx_labels(path);
  } catch (const vae::Error&) {
  }
  return 0;
}
