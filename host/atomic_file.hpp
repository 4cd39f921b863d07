// Replacing a file so that a crash at any moment leaves either the old file or the new one, never a
// torn one: write a temporary beside it (FILE.tmp), fsync, rename over FILE, fsync the directory.
// Checkpoints, metrics.csv and the PNG grids all go through here, so every command that writes
// creates missing folders and reports failures (a full disk included) the same way.
#pragma once

#include <cstddef>
#include <filesystem>
#include <vector>

namespace vae {

struct ByteRange {
  const void* data;
  size_t size;
};

// Creates `dir` and its missing parents. Throws vae::Error "DIR: cannot create folder: REASON",
// naming the part of the path that is a file when one is in the way.
void create_folders(const std::filesystem::path& dir);

// Writes the pieces in order as the new contents of `file`, creating its missing parent folders.
// Throws vae::Error naming `file` (never the temporary) and the cause, e.g. "out/checkpoint.safetensors:
// cannot write: No space left on device"; on failure the temporary is removed and `file` is untouched.
void replace_file_atomically(const std::filesystem::path& file, const std::vector<ByteRange>& pieces);

}  // namespace vae
