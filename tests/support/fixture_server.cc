#include "fixture_server.h"

#include <chrono>
#include <stdexcept>

namespace imgproc::testing {

FixtureServer::FixtureServer()
    : server_(GuardedServer::Limits{64 * 1024, std::chrono::seconds(10), std::chrono::seconds(5),
                                    std::chrono::seconds(5)}) {
  // Recorded before routing, so a request is counted before its client can see any answer
  // (httplib's logger runs only after the response is written: counting there races the test).
  server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back({req.method, req.path, req.headers});
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // One request per connection unless a test asks for keep-alive: each request of a test on a
  // connection of its own, whatever its client keeps open (libcurl's cache).
  server_.set_keep_alive_max_count(1);
}

FixtureServer::~FixtureServer() { Stop(); }

void FixtureServer::Start() {
  port_ = server_.BindToAnyPort("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("fixture server: cannot bind 127.0.0.1");
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void FixtureServer::Stop() {
  if (thread_.joinable()) {
    server_.StopServing();
    thread_.join();
  }
}

std::string FixtureServer::Url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<RecordedRequest> FixtureServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

size_t FixtureServer::CountRequests(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& r : requests_) n += r.path == path;
  return n;
}

}  // namespace imgproc::testing
