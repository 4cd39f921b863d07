// The engine's version, printed by --version and written into reports.
#pragma once

namespace vae {
inline constexpr const char* kVersion = "0.1.0";
}
