// PlaygroundServer: routes the page's files and the JSON API onto cpp-httplib. Every answer the
// server itself makes (a bad body, an unknown path, a body over the limit) is JSON with one "error"
// line, as the handlers' are.
#include "playground_server.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <omp.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "playground_assets.hpp"
#include "request_fields.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

using nlohmann::json;

// Deeper than any request (interpolate's images[i].canvas.pixels is 4): a body of brackets would
// otherwise cost the parser about 75 bytes of memory per byte.
constexpr int kMaxJsonDepth = 8;

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  // Numbers the JSON cannot hold become null rather than an exception mid-response.
  response.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

std::string error_for_status(int status) {
  switch (status) {
    case 400: return "not an HTTP request this server takes (the API is POST /api/<endpoint> with a JSON body)";
    case 404: return "no such path (the page is at /; the API is POST /api/<endpoint>, and GET /api/models)";
    case 413: return fmt::format("request body over {} bytes", kMaxRequestBytes);
    default: return fmt::format("HTTP {}", status);
  }
}

// httplib holds only a body with a Content-Length to the size limit: a chunked or compressed one
// would be read (and inflated) whole. So an API request must have a length, no transfer or content
// encoding, and the JSON content type, which also keeps other web sites' plain form posts out.
httplib::Server::HandlerResponse refuse_unlimited_bodies(const httplib::Request& request, httplib::Response& response) {
  if (request.method != "POST") return httplib::Server::HandlerResponse::Unhandled;
  std::string refusal;
  int status = 400;
  if (request.has_header("Transfer-Encoding") || request.has_header("Content-Encoding"))
    refusal = "request body: send it plain, with a Content-Length (no Transfer-Encoding or Content-Encoding)", status = 415;
  else if (!request.has_header("Content-Length"))
    refusal = "request body: a Content-Length is required", status = 411;
  else if (request.get_header_value("Content-Type").rfind("application/json", 0) != 0)
    refusal = "request body: Content-Type must be application/json", status = 415;
  if (refusal.empty()) return httplib::Server::HandlerResponse::Unhandled;
  response.set_header("Connection", "close");  // the body is not read, so the connection cannot go on
  send_json(response, status, {{"error", refusal}});
  return httplib::Server::HandlerResponse::Handled;
}

// The request body as JSON; a RequestError for text that is not JSON, a number past a double's range
// or nesting deeper than kMaxJsonDepth.
json parse_body(const std::string& body) {
  const auto depth_limit = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) throw RequestError(fmt::format("request body: nested deeper than {}", kMaxJsonDepth));
    return true;
  };
  try {
    return json::parse(body, depth_limit);
  } catch (const json::exception& e) {
    throw RequestError(fmt::format("request body: not JSON ({})", e.what()));
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
  // An idle keep-alive connection (an open tab) holds a worker until this runs out, and so delays
  // a stop: 2 s rather than httplib's 5.
  server.set_keep_alive_timeout(2);
  // SO_REUSEADDR alone, so a restarted server rebinds at once. httplib's default also sets
  // SO_REUSEPORT, with which a second server on a taken port binds too and steals half the requests.
  server.set_socket_options([](int socket) {
    const int on = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  });
  server.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});
  server.set_pre_routing_handler(refuse_unlimited_bodies);
  for (const WebAsset& asset : playground_assets()) {
    server.Get(std::string(asset.path), [asset](const httplib::Request&, httplib::Response& response) {
      response.set_content(asset.body.data(), asset.body.size(), std::string(asset.content_type).c_str());
    });
  }
  // One request decodes a few rows: on one core, so that the server's many threads do not each
  // start a team of OpenMP threads as wide as the machine.
  const auto answer = [&api](const std::string& endpoint, const json& request, httplib::Response& response) {
    omp_set_num_threads(1);
    const PlaygroundResponse r = api.handle(endpoint, request);
    send_json(response, r.status, r.body);
  };
  server.Get("/api/models", [answer](const httplib::Request&, httplib::Response& response) {
    answer("models", json::object(), response);
  });
  server.Post(R"(/api/([a-z_]+))", [answer](const httplib::Request& request, httplib::Response& response) {
    json body;
    try {
      body = parse_body(request.body);
    } catch (const RequestError& e) {
      send_json(response, 400, {{"error", e.what()}});
      return;
    }
    answer(request.matches[1].str(), body, response);
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
  const bool served = impl_->stop_requested || impl_->server.listen_after_bind();
  impl_->running = false;
  // httplib returns false when accepting failed (no file descriptors left, say), not when stopped.
  if (!served && !impl_->stop_requested) throw Error("the playground server stopped accepting connections");
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
