// A small HTTP server on 127.0.0.1 that a test owns: an image host, a fake ImgBB or a webhook
// receiver. Routes are plain cpp-httplib handlers; every request is recorded so tests can assert
// what reached the server (or that nothing did).
#ifndef IMGPROC_TESTS_SUPPORT_FIXTURE_SERVER_H_
#define IMGPROC_TESTS_SUPPORT_FIXTURE_SERVER_H_

#include <httplib.h>

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "guarded_server.h"

namespace imgproc::testing {

struct RecordedRequest {
  std::string method;
  std::string path;
  httplib::Headers headers;
};

class FixtureServer {
 public:
  FixtureServer();
  ~FixtureServer();  // stops the server and joins its thread

  FixtureServer(const FixtureServer&) = delete;
  FixtureServer& operator=(const FixtureServer&) = delete;

  // Register routes (and change httplib settings, e.g. to allow keep-alive, which is off by
  // default) before Start(). It is imgproc's own GuardedServer: kept-alive connections wait
  // without polling and are ended at once by Stop().
  httplib::Server& server() { return server_; }

  // Binds to 127.0.0.1 on a free port and starts serving on a background thread.
  void Start();
  void Stop();

  int port() const { return port_; }
  std::string Url(const std::string& path) const;  // "http://127.0.0.1:<port><path>"

  std::vector<RecordedRequest> requests() const;
  size_t CountRequests(const std::string& path) const;

 private:
  GuardedServer server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::vector<RecordedRequest> requests_;
};

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_FIXTURE_SERVER_H_
