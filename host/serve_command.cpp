// run_serve: the playground's process. SIGINT and SIGTERM are blocked in every thread and taken by
// one waiting thread, which stops the server: httplib's stop() may not be called from a signal
// handler. They are blocked first thing, since threads inherit the mask: a thread started earlier
// (OpenMP's, while the checkpoints load) would otherwise take the signal and end the process.
#include "vae/serve_command.hpp"

#include <fmt/format.h>
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <thread>

#include "playground.hpp"
#include "playground_server.hpp"

namespace vae {
namespace {

// Blocks SIGINT and SIGTERM in this thread and the threads it starts, until destroyed.
class BlockedStopSignals {
 public:
  BlockedStopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  }
  ~BlockedStopSignals() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  const sigset_t& set() const { return set_; }

 private:
  sigset_t set_, previous_;
};

// While it lives, a thread takes the blocked signals: the first stops the server, which waits for
// the requests in progress; a second ends the process at once, as a second Ctrl-C does in training.
// A signal that came while the checkpoints loaded is taken at once.
class StopOnSignal {
 public:
  StopOnSignal(const sigset_t& signals, PlaygroundServer& server)
      : waiter_([this, &signals, &server] {
          const timespec tick{0, 100'000'000};
          while (!finished_) {
            if (sigtimedwait(&signals, nullptr, &tick) <= 0) continue;
            if (stopper_.joinable()) {
              fmt::print(stderr, "vae_cuda: stopped at once (second signal)\n");
              std::_Exit(130);
            }
            stopper_ = std::thread([&server] { server.stop(); });
          }
        }) {}
  ~StopOnSignal() {
    finished_ = true;
    waiter_.join();
    if (stopper_.joinable()) stopper_.join();
  }

 private:
  std::atomic<bool> finished_{false};
  std::thread stopper_;  // before waiter_, which starts it
  std::thread waiter_;
};

std::string url(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return fmt::format("http://{}:{}/", ipv6 ? "[" + host + "]" : host, port);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

void run_serve(const ServeOptions& options) {
  std::vector<std::filesystem::path> checkpoints(options.checkpoints.begin(), options.checkpoints.end());
  std::optional<std::filesystem::path> data_dir;
  if (options.data_dir) data_dir = *options.data_dir;
  const BlockedStopSignals signals;
  const Playground playground(checkpoints, data_dir);
  PlaygroundServer server(playground);
  const int port = server.bind(options.host, options.port);
  for (size_t i = 0; i < playground.models().size(); ++i)
    fmt::print("model {}: {}\n", i, options.checkpoints[i]);
  if (data_dir) fmt::print("test images: {} from {}\n", playground.test_images().count, *options.data_dir);
  if (!is_loopback(options.host))
    fmt::print("note: --host {} lets other machines reach this server\n", options.host);
  fmt::print("playground at {} (Ctrl-C stops)\n", url(options.host, port));
  std::fflush(stdout);

  {
    const StopOnSignal stop_on_signal(signals.set(), server);
    server.run();
  }
  fmt::print("stopped\n");
}

}  // namespace vae
