// vae::Error: the one exception type of the engine. Everything that can go wrong at run time
// (bad files, bad flags, library failures) throws it with a message that names the culprit;
// main() prints that message on one line and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace vae {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A user-facing mistake in flags or their values: main() exits 2 instead of 1.
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace vae
