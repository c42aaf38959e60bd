// The test and benchmark servers' cpp-httplib server (imgproc itself serves HTTP with
// src/api/http_connection.h): a connection loop of its own, serving each connection through a
// GuardedStream (guarded_server.cc). What it adds to cpp-httplib's: a request's head is bounded
// in size and in time to receive it (431 and 408), a kept-alive connection waits for its next
// request in one blocking recv (cpp-httplib's loop wakes every 10 ms per idle connection), small
// writes go out together, and stopping ends the idle kept-alive connections at once.
#ifndef IMGPROC_TESTS_SUPPORT_GUARDED_SERVER_H_
#define IMGPROC_TESTS_SUPPORT_GUARDED_SERVER_H_

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_set>

namespace imgproc::testing {

class GuardedStream;

class GuardedServer final : public httplib::Server {
 public:
  struct Limits {
    size_t max_head_bytes;                   // request line and headers together
    std::chrono::milliseconds head_timeout;  // to receive them whole
    std::chrono::milliseconds read_timeout;
    std::chrono::milliseconds write_timeout;
  };
  explicit GuardedServer(Limits limits);

  // bind_to_any_port(host), listening with the widest accept queue the kernel allows: Debian's
  // cpp-httplib is a shared library built with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG cannot
  // change it from here), and a burst of connections beyond it (imgproc opens up to 32 per host
  // at once) had SYNs dropped and sent again a second later: a 10-image request took 1.03 s
  // instead of 0.03. The port, or -1.
  int BindToAnyPort(const std::string& host);

  // httplib's stop, and the kept-alive connections waiting for their next request are ended
  // (their recv returns at once): else each would hold the shutdown up to the keep-alive timeout.
  // Requests being served are finished.
  void StopServing();

  // From a handler: the connection it serves is closed after its response.
  static void CloseConnectionAfterResponse();

 private:
  bool process_and_close_socket(socket_t sock) override;
  // Waits for the connection's next request, as one of the connections StopServing() can end.
  bool AwaitRequest(GuardedStream& stream, int sock, std::chrono::milliseconds idle);

  const Limits limits_;
  int listen_socket_ = -1;  // the socket the last bind made (set_socket_options sees it first)
  std::mutex awaiting_mu_;
  std::unordered_set<int> awaiting_;  // sockets waiting for their next request
  bool stopping_ = false;
};

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_GUARDED_SERVER_H_
