// The playground's HTTP side on cpp-httplib: the embedded page at /, and /api/<endpoint> for the JSON
// API (POST with a JSON body; GET /api/models too). Kept apart from the command so tests run it
// in-process on a free loopback port.
#pragma once

#include <memory>
#include <string>

#include "playground.hpp"

namespace vae {

// A request body larger than this is refused with 413 before it is read: a 1024 x 1024 canvas
// written with four characters a pixel fits.
inline constexpr size_t kMaxRequestBytes = 8u << 20;

class PlaygroundServer {
 public:
  explicit PlaygroundServer(const Playground& playground);
  ~PlaygroundServer();

  // Binds host:port, or any free port for port 0, and returns the port. Throws vae::Error naming
  // the address when it cannot be bound (in use, no such interface, not an address).
  int bind(const std::string& host, int port);
  // Serves on the bound socket until stop(); requests run on a pool of threads, concurrently.
  void run();
  // Stops run() from any thread (not from a signal handler); waits until run() has started, so an
  // early stop is not lost.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vae
