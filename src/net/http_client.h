// Outbound HTTP with libcurl, for image downloads, ImgBB uploads and webhooks.
//
// Every transfer of the process runs on one libcurl multi handle driven by one thread, so many
// transfers are in flight at once and connections are reused per host (HTTP/2 multiplexing over
// TLS where the server offers it); the calling thread waits for its own transfer.
//
// Every request goes through the same guard: only http/https, the host allow/deny lists, at most
// `max_redirects` hops (GET only; each hop checked before it is requested), and unless
// `allow_private` every address actually connected (after DNS) must be public (checked in
// libcurl's open-socket callback, so DNS tricks cannot get around it). Bodies are capped while
// streaming, whatever Content-Length says; one total timeout covers all hops.
#ifndef IMGPROC_NET_HTTP_CLIENT_H_
#define IMGPROC_NET_HTTP_CLIENT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace imgproc::net {

struct FetchOptions {
  bool allow_private = false;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds total_timeout{30000};
  int max_redirects = 5;
  uint64_t max_body_bytes = 50 * 1024 * 1024;
  // Host names (lower case; "*.example.com" matches its subdomains). A denied host is refused;
  // with an allow list, so is every host not on it. Checked on every redirect hop.
  std::vector<std::string> allow_hosts;
  std::vector<std::string> deny_hosts;
  // When set and it becomes true, a transfer in progress is aborted (kTransient "cancelled").
  const std::atomic<bool>* cancel = nullptr;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names, last value wins
  std::string effective_url;
};

// One part of a multipart/form-data body.
struct FormPart {
  std::string name;
  std::string value;
  std::string filename;  // non-empty: sent as a file part with this filename
  std::string content_type;
};

// Lets a download be held back once the start of its body is in, for a caller that can only tell
// from the content whether it has room for the rest (an image's header gives its pixel count).
// While held, the transfer is paused: libcurl stops reading the socket, so TCP holds the rest back
// at the server and what waits here is only the head.
enum class HeadVerdict { kUndecided, kGoOn, kHold };
struct HeadGate {
  // `admit` sees the head of a 2xx body each time it has doubled from 16 KiB, until it decides;
  // once this much is in (or the body is complete) the download goes on regardless.
  size_t max_bytes = 256 * 1024;
  // On the transfer thread, which serves every transfer: must not block.
  std::function<HeadVerdict(std::string_view head)> admit;
  // After kHold, on the calling thread, while the transfer is paused: may block. True lets the
  // download go on; false abandons it (Get then returns kTransient "abandoned: ...").
  std::function<bool()> wait;
};

// Must be called once per process before any other function here.
void InitHttpClient();

// GET `url`. A transport failure (refused destination, DNS, connect, timeout, size cap) is a
// non-OK Status: kPermanent for refused destinations, bad URLs and the size cap, kTransient for
// timeouts and connection errors. Any HTTP status, 4xx and 5xx included, is an OK result.
Result<HttpResponse> Get(const std::string& url, const FetchOptions& options,
                         const HeadGate* gate = nullptr);

// POST a body with the given content type and extra headers ("Name: value").
Result<HttpResponse> Post(const std::string& url, const std::string& content_type,
                          const std::string& body, const std::vector<std::string>& headers,
                          const FetchOptions& options);

// POST multipart/form-data.
Result<HttpResponse> PostForm(const std::string& url, const std::vector<FormPart>& parts,
                              const FetchOptions& options);

}  // namespace imgproc::net

#endif  // IMGPROC_NET_HTTP_CLIENT_H_
