// PlaygroundServer: routes the page's files and the JSON API onto cpp-httplib. Every answer the
// server itself makes (a bad body, an unknown path, a body over the limit) is JSON with one "error"
// line, as the handlers' are.
#include "playground_server.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "playground_assets.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

using nlohmann::json;

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  // Numbers the JSON cannot hold become null rather than an exception mid-response.
  response.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

std::string error_for_status(int status) {
  switch (status) {
    case 400: return "not an HTTP request this server takes (the API is POST /api/<endpoint> with a JSON body)";
    case 404: return "no such path (the page is at /, the API under /api/)";
    case 405: return "method not allowed";
    case 413: return fmt::format("request body over {} bytes", kMaxRequestBytes);
    default: return fmt::format("HTTP {}", status);
  }
}

}  // namespace

struct PlaygroundServer::Impl {
  const Playground& playground;
  httplib::Server server;
  std::atomic<bool> running{false}, stop_requested{false};
};

PlaygroundServer::PlaygroundServer(const Playground& playground) : impl_(new Impl{playground, {}, {}, {}}) {
  httplib::Server& server = impl_->server;
  const Playground& api = playground;
  server.set_payload_max_length(kMaxRequestBytes);
  // SO_REUSEADDR alone, so a restarted server rebinds at once. httplib's default also sets
  // SO_REUSEPORT, with which a second server on a taken port binds too and steals half the requests.
  server.set_socket_options([](int socket) {
    const int on = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  });
  server.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});
  for (const WebAsset& asset : playground_assets()) {
    server.Get(std::string(asset.path), [asset](const httplib::Request&, httplib::Response& response) {
      response.set_content(asset.body.data(), asset.body.size(), std::string(asset.content_type).c_str());
    });
  }
  server.Get("/api/models", [&api](const httplib::Request&, httplib::Response& response) {
    const PlaygroundResponse answer = api.handle("models", json::object());
    send_json(response, answer.status, answer.body);
  });
  server.Post(R"(/api/([a-z_]+))", [&api](const httplib::Request& request, httplib::Response& response) {
    json body;
    try {
      body = json::parse(request.body);
    } catch (const json::parse_error& e) {
      send_json(response, 400, {{"error", fmt::format("request body: not JSON ({})", e.what())}});
      return;
    }
    const PlaygroundResponse answer = api.handle(request.matches[1].str(), body);
    send_json(response, answer.status, answer.body);
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (response.body.empty()) send_json(response, response.status, {{"error", error_for_status(response.status)}});
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
    std::string what = "unknown failure";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_json(response, 500, {{"error", what}});
  });
}

PlaygroundServer::~PlaygroundServer() = default;

int PlaygroundServer::bind(const std::string& host, int port) {
  httplib::Server& server = impl_->server;
  const int bound = port == 0 ? server.bind_to_any_port(host) : server.bind_to_port(host, port) ? port : -1;
  if (bound < 0)
    throw Error(fmt::format("--host {} --port {}: cannot listen there (in use, or not an address of this machine)",
                            host, port));
  return bound;
}

void PlaygroundServer::run() {
  impl_->running = true;
  if (!impl_->stop_requested) impl_->server.listen_after_bind();
  impl_->running = false;
}

void PlaygroundServer::stop() {
  // httplib's stop() does nothing until listen_after_bind() has marked the server running, so it is
  // repeated until run() returns; a stop before run() makes run() return at once.
  impl_->stop_requested = true;
  while (impl_->running) {
    impl_->server.stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace vae
