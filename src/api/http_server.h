// The HTTP transport: cpp-httplib, translating its requests into api::Request values and back.
#ifndef IMGPROC_API_HTTP_SERVER_H_
#define IMGPROC_API_HTTP_SERVER_H_

#include <chrono>
#include <memory>
#include <string>

#include "api/handlers.h"
#include "common/result.h"

namespace imgproc::api {

class GuardedServer;

struct ServerOptions {
  std::string bind = "127.0.0.1";
  int port = 8000;
  int threads = 16;           // connection threads kept ready
  int max_connections = 256;  // connections served at once (threads started on demand)
  size_t max_body_bytes = 11 * 1024 * 1024;  // the CSV limit plus multipart overhead
  size_t max_header_bytes = 32 * 1024;       // request line and headers together (431 above)
  std::chrono::milliseconds header_timeout{10'000};  // to receive them whole (408 after)
};

class HttpServer {
 public:
  HttpServer(Api& api, ServerOptions options);
  ~HttpServer();

  // Binds the socket; the port is taken when this returns OK.
  Status Bind();
  // Serves until Stop() is called (from another thread or a signal watcher).
  void Serve();
  void Stop();

 private:
  Api& api_;
  const ServerOptions options_;
  std::unique_ptr<GuardedServer> server_;
  int listen_socket_ = -1;
};

}  // namespace imgproc::api

#endif  // IMGPROC_API_HTTP_SERVER_H_
