// libFuzzer target: the bytes a client sends on one connection, served by the real transport
// (Beast's parser, the framing rules, multipart, the Api) over a socket pair. Any input must be
// answered with well-formed responses, or the connection closed; never a crash, a hang or a
// sanitizer report.
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "api/handlers.h"
#include "api/http_connection.h"
#include "store/store.h"

namespace {

imgproc::api::Api& TheApi() {
  static std::unique_ptr<imgproc::store::Store> store = [] {
    spdlog::set_level(spdlog::level::off);
    auto s = imgproc::store::OpenStore("sqlite://:memory:");
    if (!s.ok()) __builtin_trap();
    return std::move(*s);
  }();
  static imgproc::api::Api api(
      *store, *store,
      [] {
        imgproc::api::ApiOptions options;
        options.csv_limits.max_bytes = 16 * 1024;
        return options;
      }(),
      nullptr);
  return api;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) __builtin_trap();
  std::string answer;
  // The client: sends the input, says it has no more, and reads until the server closes.
  std::thread client([&] {
    size_t sent = 0;
    while (sent < size) {
      const ssize_t n = send(fds[1], data + sent, size - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    shutdown(fds[1], SHUT_WR);
    char buf[16 * 1024];
    for (ssize_t n; (n = recv(fds[1], buf, sizeof buf, 0)) > 0;) {
      if (answer.size() < (1u << 20)) answer.append(buf, static_cast<size_t>(n));
    }
    close(fds[1]);
  });
  imgproc::api::ConnectionLimits limits;
  limits.max_header_bytes = 8 * 1024;
  limits.max_body_bytes = 32 * 1024;
  limits.header_timeout = std::chrono::milliseconds(1000);
  limits.body_timeout = std::chrono::milliseconds(1000);
  limits.body_min_rate = 500;
  limits.max_requests = 50;
  imgproc::api::IdleConnections idle;
  imgproc::api::ServeConnection(fds[0], "127.0.0.1", TheApi(), limits, idle);
  client.join();
  // Whatever was answered is HTTP responses, one after another.
  if (!answer.empty() && answer.rfind("HTTP/1.", 0) != 0) __builtin_trap();
  return 0;
}
