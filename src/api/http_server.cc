#include "api/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <system_error>
#include <thread>
#include <vector>

#include "common/thread_name.h"

namespace imgproc::api {
namespace {

using Clock = std::chrono::steady_clock;

// errno's text; std::strerror may share its buffer between threads.
std::string ErrnoText(int error) { return std::generic_category().message(error); }

// The client's address as text; an IPv4 client on an IPv6 socket as its IPv4 address.
std::string PeerText(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof text);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    }
  }
  return text;
}

}  // namespace

// Threads for connections: `min` from the start, one more whenever a connection arrives and none
// is idle, up to `max`. A connection holds its thread for as long as the client keeps it (a slow
// client dripping its headers, an idle keep-alive), so a fixed pool of HTTP_THREADS is starved by
// that many slow clients; this one only by `max` of them. Threads stay once started: idle ones
// cost a parked stack, and a burst is likely to come back.
class HttpServer::ThreadPool {
 public:
  ThreadPool(size_t min, size_t max) : max_(std::max(min, max)) {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < min; ++i) Spawn();
  }

  void Enqueue(std::function<void()> fn) EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      jobs_.push_back(std::move(fn));
      if (idle_ < jobs_.size() && threads_.size() < max_) Spawn();
    }
    cv_.Signal();
  }

  // Runs what is queued, then joins every thread.
  void Shutdown() EXCLUDES(mu_) {
    std::vector<std::thread> threads;
    {
      MutexLock lock(&mu_);
      shutdown_ = true;
      threads.swap(threads_);
    }
    cv_.SignalAll();
    for (auto& t : threads) t.join();
  }

 private:
  void Spawn() REQUIRES(mu_) {
    threads_.emplace_back([this] {
      NameThisThread("imgproc-http");
      while (true) {
        std::function<void()> fn;
        {
          MutexLock lock(&mu_);
          ++idle_;
          while (!shutdown_ && jobs_.empty()) cv_.Wait(&mu_);
          --idle_;
          if (jobs_.empty()) return;
          fn = std::move(jobs_.front());
          jobs_.pop_front();
        }
        fn();
      }
    });
  }

  const size_t max_;
  Mutex mu_;
  CondVar cv_;
  std::deque<std::function<void()>> jobs_ GUARDED_BY(mu_);
  std::vector<std::thread> threads_ GUARDED_BY(mu_);
  size_t idle_ GUARDED_BY(mu_) = 0;
  bool shutdown_ GUARDED_BY(mu_) = false;
};

HttpServer::HttpServer(Api& api, ServerOptions options) : api_(api), options_(std::move(options)) {}

HttpServer::~HttpServer() {
  Stop();
  if (pool_) pool_->Shutdown();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status HttpServer::Bind() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options_.port);
  const std::string where = options_.bind + ":" + port;
  if (int rc = getaddrinfo(options_.bind.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return Internal("cannot listen on " + where + ": " + gai_strerror(rc));
  }
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr && listen_fd_ < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    // A SYN dropped from a full accept queue costs its client a second (the retransmission
    // timeout): the widest queue the kernel allows.
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
      listen_fd_ = fd;
    } else {
      error = ErrnoText(errno);
      close(fd);
    }
  }
  freeaddrinfo(found);
  if (listen_fd_ < 0) return Internal("cannot listen on " + where + ": " + error);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return Internal("eventfd: " + ErrnoText(errno));
  return Status::Ok();
}

void HttpServer::Serve() {
  if (listen_fd_ < 0) return;
  pool_ = std::make_unique<ThreadPool>(static_cast<size_t>(std::max(1, options_.threads)),
                                       static_cast<size_t>(std::max(1, options_.max_connections)));
  Accept();
  pool_->Shutdown();
}

void HttpServer::Stop() {
  idle_.Stop();
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  }
}

void HttpServer::Accept() {
  // Refused connections being closed: their 503 is sent and their write side shut; what the
  // client still sends is read and dropped until it closes, or for a second. Closing at once with
  // its request unread would reset the connection, which can destroy the 503 before the client
  // reads it. At most kMaxClosing at a time (beyond that they are closed at once).
  constexpr size_t kMaxClosing = 256;
  struct Closing {
    int fd;
    Clock::time_point until;
  };
  std::vector<Closing> closing;
  std::vector<pollfd> fds;
  while (!idle_.stopping()) {
    fds.assign({{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}});
    int timeout = -1;
    const auto now = Clock::now();
    for (const Closing& c : closing) {
      fds.push_back({c.fd, POLLIN, 0});
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(c.until - now).count();
      timeout = timeout < 0 ? static_cast<int>(std::max<int64_t>(0, left))
                            : std::min(timeout, static_cast<int>(std::max<int64_t>(0, left)));
    }
    if (poll(fds.data(), fds.size(), timeout) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("http: poll: {}", ErrnoText(errno));
      break;
    }
    if (fds[1].revents != 0) break;
    // The refused connections: drained, and closed at their end or deadline.
    for (size_t i = closing.size(); i-- > 0;) {
      bool done = Clock::now() >= closing[i].until;
      if (!done && fds[2 + i].revents != 0) {
        char sink[16 * 1024];
        const ssize_t n = recv(closing[i].fd, sink, sizeof sink, MSG_DONTWAIT);
        done = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
      }
      if (done) {
        close(closing[i].fd);
        closing[i] = closing.back();
        closing.pop_back();
      }
    }
    if (fds[0].revents == 0) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: the connection waits in the queue; try again shortly
        // instead of spinning on it.
        spdlog::warn("http: accept: {}", ErrnoText(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    // A response's head and body go out in one sendmsg, but a small response must not wait for
    // the client's delayed ACK of the previous one (40 ms with Nagle's algorithm).
    const int yes = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    std::string peer = PeerText(addr);
    if (!Admit(peer)) {
      const std::string body = JsonError(503, "Too many connections from your address").body;
      const std::string response =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
          "Content-Length: " +
          std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
      [[maybe_unused]] ssize_t n =
          send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      shutdown(fd, SHUT_WR);
      if (closing.size() < kMaxClosing) {
        closing.push_back({fd, Clock::now() + std::chrono::seconds(1)});
      } else {
        close(fd);
      }
      continue;
    }
    pool_->Enqueue([this, fd, peer = std::move(peer)] {
      ServeConnection(fd, peer, api_, options_.limits, idle_);
      Release(peer);
    });
  }
  for (const Closing& c : closing) close(c.fd);
}

bool HttpServer::Admit(const std::string& peer) {
  MutexLock lock(&clients_mu_);
  int& held = clients_[peer];
  if (options_.max_connections_per_client > 0 && held >= options_.max_connections_per_client) {
    if (held == 0) clients_.erase(peer);
    return false;
  }
  ++held;
  return true;
}

void HttpServer::Release(const std::string& peer) {
  MutexLock lock(&clients_mu_);
  if (auto it = clients_.find(peer); it != clients_.end() && --it->second <= 0) clients_.erase(it);
}

}  // namespace imgproc::api
