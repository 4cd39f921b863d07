// libFuzzer target for the safetensors checkpoint reader. vae::Error is the reader's contract for a
// bad file; any other exception (a stray nlohmann::json one included), a crash or a sanitizer
// report escapes and is a finding.
#include <cstddef>
#include <cstdint>

#include "fuzz_input_file.hpp"
#include "vae/checkpoint.hpp"
#include "vae/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static vae::fuzz::FuzzInputFile input("checkpoint");
  const auto& path = input.write(data, size);
  try {
    const vae::Checkpoint c = vae::read_checkpoint(path);
    // An accepted checkpoint must fill every flat buffer to the model's layout.
    const size_t total = static_cast<size_t>(vae::make_layout(c.config.model).total);
    if (c.state.params.size() != total || c.state.adam_m.size() != total || c.state.adam_v.size() != total)
      __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
