// The playground page's files, compiled into the binary from host/playground_page by
// cmake/embed_assets.cmake, so the server needs nothing on disk and fetches nothing at run time.
#pragma once

#include <span>
#include <string_view>

namespace vae {

struct WebAsset {
  std::string_view path;          // as requested: "/", "/app.js", ...
  std::string_view content_type;  // with its charset
  std::string_view body;
};

std::span<const WebAsset> playground_assets();

}  // namespace vae
