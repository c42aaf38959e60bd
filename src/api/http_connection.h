// One HTTP/1.1 connection, served to its end: requests parsed by Boost.Beast's parser, answered by
// the Api, with the limits a public server needs against hostile clients.
//
// - The head (request line and headers) is bounded in size (431) and in time from its first byte
//   (408); malformed framing is refused (400): duplicate or conflicting Content-Length, a
//   Transfer-Encoding other than chunked, bare LF, whitespace before a colon, HTTP versions other
//   than 1.0 and 1.1 (505), and a body on a method that takes none.
// - The Api sees the head before any body is read (Api::Admit): an unknown route, a wrong method
//   or a missing API key is answered without reading a byte of the body.
// - The body is bounded after decoding (413 as soon as it passes the limit, whatever its framing:
//   Content-Length, chunked, gzip or deflate) and in time: it must arrive within `body_timeout`,
//   extended by a second per `body_min_rate` bytes received (Apache's mod_reqtimeout rule).
// - Byte ranges are not served (the whole body is, as HTTP allows).
// - Every refusal of the framing closes the connection: nothing after it can be taken for another
//   request.
#ifndef IMGPROC_API_HTTP_CONNECTION_H_
#define IMGPROC_API_HTTP_CONNECTION_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_set>

#include "api/handlers.h"
#include "common/mutex.h"

namespace imgproc::api {

struct ConnectionLimits {
  size_t max_header_bytes = 32 * 1024;  // request line and headers together
  // After decoding. No default of its own: the service's is derived from the largest CSV
  // (config::Finalize), so that the two cannot disagree.
  size_t max_body_bytes = 0;
  std::chrono::milliseconds header_timeout{10'000};  // to receive the head, from its first byte
  std::chrono::milliseconds body_timeout{20'000};
  uint64_t body_min_rate = 500;                    // bytes per second that extend body_timeout
  std::chrono::milliseconds read_timeout{10'000};  // without a byte, in any phase
  std::chrono::milliseconds write_timeout{10'000};
  std::chrono::milliseconds keep_alive{2'000};  // for the next request on a connection
  int max_requests = 1000;                      // per connection
};

// The connections of a server waiting for their next request, so that stopping can end them at
// once instead of waiting out their keep-alive.
class IdleConnections {
 public:
  // False once Stop() was called: the connection is to end.
  bool Enter(int fd) EXCLUDES(mu_);
  void Leave(int fd) EXCLUDES(mu_);
  // Ends every connection waiting now (their wait returns) and refuses later ones.
  void Stop() EXCLUDES(mu_);
  bool stopping() const EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::unordered_set<int> waiting_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
};

// Serves the requests of the connected socket `fd` from `peer` (its address) until the client
// closes it, a limit or error ends it, or `idle` is stopped; then closes `fd`.
void ServeConnection(int fd, const std::string& peer, Api& api, const ConnectionLimits& limits,
                     IdleConnections& idle);

}  // namespace imgproc::api

#endif  // IMGPROC_API_HTTP_CONNECTION_H_
