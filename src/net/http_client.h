// Outbound HTTP with libcurl, for image downloads, ImgBB uploads and webhooks.
//
// Every transfer of the process runs on one libcurl multi handle driven by one thread, so many
// transfers are in flight at once and connections are reused per host (HTTP/2 multiplexing over
// TLS where the server offers it); the calling thread waits for its own transfer.
//
// Every request goes through the same guard: only http/https, the host allow/deny lists, at most
// `max_redirects` hops (GET only; each hop checked before it is requested), and unless
// `allow_private` every address actually connected (after DNS) must be public. The address is
// checked twice: in libcurl's open-socket callback, so a refused address is never even connected
// to, and again just before each request is sent on its connection (CURLOPT_PREREQFUNCTION), so a
// connection that another transfer with another policy opened and left in the shared cache (the
// operator's ImgBB endpoint, say) cannot carry a request this transfer's policy refuses. DNS tricks
// cannot get around either. Bodies are capped while streaming, whatever Content-Length says, and
// may count against a DownloadBudget shared by every download; one total timeout covers all hops.
#ifndef IMGPROC_NET_HTTP_CLIENT_H_
#define IMGPROC_NET_HTTP_CLIENT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"

namespace imgproc::net {

// Bounds the bytes of download bodies held in memory at once, across every download that shares
// it, whatever each body claims to be (a valid image header followed by tens of MiB of ancillary
// data has few pixels, so PIXEL_BUDGET alone does not bound it).
//
// A download's Share grows in steps as its body grows. TryGrow never waits: it runs on the
// transfer thread, which serves every transfer; when it refuses, the transfer is paused (TCP holds
// the rest at the server) and its calling thread waits in Grow. A Share is given back when it is
// destroyed or Released, which the owner of the body does once it has freed the body. It lives
// here rather than in the pipeline because the client itself takes the grants and pauses the
// transfers; the pipeline only owns one and frees its bodies.
//
// No download can wait for ever: the oldest Share (the first to ask, of those not yet released)
// always gets what it asks for, even over the limit, so it can finish, be freed and let the next
// one be the oldest. Every other grant must fit, so the bytes held never exceed the limit plus
// what the oldest holds (at most one body: its size cap). Waiting Shares are served oldest first,
// and a Share that does not wait gets nothing while others wait.
class DownloadBudget {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint64_t kStep = 1024 * 1024;

  class Share {
   public:
    Share() = default;
    Share(Share&& other) noexcept;
    Share& operator=(Share&& other) noexcept;
    ~Share() { Release(); }

    uint64_t bytes() const { return bytes_; }
    // Gives the bytes back (and the Share's place in line); it may then ask again, as a new one.
    void Release();

   private:
    friend class DownloadBudget;
    DownloadBudget* budget_ = nullptr;  // set from its first request until released
    uint64_t turn_ = 0;                 // its place in line: lower is older
    uint64_t bytes_ = 0;
  };

  explicit DownloadBudget(uint64_t limit, uint64_t step = kStep);
  DownloadBudget(const DownloadBudget&) = delete;
  DownloadBudget& operator=(const DownloadBudget&) = delete;

  // Grows `share` to at least `bytes` (the missing part rounded up to the step) if it may now: it
  // is the oldest, or nobody waits and the missing part fits. Never waits.
  bool TryGrow(Share& share, uint64_t bytes) EXCLUDES(mu_);
  // The same, but waits for its turn until `deadline`, or until `*cancel` becomes true (looked at
  // a few times a second). False when it gave up; `share` then holds what it held before.
  bool Grow(Share& share, uint64_t bytes, Clock::time_point deadline,
            const std::atomic<bool>* cancel = nullptr) EXCLUDES(mu_);

  uint64_t limit() const { return limit_; }
  uint64_t in_use() const EXCLUDES(mu_);
  size_t waiting() const EXCLUDES(mu_);  // Grow() calls waiting for their turn

 private:
  // A Grow() call waiting for its turn, in its own frame.
  struct Waiter {
    Share* share = nullptr;
    uint64_t missing = 0;
    bool granted = false;  // under the budget's mu_
    CondVar turn;
  };
  uint64_t Missing(Share& share, uint64_t bytes) REQUIRES(mu_);  // puts a new share in line
  bool Oldest(const Share& share) const REQUIRES(mu_);
  void Give(Share& share, uint64_t missing) REQUIRES(mu_);
  void Admit() REQUIRES(mu_);  // grants the waiting, in turn
  void Leave(Share& share) EXCLUDES(mu_);

  const uint64_t limit_;
  const uint64_t step_;
  mutable Mutex mu_;
  uint64_t in_use_ GUARDED_BY(mu_) = 0;
  uint64_t next_turn_ GUARDED_BY(mu_) = 1;
  // The turns of the Shares not released: begin() is the oldest.
  std::set<uint64_t> lined_up_ GUARDED_BY(mu_);
  std::map<uint64_t, Waiter*> waiting_ GUARDED_BY(mu_);  // by turn
};

struct FetchOptions {
  bool allow_private = false;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds total_timeout{30000};
  int max_redirects = 5;
  uint64_t max_body_bytes = 50 * 1024 * 1024;
  // Host names or IP addresses ("*.example.com" matches its subdomains), compared with the URL's
  // host both as NormalizeHost (net/address.h) writes them, so case, a trailing dot, brackets and
  // the spellings of one IP address make no difference. A denied host is refused; with an allow
  // list, so is every host not on it. Checked on every redirect hop. A denied IP address is also
  // refused as the address connected to, whatever name led there.
  std::vector<std::string> allow_hosts;
  std::vector<std::string> deny_hosts;
  // When set and it becomes true, a transfer in progress is aborted (kTransient "cancelled").
  const std::atomic<bool>* cancel = nullptr;
  // When set, every response body counts against it as it grows (HttpResponse::body_share), and
  // the transfer is paused while there is no room: until the total timeout, then kTransient. A
  // head that a HeadGate may still hold is counted only once the gate lets it go on (it is at
  // most HeadGate::max_bytes): so a download held for something else is never the oldest Share,
  // which must always be free to go on.
  DownloadBudget* body_budget = nullptr;
  // Extra request headers of a GET ("Name: value"), e.g. a conditional request's If-None-Match.
  std::vector<std::string> headers;
  // Whose transfer this is (an image's request): the connections to each host are shared fairly
  // between parties (net/host_slots.h), and the wait for one is not part of the timeout.
  std::string party;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names, last value wins
  std::string effective_url;
  // The body's bytes in FetchOptions::body_budget (empty without one): release it, or destroy the
  // response, once the body is freed.
  DownloadBudget::Share body_share;
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

// A request of any method (the S3 storage's PUT and HEAD), optionally signed by libcurl with AWS
// Signature V4, for the calls that Get, Post and PostForm do not cover.
struct HttpRequest {
  std::string method = "GET";  // HEAD asks for no body; any other method sends `body`
  std::string url;
  std::vector<std::string> headers;  // "Name: value"; libcurl signs them all
  std::string body;
  // Non-empty: CURLOPT_AWS_SIGV4's "provider1:provider2:region:service" (e.g.
  // "aws:amz:us-east-1:s3"), with the access key as user name and the secret as password.
  std::string aws_sigv4;
  std::string user;
  std::string password;
};

// The HTTP calls of the pipeline, the storages and the webhook sender, as a seam (like LevelDB's
// Env): CurlHttpClient() runs them on the process's libcurl multi loop (Get, Post and PostForm
// below); tests hand in fakes that answer without a network.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  [[nodiscard]] virtual Result<HttpResponse> Get(const std::string& url,
                                                 const FetchOptions& options,
                                                 const HeadGate* gate) = 0;
  [[nodiscard]] virtual Result<HttpResponse> Post(const std::string& url,
                                                  const std::string& content_type,
                                                  const std::string& body,
                                                  const std::vector<std::string>& headers,
                                                  const FetchOptions& options) = 0;
  [[nodiscard]] virtual Result<HttpResponse> PostForm(const std::string& url,
                                                      const std::vector<FormPart>& parts,
                                                      const FetchOptions& options) = 0;
  // Any request, no redirects followed. Not pure: a client that only downloads need not have it.
  [[nodiscard]] virtual Result<HttpResponse> Send(const HttpRequest& request,
                                                  const FetchOptions& options);
};

// The process's client: every call on one libcurl multi handle.
HttpClient& CurlHttpClient();

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

// Sends `request` (no redirects followed); any HTTP status is an OK result, as for Get.
Result<HttpResponse> Send(const HttpRequest& request, const FetchOptions& options);

}  // namespace imgproc::net

#endif  // IMGPROC_NET_HTTP_CLIENT_H_
