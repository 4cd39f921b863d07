// The playground's HTTP side on cpp-httplib: the embedded page at /, and /api/<endpoint> for the JSON
// API (POST with a JSON body; GET /api/models too). Kept apart from the command so tests run it
// in-process on a free loopback port.
#pragma once

#include <memory>
#include <string>

#include "playground.hpp"

namespace vae {

// A request body larger than this is refused with 413 (httplib reads and drops what was sent) and
// never parsed: a 1024 x 1024 canvas written with four characters a pixel fits.
inline constexpr size_t kMaxRequestBytes = 8u << 20;

class PlaygroundServer {
 public:
  explicit PlaygroundServer(const Playground& playground);
  ~PlaygroundServer();

  // Binds host:port, or any free port for port 0, and returns the port. Throws vae::Error naming
  // the address when it cannot be bound (in use, no such interface, not an address).
  int bind(const std::string& host, int port);
  // Serves on the bound socket until stop(); requests run on a pool of threads, concurrently.
  // Throws vae::Error when the socket fails (accepting no more connections) without a stop.
  void run();
  // Makes run() return, from any thread but a signal handler, and waits until it has: the requests
  // in progress finish first. A stop before run() makes run() return at once.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vae
