// The playground over loopback HTTP: a server on a free port in this process, every endpoint through
// a real client, concurrent clients, and the server's own answers (the page's files, bad bodies,
// unknown paths, bodies over the limit). Then `vae_cuda --serve` as a process: it prints its
// address, serves, and stops cleanly on SIGINT and SIGTERM.
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "playground.hpp"
#include "playground_assets.hpp"
#include "playground_server.hpp"
#include "model_support.hpp"
#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/error.hpp"
#include "vae/layout.hpp"

namespace vae {
namespace {

using nlohmann::json;
using testing_support::TempDir;

std::filesystem::path write_model(const std::filesystem::path& dir, int latent) {
  ModelConfig model;
  model.hidden = {16};
  model.latent = latent;
  Checkpoint c;
  c.config.model = model;
  c.data = DataIdentity{28, 28, 100, 1, 2};
  c.position = DataPosition{3, 0};
  c.state.params = testing_support::initial_params(model, 5);
  c.state.adam_m.assign(c.state.params.size(), 0.0f);
  c.state.adam_v.assign(c.state.params.size(), 0.0f);
  const auto file = dir / fmt::format("latent{}.safetensors", latent);
  write_checkpoint(file, c);
  return file;
}

// A server on a free loopback port, run on its own thread for the test's length.
class ServerTest : public testing::Test {
 protected:
  void SetUp() override {
    testing_support::write_tiny_mnist(dir_.path() / "data", 2, 6);
    playground_ = std::make_unique<Playground>(
        std::vector<std::filesystem::path>{write_model(dir_.path(), 2), write_model(dir_.path(), 5)}, dir_.path() / "data");
    server_ = std::make_unique<PlaygroundServer>(*playground_);
    port_ = server_->bind("127.0.0.1", 0);
    thread_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    server_->stop();
    thread_.join();
  }

  httplib::Client client() const { return httplib::Client("127.0.0.1", port_); }

  // POSTs a JSON request; expects `status` and a JSON body.
  json post(const std::string& endpoint, const json& request, int status = 200) const {
    httplib::Client c = client();
    const auto r = c.Post("/api/" + endpoint, request.dump(), "application/json");
    EXPECT_TRUE(r) << endpoint << ": " << httplib::to_string(r.error());
    if (!r) return {};
    EXPECT_EQ(r->status, status) << endpoint << ": " << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    return json::parse(r->body);
  }

  TempDir dir_;
  std::unique_ptr<Playground> playground_;
  std::unique_ptr<PlaygroundServer> server_;
  int port_ = 0;
  std::thread thread_;
};

TEST_F(ServerTest, ThePageIsServedFromTheBinary) {
  httplib::Client c = client();
  const auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("<title>vae_cuda playground</title>"), std::string::npos);
  // Every file the page names is served, and nothing it loads is from elsewhere (no CDN).
  for (const char* asset : {"/app.js", "/style.css"}) {
    const auto r = c.Get(asset);
    ASSERT_TRUE(r) << asset;
    EXPECT_EQ(r->status, 200) << asset;
    EXPECT_NE(page->body.find(std::string("\"") + asset + "\""), std::string::npos) << asset;
  }
  EXPECT_EQ(c.Get("/app.js")->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  for (const WebAsset& asset : playground_assets()) {
    EXPECT_EQ(std::string(asset.body).find("http://"), std::string::npos) << asset.path;
    EXPECT_EQ(std::string(asset.body).find("https://"), std::string::npos) << asset.path;
    EXPECT_EQ(c.Get(std::string(asset.path))->body, asset.body) << asset.path;
  }
}

TEST_F(ServerTest, EveryEndpointAnswersAsItsHandler) {
  httplib::Client c = client();
  const auto models = c.Get("/api/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body), playground_->handle("models", json::object()).body);
  EXPECT_EQ(post("models", json::object()), playground_->handle("models", json::object()).body);
  std::vector<float> x(784, 0.0f);
  for (int i = 300; i < 320; ++i) x[i] = 1.0f;
  const json canvas = {{"width", 40}, {"height", 30}, {"pixels", std::vector<float>(1200, 0.5f)}};
  const std::vector<std::pair<std::string, json>> requests = {
      {"encode", {{"model", 0}, {"pixels", x}}},
      {"encode", {{"model", 1}, {"canvas", canvas}}},
      {"decode", {{"model", 1}, {"z", {0.5, -1, 0, 2, 1}}}},
      {"decode", {{"model", 0}, {"latents", {{0, 0}, {1, -1}, {3, 3}}}}},
      {"reconstruct", {{"model", 0}, {"pixels", x}}},
      {"reconstruct", {{"model", 0}, {"canvas", canvas}}},
      {"interpolate", {{"model", 1}, {"images", {x, canvas}}, {"frames", 5}, {"mode", "spherical"}}},
      {"interpolate", {{"model", 0}, {"latents", {{0, 0}, {1, 1}}}, {"frames", 3}}},
      {"sample", {{"model", 1}, {"count", 4}, {"seed", 12}}},
      {"test_image", {{"index", 5}}},
  };
  for (const auto& [endpoint, request] : requests) {
    const PlaygroundResponse expected = playground_->handle(endpoint, request);
    ASSERT_EQ(expected.status, 200) << endpoint << expected.body.dump();
    EXPECT_EQ(post(endpoint, request), expected.body) << endpoint;
  }
  // A handler's 400 comes through with its one line.
  EXPECT_EQ(post("decode", {{"model", 0}, {"z", {1}}}, 400)["error"], "z: 1 values, 2 expected");
  EXPECT_EQ(post("test_image", {{"index", 6}}, 400)["error"].get<std::string>().rfind("index:", 0), 0u);
}

TEST_F(ServerTest, TheServersOwnRefusalsAreJsonLines) {
  httplib::Client c = client();
  const auto not_json = c.Post("/api/decode", "{\"model\": 0,", "application/json");
  ASSERT_TRUE(not_json);
  EXPECT_EQ(not_json->status, 400);
  EXPECT_EQ(json::parse(not_json->body)["error"].get<std::string>().rfind("request body: not JSON", 0), 0u);
  EXPECT_EQ(post("weights", json::object(), 404)["error"], "weights: no such endpoint");
  const auto no_path = c.Get("/etc/passwd");
  ASSERT_TRUE(no_path);
  EXPECT_EQ(no_path->status, 404);
  EXPECT_TRUE(json::parse(no_path->body).contains("error"));
  // Checkpoints are reached by id only: a path where an id goes is a 400, a path in the URL a 404.
  EXPECT_EQ(post("decode", {{"model", "/etc/passwd"}, {"z", {0, 0}}}, 400)["error"].get<std::string>().rfind("model:", 0), 0u);
  EXPECT_EQ(c.Post("/api/../../latent2.safetensors", "{}", "application/json")->status, 404);
  // Numbers past a double's range and nesting past any request's are the client's mistakes, not 500s.
  const auto refused = [&](const std::string& body) {
    const auto r = c.Post("/api/decode", body, "application/json");
    EXPECT_TRUE(r);
    if (!r) return std::string();
    EXPECT_EQ(r->status, 400) << body.substr(0, 40);
    return json::parse(r->body)["error"].get<std::string>();
  };
  EXPECT_EQ(refused(R"({"model": 0, "z": [1e400, 0]})").rfind("request body: not JSON", 0), 0u);
  EXPECT_EQ(refused(std::string(100000, '[')), "request body: nested deeper than 8");
  // A GET of an API endpoint is a 404 that says the API takes POST.
  const auto get_decode = c.Get("/api/decode");
  ASSERT_TRUE(get_decode);
  EXPECT_EQ(get_decode->status, 404);
  EXPECT_NE(json::parse(get_decode->body)["error"].get<std::string>().find("POST /api/"), std::string::npos);
  // A body over the limit is refused before it is parsed.
  const std::string huge(kMaxRequestBytes + 1, ' ');
  const auto too_big = c.Post("/api/decode", huge, "application/json");
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413);
  EXPECT_NE(json::parse(too_big->body)["error"].get<std::string>().find("over"), std::string::npos);
  // The server still answers after all that.
  EXPECT_EQ(post("decode", {{"model", 0}, {"z", {0, 0}}}).count("pixels"), 1u);
}

// Sends `request` as it is on a new connection and returns the response's status and body.
std::pair<int, std::string> raw_exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return {-1, "connect failed"};
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.1 ", 0) != 0 || body == std::string::npos) return {-1, response};
  return {std::stoi(response.substr(9, 3)), response.substr(body + 4)};
}

TEST_F(ServerTest, BodiesTheSizeLimitCannotHoldAreRefusedUnread) {
  // httplib holds only a body with a Content-Length to the limit; anything else is refused before
  // it is read, with the JSON type required too (so a web page's plain form post cannot reach it).
  const std::string decode = R"({"model": 0, "z": [0, 0]})";
  const auto post = [&](const std::string& headers, const std::string& body) {
    return raw_exchange(port_, "POST /api/decode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + "\r\n" + body);
  };
  const std::string length = fmt::format("Content-Length: {}\r\n", decode.size());
  const auto chunked = post("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                            fmt::format("{:x}\r\n{}\r\n0\r\n\r\n", decode.size(), decode));
  EXPECT_EQ(chunked.first, 415) << chunked.second;
  EXPECT_NE(chunked.second.find("Transfer-Encoding"), std::string::npos) << chunked.second;
  const auto gzip = post("Content-Type: application/json\r\nContent-Encoding: gzip\r\n" + length, decode);
  EXPECT_EQ(gzip.first, 415) << gzip.second;
  const auto no_length = post("Content-Type: application/json\r\n", decode);
  EXPECT_EQ(no_length.first, 411) << no_length.second;
  EXPECT_NE(no_length.second.find("Content-Length"), std::string::npos) << no_length.second;
  const auto form = post("Content-Type: application/x-www-form-urlencoded\r\n" + length, decode);
  EXPECT_EQ(form.first, 415) << form.second;
  EXPECT_NE(form.second.find("application/json"), std::string::npos) << form.second;
  // The same request, plain and typed, is answered.
  const auto plain = post("Content-Type: application/json\r\n" + length, decode);
  EXPECT_EQ(plain.first, 200) << plain.second;
  EXPECT_EQ(json::parse(plain.second), playground_->handle("decode", json::parse(decode)).body);
}

TEST_F(ServerTest, ConcurrentClientsGetTheAnswersTheyWouldGetAlone) {
  std::vector<json> requests;
  for (int i = 0; i < 8; ++i) requests.push_back({{"model", i % 2}, {"count", 3}, {"seed", i}});
  std::vector<json> alone;
  for (const json& r : requests) alone.push_back(playground_->handle("sample", r).body);
  std::vector<std::vector<json>> together(requests.size());
  std::vector<std::thread> clients;
  for (size_t t = 0; t < requests.size(); ++t)
    clients.emplace_back([&, t] {
      httplib::Client c = client();
      for (int repeat = 0; repeat < 4; ++repeat) {
        const auto r = c.Post("/api/sample", requests[t].dump(), "application/json");
        together[t].push_back(r && r->status == 200 ? json::parse(r->body) : json());
      }
    });
  for (std::thread& t : clients) t.join();
  for (size_t t = 0; t < requests.size(); ++t)
    for (const json& answer : together[t]) EXPECT_EQ(answer, alone[t]) << t;
}

TEST(PlaygroundServer, ATakenPortIsAnErrorNamingTheAddress) {
  TempDir dir;
  const Playground playground(std::vector<std::filesystem::path>{write_model(dir.path(), 2)});
  PlaygroundServer first(playground), second(playground);
  const int port = first.bind("127.0.0.1", 0);
  try {
    second.bind("127.0.0.1", port);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("--port {}", port)), std::string::npos) << e.what();
  }
  EXPECT_THROW(second.bind("not-an-address.invalid", 0), Error);
}

TEST(PlaygroundServer, AStopBeforeRunIsNotLost) {
  TempDir dir;
  const Playground playground(std::vector<std::filesystem::path>{write_model(dir.path(), 2)});
  PlaygroundServer server(playground);
  server.bind("127.0.0.1", 0);
  server.stop();
  server.run();  // returns at once
}

// `vae_cuda --serve` as a process, stopped by `signal`: its output and exit status.
struct ServedProcess {
  std::string output;
  int exit_code = -1;
  bool answered = false;  // GET /api/models succeeded at the printed address
};

ServedProcess serve_then_signal(const std::vector<std::string>& args, int signal) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    close(out[0]);
    std::vector<char*> argv = {const_cast<char*>(VAE_CLI_PATH)};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(VAE_CLI_PATH, argv.data());
    _exit(127);
  }
  close(out[1]);
  ServedProcess result;
  FILE* stream = fdopen(out[0], "r");
  char line[4096];
  const std::regex address(R"(playground at http://127\.0\.0\.1:(\d+)/)");
  while (fgets(line, sizeof line, stream)) {
    result.output += line;
    std::smatch match;
    const std::string text(line);
    if (std::regex_search(text, match, address)) {
      httplib::Client c("127.0.0.1", std::stoi(match[1]));
      const auto r = c.Get("/api/models");
      result.answered = r && r->status == 200;
      kill(pid, signal);
    }
  }
  fclose(stream);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

TEST(ServeCommand, PrintsItsAddressServesAndStopsCleanlyOnSigintAndSigterm) {
  TempDir dir;
  const std::string model = write_model(dir.path(), 2).string();
  for (int signal : {SIGINT, SIGTERM}) {
    const ServedProcess served = serve_then_signal({"--serve", model, "--port", "0"}, signal);
    EXPECT_TRUE(served.answered) << served.output;
    EXPECT_EQ(served.exit_code, 0) << served.output;
    EXPECT_NE(served.output.find("model 0: " + model), std::string::npos) << served.output;
    EXPECT_NE(served.output.find("stopped"), std::string::npos) << served.output;
  }
}

TEST(ServeCommand, BadInvocationsAreOneLineErrors) {
  TempDir dir;
  const std::string model = write_model(dir.path(), 2).string();
  const std::vector<testing_support::ExpectedFailure> cases = {
      {"--serve", 2, "--serve"},
      {"--serve " + model + " --port 65536", 2, "--port"},
      {"--serve " + model + " --port -1", 2, "--port"},
      {"--serve " + model + " --port http", 2, "--port"},
      {"--sample " + model + " --port 8080", 2, "--port goes with --serve"},
      {"--sample " + model + " --host 0.0.0.0", 2, "--host goes with --serve"},
      {"--serve " + model + " --train " + dir.path().string(), 2, "exactly one of"},
      {"--serve " + (dir.path() / "absent.safetensors").string(), 1, "absent.safetensors"},
      {"--serve " + model + " --data-dir " + (dir.path() / "no-data").string(), 1, "no-data"},
      {"--serve " + model + " --host 203.0.113.9 --port 0", 1, "--host 203.0.113.9"},
  };
  testing_support::expect_one_line_errors(VAE_CLI_PATH, "", cases);
}

}  // namespace
}  // namespace vae
