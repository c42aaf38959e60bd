// The HTTP server: accepts connections on one address and serves each on a thread of its own
// (http_connection.h), handing every request to the Api as plain values.
#ifndef IMGPROC_API_HTTP_SERVER_H_
#define IMGPROC_API_HTTP_SERVER_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "api/handlers.h"
#include "api/http_connection.h"
#include "common/mutex.h"
#include "common/result.h"

namespace imgproc::api {

struct ServerOptions {
  std::string bind = "127.0.0.1";
  int port = 8000;            // 0: any free port
  int threads = 16;           // connection threads kept ready
  int max_connections = 256;  // connections served at once (threads started on demand)
  // Connections one client address may hold at once (0: no limit); more are refused at once with
  // a 503, so that one client's slow connections cannot take every thread from the others.
  int max_connections_per_client = 64;
  ConnectionLimits limits;
};

class HttpServer {
 public:
  HttpServer(Api& api, ServerOptions options);
  ~HttpServer();

  // Binds the socket; the port is taken when this returns OK.
  Status Bind();
  // Serves until Stop() is called (from another thread or a signal watcher).
  void Serve();
  // Stops accepting, ends the connections waiting for their next request at once, and lets the
  // requests being served finish; Serve() returns once they have.
  void Stop();

 private:
  class ThreadPool;
  void Accept();
  // Counts a new connection of `peer`; false when it already holds its share.
  bool Admit(const std::string& peer) EXCLUDES(clients_mu_);
  void Release(const std::string& peer) EXCLUDES(clients_mu_);

  Api& api_;
  const ServerOptions options_;
  IdleConnections idle_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd: Stop() wakes the accept loop with it
  std::unique_ptr<ThreadPool> pool_;
  Mutex clients_mu_;
  std::map<std::string, int> clients_ GUARDED_BY(clients_mu_);  // connections per client address
};

}  // namespace imgproc::api

#endif  // IMGPROC_API_HTTP_SERVER_H_
