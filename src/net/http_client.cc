#include "net/http_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "common/thread_name.h"
#include "net/address.h"
#include "net/host_slots.h"

namespace imgproc::net {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
  void operator()(curl_mime* m) const { curl_mime_free(m); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, CurlDeleter>;
using MimePtr = std::unique_ptr<curl_mime, CurlDeleter>;

// Null when out of memory.
SlistPtr HeaderList(const std::vector<std::string>& lines) {
  SlistPtr list;
  for (const auto& line : lines) {
    curl_slist* head = curl_slist_append(list.get(), line.c_str());
    if (head == nullptr) return nullptr;
    static_cast<void>(list.release());  // `head` is the same list, or a new one when it was empty
    list.reset(head);
  }
  return list;
}

// Every transfer of the process runs on one libcurl multi handle, driven by one thread: many
// transfers in flight at once, connections (and HTTP/2 streams, where a server offers them) reused
// per host, one DNS cache. Callers hand over a configured easy handle and wait for its result.
//
// The thread drives libcurl with its socket interface over an epoll set: each wake-up hands
// libcurl only the sockets that are ready, where curl_multi_perform() would walk every transfer
// and curl_multi_poll() every socket (dozens of each when the hosts are slow).
class MultiLoop {
 public:
  static MultiLoop& Get() {
    static MultiLoop loop;
    return loop;
  }

  // Runs `easy` to completion (or failure) and returns libcurl's result for it. When `cancel` is
  // set and becomes true, the transfer is aborted within a second (CURLE_ABORTED_BY_CALLBACK).
  // When one of its callbacks has paused it with Hold(), `on_hold` runs on this thread: true
  // resumes the transfer, false aborts it (CURLE_ABORTED_BY_CALLBACK).
  CURLcode Perform(CURL* easy, const std::atomic<bool>* cancel,
                   const std::function<bool()>* on_hold) {
    if (!thread_.joinable()) return CURLE_OUT_OF_MEMORY;  // no epoll set or eventfd (no fds left)
    Pending pending;
    pending.easy = easy;
    pending.cancel = cancel;
    {
      MutexLock lock(&mu_);
      incoming_.push_back(&pending);
    }
    Wake();
    MutexLock lock(&mu_);
    while (true) {
      while (!pending.done && !pending.held) pending.finished.Wait(&mu_);
      if (pending.done) return pending.result;
      pending.held = false;
      lock.Unlock();
      const bool go_on = on_hold == nullptr || (*on_hold)();
      lock.Lock();
      if (pending.done) return pending.result;  // failed or timed out meanwhile
      decided_.emplace_back(&pending, go_on);
      Wake();
    }
  }

  // From a write callback of `easy`, on the loop's thread, which then returns
  // CURL_WRITEFUNC_PAUSE: hands the decision to the transfer's caller.
  void Hold(CURL* easy) {
    Pending* p = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p);
    MutexLock lock(&mu_);
    p->held = true;
    p->finished.Signal();
  }

 private:
  struct Pending {
    CURL* easy = nullptr;
    const std::atomic<bool>* cancel = nullptr;
    CURLcode result = CURLE_OK;
    bool done = false;  // guarded by mu_
    bool held = false;  // guarded by mu_: paused, its caller to decide
    CondVar finished;   // only its own caller waits on it
  };

  // Hands `p` its result and wakes its caller.
  void Finish(Pending* p, CURLcode result) REQUIRES(mu_) {
    p->result = result;
    p->done = true;
    p->finished.Signal();
  }

  MultiLoop()
      : multi_(curl_multi_init()),
        epoll_(epoll_create1(EPOLL_CLOEXEC)),
        wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    // No bound per host here: HostSlots (Perform) keeps it before a transfer starts. libcurl's
    // own queued transfers inside, their timeout running, and one that waited it out failed as
    // "Failed to resolve host ... timeout after 0 ms".
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, kMaxCachedConnections);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &MultiLoop::OnSocket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &MultiLoop::OnTimer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = wake_;
    if (epoll_ >= 0 && wake_ >= 0 && epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &event) == 0) {
      thread_ = std::thread([this] { Run(); });
    }
  }

  ~MultiLoop() {
    {
      MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) {
      Wake();
      thread_.join();
    }
    curl_multi_cleanup(multi_);
    if (wake_ >= 0) close(wake_);
    if (epoll_ >= 0) close(epoll_);
  }

  void Wake() const {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_, &one, sizeof one);  // a full counter is awake anyway
  }

  // libcurl says which events of socket `s` it waits for now.
  static int OnSocket(CURL* /*easy*/, curl_socket_t s, int what, void* user, void* /*socketp*/) {
    auto* self = static_cast<MultiLoop*>(user);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(self->epoll_, EPOLL_CTL_DEL, s, nullptr);  // fails harmlessly if already closed
      return 0;
    }
    epoll_event event{};
    event.events =
        ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    event.data.fd = s;
    // A closed socket leaves the set by itself, so a new one with its number may be "known".
    if (epoll_ctl(self->epoll_, EPOLL_CTL_MOD, s, &event) != 0 && errno == ENOENT) {
      epoll_ctl(self->epoll_, EPOLL_CTL_ADD, s, &event);
    }
    return 0;
  }

  // libcurl asks to be called back after `timeout_ms` (-1: no timer wanted).
  static int OnTimer(CURLM* /*multi*/, long timeout_ms, void* user) {
    auto* self = static_cast<MultiLoop*>(user);
    self->timer_due_ =
        timeout_ms < 0 ? std::chrono::steady_clock::time_point::max()
                       : std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    return 0;
  }

  // Adds the transfers handed over since the last turn, aborts the cancelled ones and the held
  // ones their callers let go, and lists the held ones to resume in resuming_; false once the loop
  // is to stop.
  bool TakeIncoming() {
    MutexLock lock(&mu_);
    if (stop_) return false;
    for (Pending* p : incoming_) {
      curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
      if (curl_multi_add_handle(multi_, p->easy) != CURLM_OK) {
        Finish(p, CURLE_OUT_OF_MEMORY);
      } else {
        active_.push_back(p);
      }
    }
    incoming_.clear();
    for (const auto& [p, go_on] : decided_) {
      // Only the loop finishes transfers, and a finished one may be gone already.
      const auto it = std::find(active_.begin(), active_.end(), p);
      if (it == active_.end()) continue;
      if (go_on) {
        resuming_.push_back(p->easy);
      } else {
        curl_multi_remove_handle(multi_, p->easy);
        active_.erase(it);
        Finish(p, CURLE_ABORTED_BY_CALLBACK);
      }
    }
    decided_.clear();
    const auto now = std::chrono::steady_clock::now();
    if (now < next_cancel_check_) return true;
    next_cancel_check_ = now + kCancelCheckPeriod;
    for (size_t i = 0; i < active_.size();) {
      Pending* p = active_[i];
      if (p->cancel != nullptr && p->cancel->load()) {
        curl_multi_remove_handle(multi_, p->easy);
        active_[i] = active_.back();
        active_.pop_back();
        Finish(p, CURLE_ABORTED_BY_CALLBACK);
      } else {
        ++i;
      }
    }
    return true;
  }

  // Hands finished transfers back to their callers.
  void ReapFinished() {
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      Pending* p = nullptr;
      curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &p);
      const CURLcode result = message->data.result;
      curl_multi_remove_handle(multi_, message->easy_handle);
      MutexLock lock(&mu_);
      if (auto it = std::find(active_.begin(), active_.end(), p); it != active_.end()) {
        active_.erase(it);
      }
      Finish(p, result);
    }
  }

  void Run() {
    NameThisThread("imgproc-curl");
    std::array<epoll_event, 64> events;
    int running = 0;
    // TakeIncoming may ask for a timer of 0: handled below in the same turn.
    while (TakeIncoming()) {
      // Outside mu_: libcurl delivers the held data again from within curl_easy_pause.
      for (CURL* easy : resuming_) curl_easy_pause(easy, CURLPAUSE_CONT);
      resuming_.clear();
      const auto now = std::chrono::steady_clock::now();
      int wait_ms = static_cast<int>(kCancelCheckPeriod.count());
      if (timer_due_ <= now) {
        wait_ms = 0;
      } else if (timer_due_ - now < kCancelCheckPeriod) {
        // Rounded up: waking before the timer is due would only spin.
        wait_ms = static_cast<int>(
            std::chrono::ceil<std::chrono::milliseconds>(timer_due_ - now).count());
      }
      const int ready = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), wait_ms);
      for (int i = 0; i < ready; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_) {
          uint64_t count;
          [[maybe_unused]] ssize_t n = read(wake_, &count, sizeof count);
          continue;
        }
        int mask = 0;
        if (events[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(multi_, fd, mask, &running);
      }
      if (timer_due_ <= std::chrono::steady_clock::now()) {
        timer_due_ = std::chrono::steady_clock::time_point::max();  // libcurl sets the next one
        curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      ReapFinished();
    }
  }

  static constexpr long kMaxCachedConnections = 256;
  static constexpr std::chrono::milliseconds kCancelCheckPeriod{1000};

  CURLM* multi_;
  const int epoll_;
  const int wake_;  // an eventfd: Perform() and the destructor wake the loop with it
  // Only the loop's thread touches these (libcurl calls OnTimer from within the loop's calls).
  std::chrono::steady_clock::time_point timer_due_ = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point next_cancel_check_;
  Mutex mu_;
  std::vector<Pending*> incoming_ GUARDED_BY(mu_);
  std::vector<Pending*> active_ GUARDED_BY(mu_);  // added to the multi handle, not finished
  std::vector<std::pair<Pending*, bool>> decided_ GUARDED_BY(mu_);  // held ones: go on or not
  std::vector<CURL*> resuming_;  // the loop's own: to resume this turn
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// State shared with libcurl's callbacks during one transfer.
struct Transfer {
  CURL* easy = nullptr;
  const FetchOptions* options = nullptr;
  const HeadGate* gate = nullptr;       // may be null
  std::vector<std::string> denied_ips;  // the deny list's IP addresses, normalised
  HttpResponse response;
  bool too_large = false;
  bool abandoned = false;        // the gate's wait let it go
  bool gate_passed = false;      // no gate, or it has let the body through
  size_t next_look = 16 * 1024;  // body size at which the gate looks again
  uint64_t content_length = 0;   // as announced; 0 when not
  // Held for room in options->body_budget (else, when held, by the gate): the body's size wanted.
  bool budget_held = false;
  uint64_t budget_wanted = 0;
  bool budget_gave_up = false;  // no room came before the deadline (or it was cancelled)
  std::string refusal;          // why the SSRF policy or the deny list refused an address
};

std::string IpText(const sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buf, sizeof buf);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

// Why the transfer may not talk to `ip` (the address connected, as text), or empty when it may.
std::string AddressRefusal(const Transfer& t, const std::string& ip) {
  if (!t.options->allow_private && !IsPublicAddress(ip)) {
    return "destination not allowed: " + ip + " is not a public address";
  }
  if (!t.denied_ips.empty()) {
    const std::string normal = NormalizeHost(ip);
    if (std::find(t.denied_ips.begin(), t.denied_ips.end(), normal) != t.denied_ips.end()) {
      return "destination not allowed: " + normal + " is denied";
    }
  }
  return "";
}

// Runs for every connection libcurl opens (every address tried, every redirect hop), after DNS,
// so that a refused address is never even connected to.
curl_socket_t OpenSocket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  // An address of another family is "?", which is not public and matches no denied address.
  if (std::string refusal = AddressRefusal(*t, IpText(&address->addr)); !refusal.empty()) {
    t->refusal = std::move(refusal);
    return CURL_SOCKET_BAD;
  }
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

// Runs before every request is sent, on a new connection or one taken from the cache, which is
// shared by every transfer of the process whatever its policy: the ImgBB client (operator
// configured, private allowed) may have opened it. So the address is vetted here for this
// transfer, whoever connected.
// NOLINTNEXTLINE(readability-non-const-parameter): curl_prereq_callback's signature
int BeforeRequest(void* user, char* primary_ip, char* /*local_ip*/, int /*primary_port*/,
                  int /*local_port*/) {
  auto* t = static_cast<Transfer*>(user);
  std::string refusal = AddressRefusal(*t, primary_ip != nullptr ? primary_ip : "");
  if (refusal.empty()) return CURL_PREREQFUNC_OK;
  t->refusal = std::move(refusal);
  return CURL_PREREQFUNC_ABORT;  // the transfer ends with CURLE_ABORTED_BY_CALLBACK, unsent
}

// Whether the body received so far may go on now: asks the gate when it has grown enough, and
// when the gate holds it, hands the decision to the caller.
bool PassGate(Transfer* t) {
  std::string& body = t->response.body;
  if (body.size() < t->next_look) return true;
  long code = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
  const HeadVerdict verdict = code < 200 || code >= 300 ? HeadVerdict::kGoOn : t->gate->admit(body);
  if (verdict == HeadVerdict::kUndecided && body.size() < t->gate->max_bytes) {
    t->next_look = body.size() * 2;
    return true;
  }
  t->gate_passed = true;
  if (verdict != HeadVerdict::kHold) return true;
  MultiLoop::Get().Hold(t->easy);
  return false;
}

// Whether the body may grow to `size` bytes: takes what its share of the budget lacks, or holds
// the transfer for its caller to wait for room. The announced length is asked for at once, so the
// body is reserved in one allocation (WriteBody) and counted whole.
bool HasRoom(Transfer* t, size_t size) {
  DownloadBudget* budget = t->options->body_budget;
  // A head that the gate may still hold is not counted (see FetchOptions::body_budget).
  if (budget == nullptr || !t->gate_passed) return true;
  const uint64_t wanted = std::max<uint64_t>(size, t->content_length);
  DownloadBudget::Share& share = t->response.body_share;
  if (share.bytes() >= wanted || budget->TryGrow(share, wanted)) return true;
  t->budget_held = true;
  t->budget_wanted = wanted;
  MultiLoop::Get().Hold(t->easy);
  return false;
}

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  // Enforced here because curl 7.88 does not stop a download without Content-Length at
  // CURLOPT_MAXFILESIZE.
  std::string& body = t->response.body;
  if (body.size() + n > t->options->max_body_bytes) {
    t->too_large = true;
    return 0;  // makes libcurl abort with CURLE_WRITE_ERROR
  }
  // Not taken: libcurl keeps this data and delivers it again when the transfer resumes.
  if (!HasRoom(t, body.size() + n)) return CURL_WRITEFUNC_PAUSE;
  // One allocation for the body instead of a doubling series of copies, once past the gate: a
  // download held at its head holds no more than the head.
  if (t->gate_passed && body.capacity() < t->content_length) {
    body.reserve(static_cast<size_t>(t->content_length));
  }
  body.append(data, n);
  if (!t->gate_passed && !PassGate(t)) {
    // Given back: libcurl keeps this data and delivers it again when the transfer resumes.
    body.resize(body.size() - n);
    return CURL_WRITEFUNC_PAUSE;
  }
  return n;
}

size_t WriteHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  std::string_view line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.headers.clear();  // a new response of a redirect chain starts
    t->content_length = 0;
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || t->response.headers.size() >= 100) return n;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  if (name == "content-length") {
    // Reserved for the body (WriteBody); capped, because the length is only the server's word.
    uint64_t length = 0;
    std::from_chars(value.data(), value.data() + value.size(), length);
    constexpr uint64_t kMaxReserve = 16 * 1024 * 1024;
    if (length <= t->options->max_body_bytes) t->content_length = std::min(length, kMaxReserve);
  }
  t->response.headers[name] = std::string(value.substr(0, 1024));
  return n;
}

bool HostMatches(const std::string& host, const std::string& pattern) {
  if (pattern.rfind("*.", 0) == 0) {
    const std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.com"
    return host.size() > suffix.size() &&
           host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  return host == pattern;
}

// The host of a URL as NormalizeHost writes it, and its port (the scheme's when none is given);
// nullopt when libcurl cannot parse it.
struct UrlHost {
  std::string host;
  std::string port;
};
std::optional<UrlHost> HostOf(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(), curl_url_cleanup);
  char* host = nullptr;
  char* port = nullptr;
  std::optional<UrlHost> where;
  if (parsed && curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(parsed.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(parsed.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    where = UrlHost{NormalizeHost(host), port};
  }
  curl_free(host);
  curl_free(port);
  return where;
}

// The checks made on every URL before it is requested, redirect targets included. Both sides are
// normalised (NormalizeHost): "[::ffff:127.0.0.1]" must not get past a denied "127.0.0.1", nor
// "example.com." past "example.com". The patterns are few; normalising them per hop costs nothing
// next to a request, and holds whoever filled in the options.
// `where` is HostOf(url).
Status CheckDestination(const std::string& url, const std::optional<UrlHost>& where,
                        const FetchOptions& options) {
  if (!IsHttpUrl(url)) return Permanent("invalid URL (only absolute http and https URLs)");
  if (options.allow_hosts.empty() && options.deny_hosts.empty()) return Status::Ok();
  if (!where) return Permanent("invalid URL");
  const std::string& host = where->host;
  const auto matches = [&](const std::string& pattern) {
    return HostMatches(host, NormalizeHost(pattern));
  };
  if (std::any_of(options.deny_hosts.begin(), options.deny_hosts.end(), matches)) {
    return Permanent("destination not allowed: " + host + " is denied");
  }
  if (!options.allow_hosts.empty() &&
      std::none_of(options.allow_hosts.begin(), options.allow_hosts.end(), matches)) {
    return Permanent("destination not allowed: " + host + " is not an allowed host");
  }
  return Status::Ok();
}

// One request, no redirects followed; `next_url` receives the redirect target of a 3xx.
Result<HttpResponse> PerformOnce(const std::string& url, const FetchOptions& options,
                                 const HeadGate* gate, std::chrono::milliseconds timeout,
                                 const std::function<void(CURL*)>& customise,
                                 std::string* next_url) {
  CurlPtr curl(curl_easy_init());
  if (!curl) return Transient("cannot create an HTTP client");
  CURL* c = curl.get();
  Transfer t;
  t.easy = c;
  t.options = &options;
  t.gate = gate;
  t.gate_passed = gate == nullptr;
  for (const auto& pattern : options.deny_hosts) {
    if (IsIpLiteral(pattern)) t.denied_ips.push_back(NormalizeHost(pattern));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char error[CURL_ERROR_SIZE] = "";

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // Perform() follows, checking every hop
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min(options.connect_timeout, timeout).count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_body_bytes));
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // never route user URLs through an env proxy
  curl_easy_setopt(c, CURLOPT_USERAGENT, "imgproc/0.1");
  // HTTP/2 over TLS where the server offers it (ALPN). There a new transfer to a host waits for
  // the first connection to say whether it multiplexes rather than opening another; plain http
  // is always HTTP/1.1, where waiting would only serialise the first requests.
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  if (strncasecmp(url.c_str(), "https:", 6) == 0) {
    curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L);
  }
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OpenSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, BeforeRequest);  // libcurl >= 7.80
  curl_easy_setopt(c, CURLOPT_PREREQDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  customise(c);

  // Held either for room in the budget or by the gate; the callback that paused it says which.
  const std::function<bool()> on_hold = [&] {
    if (t.budget_held) {
      t.budget_held = false;
      t.budget_gave_up = !options.body_budget->Grow(t.response.body_share, t.budget_wanted,
                                                    deadline, options.cancel);
      return !t.budget_gave_up;
    }
    t.abandoned = !gate->wait();
    return !t.abandoned;
  };
  const CURLcode rc = MultiLoop::Get().Perform(c, options.cancel, &on_hold);
  if (t.abandoned) return Transient("abandoned: held at the start of the body");
  if (t.budget_gave_up) {
    if (options.cancel != nullptr && options.cancel->load()) return Transient("cancelled");
    return Transient("Timeout was reached: no room for the body in the download budget");
  }
  if (!t.refusal.empty() && rc != CURLE_OK) return Permanent(t.refusal);
  if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    return Permanent("response larger than " + std::to_string(options.max_body_bytes) + " bytes");
  }
  if (rc == CURLE_ABORTED_BY_CALLBACK) return Transient("cancelled");
  if (rc != CURLE_OK) {
    const std::string text = error[0] != '\0' ? error : curl_easy_strerror(rc);
    switch (rc) {
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
        return Permanent(text);
      default:
        return Transient(text);  // DNS, connect, timeouts, resets: may work later
    }
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.response.status);
  t.response.effective_url = url;
  char* redirect = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &redirect) == CURLE_OK && redirect != nullptr) {
    *next_url = redirect;
  }
  return std::move(t.response);
}

// Connections per host, shared between the parties (HostSlots): past it, only a party below its
// share gets one more, up to twice this.
constexpr int kConnectionsPerHost = 32;

HostSlots& Slots() {
  static HostSlots slots(kConnectionsPerHost);
  return slots;
}

// A request with its redirects (when `follow`), every hop checked before it is made, all within
// the one total timeout, which runs only while a hop holds its host's connection slot.
Result<HttpResponse> Perform(const std::string& url, const FetchOptions& options, bool follow,
                             const HeadGate* gate, const std::function<void(CURL*)>& customise) {
  InitHttpClient();  // cheap after the first call; curl_easy_init would do it racily
  using Clock = std::chrono::steady_clock;
  Clock::duration spent{0};
  std::string current = url;
  for (int hop = 0;; ++hop) {
    const std::optional<UrlHost> where = HostOf(current);
    if (Status s = CheckDestination(current, where, options); !s.ok()) return s;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(options.total_timeout - spent);
    if (left.count() <= 0) return Transient("Timeout was reached");
    // Counted per "host:port".
    HostSlots::Slot slot = Slots().Acquire(where ? where->host + ":" + where->port : "",
                                           options.party, options.cancel);
    if (!slot) return Transient("cancelled");
    const auto started = Clock::now();
    std::string next;
    auto response = PerformOnce(current, options, gate, left, customise, &next);
    spent += Clock::now() - started;
    if (!response.ok() || !follow || next.empty() || response->status < 300 ||
        response->status >= 400) {
      return response;
    }
    if (hop >= options.max_redirects) {
      return Permanent("too many redirects (more than " + std::to_string(options.max_redirects) +
                       ")");
    }
    current = std::move(next);
  }
}

// How often a Grow() waiting for room looks at its cancel flag (shutdown), which has no way to
// wake it.
constexpr std::chrono::milliseconds kBudgetCancelCheckPeriod{200};

}  // namespace

DownloadBudget::Share::Share(Share&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)),
      turn_(std::exchange(other.turn_, 0)),
      bytes_(std::exchange(other.bytes_, 0)) {}

DownloadBudget::Share& DownloadBudget::Share::operator=(Share&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    turn_ = std::exchange(other.turn_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DownloadBudget::Share::Release() {
  if (budget_ != nullptr) budget_->Leave(*this);
}

DownloadBudget::DownloadBudget(uint64_t limit, uint64_t step)
    : limit_(limit), step_(std::max<uint64_t>(step, 1)) {}

bool DownloadBudget::TryGrow(Share& share, uint64_t bytes) {
  MutexLock lock(&mu_);
  const uint64_t missing = Missing(share, bytes);
  if (missing == 0) return true;
  if (!Oldest(share) && !(waiting_.empty() && in_use_ + missing <= limit_)) return false;
  Give(share, missing);
  return true;
}

bool DownloadBudget::Grow(Share& share, uint64_t bytes, Clock::time_point deadline,
                          const std::atomic<bool>* cancel) {
  MutexLock lock(&mu_);
  const uint64_t missing = Missing(share, bytes);
  if (missing == 0) return true;
  Waiter self;
  self.share = &share;
  self.missing = missing;
  waiting_[share.turn_] = &self;
  Admit();  // room may have come since a TryGrow refused, or this share may be the oldest now
  while (!self.granted) {
    const auto now = Clock::now();
    if (now >= deadline || (cancel != nullptr && cancel->load())) {
      waiting_.erase(share.turn_);
      Admit();  // those behind it may fit
      return false;
    }
    (void)self.turn.WaitUntil(
        &mu_, cancel == nullptr ? deadline : std::min(deadline, now + kBudgetCancelCheckPeriod));
  }
  return true;
}

uint64_t DownloadBudget::in_use() const {
  MutexLock lock(&mu_);
  return in_use_;
}

size_t DownloadBudget::waiting() const {
  MutexLock lock(&mu_);
  return waiting_.size();
}

uint64_t DownloadBudget::Missing(Share& share, uint64_t bytes) {
  if (share.budget_ == nullptr) {
    share.budget_ = this;
    share.turn_ = next_turn_++;
    lined_up_.insert(share.turn_);
  }
  if (bytes <= share.bytes_) return 0;
  const uint64_t missing = bytes - share.bytes_;
  return (missing + step_ - 1) / step_ * step_;
}

bool DownloadBudget::Oldest(const Share& share) const {
  return !lined_up_.empty() && *lined_up_.begin() == share.turn_;
}

void DownloadBudget::Give(Share& share, uint64_t missing) {
  in_use_ += missing;
  share.bytes_ += missing;
}

void DownloadBudget::Admit() {
  while (!waiting_.empty()) {
    Waiter* next = waiting_.begin()->second;  // the oldest waiting
    if (!Oldest(*next->share) && in_use_ + next->missing > limit_) return;
    Give(*next->share, next->missing);
    next->granted = true;
    waiting_.erase(waiting_.begin());
    next->turn.Signal();  // under mu_: `next` lives until its Grow() has seen it
  }
}

void DownloadBudget::Leave(Share& share) {
  MutexLock lock(&mu_);
  in_use_ -= std::min(share.bytes_, in_use_);
  lined_up_.erase(share.turn_);
  share.budget_ = nullptr;
  share.turn_ = 0;
  share.bytes_ = 0;
  Admit();  // the next one may be the oldest now, or fit
}

HttpClient& CurlHttpClient() {
  class Curl final : public HttpClient {
   public:
    Result<HttpResponse> Get(const std::string& url, const FetchOptions& options,
                             const HeadGate* gate) override {
      return net::Get(url, options, gate);
    }
    Result<HttpResponse> Post(const std::string& url, const std::string& content_type,
                              const std::string& body, const std::vector<std::string>& headers,
                              const FetchOptions& options) override {
      return net::Post(url, content_type, body, headers, options);
    }
    Result<HttpResponse> PostForm(const std::string& url, const std::vector<FormPart>& parts,
                                  const FetchOptions& options) override {
      return net::PostForm(url, parts, options);
    }
    Result<HttpResponse> Send(const HttpRequest& request, const FetchOptions& options) override {
      return net::Send(request, options);
    }
  };
  static Curl client;
  return client;
}

void InitHttpClient() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Result<HttpResponse> Get(const std::string& url, const FetchOptions& options,
                         const HeadGate* gate) {
  SlistPtr list;
  if (!options.headers.empty()) {
    list = HeaderList(options.headers);
    if (!list) return Internal("out of memory");
  }
  return Perform(url, options, /*follow=*/true, gate, [&](CURL* c) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    if (list) curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  });
}

Result<HttpResponse> Post(const std::string& url, const std::string& content_type,
                          const std::string& body, const std::vector<std::string>& headers,
                          const FetchOptions& options) {
  // "Expect:" drops the 100-continue round trip libcurl would make for larger bodies.
  std::vector<std::string> lines = {"Content-Type: " + content_type, "Expect:"};
  lines.insert(lines.end(), headers.begin(), headers.end());
  SlistPtr list = HeaderList(lines);
  if (!list) return Internal("out of memory");
  return Perform(url, options, /*follow=*/false, /*gate=*/nullptr, [&](CURL* c) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  });
}

Result<HttpResponse> PostForm(const std::string& url, const std::vector<FormPart>& parts,
                              const FetchOptions& options) {
  SlistPtr list = HeaderList({"Expect:"});
  if (!list) return Internal("out of memory");
  MimePtr mime;  // outlives the easy handle, as libcurl requires
  return Perform(url, options, /*follow=*/false, /*gate=*/nullptr, [&](CURL* c) {
    mime.reset(curl_mime_init(c));
    for (const auto& part : parts) {
      curl_mimepart* p = curl_mime_addpart(mime.get());
      curl_mime_name(p, part.name.c_str());
      curl_mime_data(p, part.value.data(), part.value.size());
      if (!part.filename.empty()) curl_mime_filename(p, part.filename.c_str());
      if (!part.content_type.empty()) curl_mime_type(p, part.content_type.c_str());
    }
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime.get());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  });
}

Result<HttpResponse> HttpClient::Send(const HttpRequest& request, const FetchOptions& /*options*/) {
  return Internal("this HTTP client cannot send " + request.method + " requests");
}

Result<HttpResponse> Send(const HttpRequest& request, const FetchOptions& options) {
  // No "Expect:" line to drop libcurl's 100-continue: libcurl would sign it as an empty header
  // that it then does not send, and the server's signature would differ. A body sent as
  // POSTFIELDS under another method gets no Expect up to 1 MiB anyway.
  SlistPtr list;
  if (!request.headers.empty()) {
    list = HeaderList(request.headers);
    if (!list) return Internal("out of memory");
  }
  return Perform(request.url, options, /*follow=*/false, /*gate=*/nullptr, [&](CURL* c) {
    if (request.method == "HEAD") {
      curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (request.method == "GET") {
      curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    }
    if (list) curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
    if (!request.aws_sigv4.empty()) {
      curl_easy_setopt(c, CURLOPT_AWS_SIGV4, request.aws_sigv4.c_str());  // libcurl >= 7.75
      curl_easy_setopt(c, CURLOPT_USERNAME, request.user.c_str());
      curl_easy_setopt(c, CURLOPT_PASSWORD, request.password.c_str());
    }
  });
}

}  // namespace imgproc::net
