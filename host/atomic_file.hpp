// Replacing a file so that a crash at any moment leaves either the old file or the new one, never a
// torn one: write a temporary beside it (FILE.tmp), fsync, rename over FILE, fsync the directory.
// Checkpoints, metrics.csv and the PNG grids all go through here.
#pragma once

#include <cstddef>
#include <filesystem>
#include <vector>

namespace vae {

struct ByteRange {
  const void* data;
  size_t size;
};

// Writes the pieces in order as the new contents of `file`. Throws vae::Error naming the file;
// on failure the temporary is removed and `file` is untouched.
void replace_file_atomically(const std::filesystem::path& file, const std::vector<ByteRange>& pieces);

}  // namespace vae
