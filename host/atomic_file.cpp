// replace_file_atomically: POSIX open/write/fsync/rename, with every failure named.
#include "atomic_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const fs::path& file, const char* what, int err) {
  throw Error(fmt::format("{}: {}: {}", file.string(), what, std::strerror(err)));
}

void write_all(int fd, const ByteRange& piece, const fs::path& temp) {
  const char* data = static_cast<const char*>(piece.data);
  size_t left = piece.size;
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(temp, "cannot write", errno);
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

void replace_file_atomically(const fs::path& file, const std::vector<ByteRange>& pieces) {
  const fs::path temp = file.string() + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(temp, "cannot create", errno);
  int err = 0;
  const char* what = nullptr;
  try {
    for (const ByteRange& piece : pieces) write_all(fd, piece, temp);
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (::fsync(fd) != 0) err = errno, what = "fsync failed";
  if (::close(fd) != 0 && what == nullptr) err = errno, what = "cannot write";
  if (what != nullptr) {
    ::unlink(temp.c_str());
    fail(temp, what, err);
  }
  if (::rename(temp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    fail(file, "cannot replace", err);
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
