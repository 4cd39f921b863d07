// replace_file_atomically: POSIX open/write/fsync/rename, with every failure named by the file the
// caller asked for: the temporary is an implementation detail the user never sees.
#include "atomic_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;

// The message says whether an older `file` survives, since that is what the user wants to know
// after a failed checkpoint or a full disk.
[[noreturn]] void fail(const fs::path& file, const char* what, int err) {
  std::error_code ec;
  const bool kept = fs::exists(file, ec);
  throw Error(fmt::format("{}: {}: {}{}", file.string(), what, std::strerror(err),
                          kept ? "; the file there before is left as it was" : ""));
}

// false (errno set) when a write fails; EINTR and short writes are retried.
bool write_all(int fd, const ByteRange& piece) {
  const char* data = static_cast<const char*>(piece.data);
  size_t left = piece.size;
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

// Empty when `dir` exists as a folder or could be made one (with its parents), else why not.
std::string folder_failure(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec) return {};
  // "Not a directory" alone does not say which part is in the way.
  for (fs::path part = dir; !part.empty() && part != part.parent_path(); part = part.parent_path()) {
    std::error_code ignored;
    if (fs::exists(part, ignored)) {
      if (!fs::is_directory(part, ignored)) return fmt::format("{} is a file, not a folder", part.string());
      break;
    }
  }
  return ec.message();
}

}  // namespace

void create_folders(const fs::path& dir) {
  if (const std::string why = folder_failure(dir); !why.empty())
    throw Error(fmt::format("{}: cannot create folder: {}", dir.string(), why));
}

void replace_file_atomically(const fs::path& file, const std::vector<ByteRange>& pieces) {
  if (file.has_parent_path())
    if (const std::string why = folder_failure(file.parent_path()); !why.empty())
      throw Error(fmt::format("{}: cannot create its folder {}: {}", file.string(), file.parent_path().string(), why));
  const fs::path temp = file.string() + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(file, "cannot create", errno);
  int err = 0;
  const char* what = nullptr;
  for (const ByteRange& piece : pieces)
    if (!write_all(fd, piece)) {
      err = errno, what = "cannot write";
      break;
    }
  // Some file systems report a full disk only at fsync or close.
  if (what == nullptr && ::fsync(fd) != 0) err = errno, what = "cannot write (fsync)";
  if (::close(fd) != 0 && what == nullptr) err = errno, what = "cannot write (close)";
  if (what != nullptr) {
    ::unlink(temp.c_str());
    fail(file, what, err);
  }
  if (::rename(temp.c_str(), file.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(temp.c_str());
    fail(file, "cannot replace", rename_err);
  }
  // Make the rename itself durable.
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace vae
