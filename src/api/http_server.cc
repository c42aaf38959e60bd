#include "api/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/thread_name.h"

namespace imgproc::api {
namespace {

// cpp-httplib's connection pool, made to grow: `min` threads from the start, one more whenever a
// connection arrives and none is idle, up to `max`. A connection holds its thread for as long as
// the client keeps it (a slow client dripping its headers, an idle keep-alive), so a fixed pool of
// HTTP_THREADS is starved by that many slow clients; this one only by `max` of them. Threads stay
// once started: idle ones cost a parked stack, and a burst is likely to come back.
class GrowingThreadPool final : public httplib::TaskQueue {
 public:
  GrowingThreadPool(size_t min, size_t max) : max_(std::max(min, max)) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < min; ++i) Spawn();
  }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(fn));
      if (idle_ < jobs_.size() && threads_.size() < max_) Spawn();
    }
    cv_.notify_one();
  }

  // Runs what is queued, then joins every thread.
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void Spawn() {  // mu_ held
    threads_.emplace_back([this] {
      NameThisThread("imgproc-http");
      while (true) {
        std::function<void()> fn;
        {
          std::unique_lock<std::mutex> lock(mu_);
          ++idle_;
          cv_.wait(lock, [this] { return shutdown_ || !jobs_.empty(); });
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
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool shutdown_ = false;
};

using Clock = std::chrono::steady_clock;

// Waits until `fd` has `events` or `until` passes; false on timeout or error.
bool WaitFor(int fd, short events, Clock::time_point until) {
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n > 0) return (p.revents & (events | POLLHUP | POLLERR)) != 0;
    if (n < 0 && errno != EINTR) return false;
  }
}

// One connection as cpp-httplib's Stream, with what cpp-httplib lacks: a limit on the size of a
// request's head (request line and headers together; cpp-httplib bounds each line, not their
// number) and a deadline for receiving it whole (cpp-httplib only times out each read). A client
// over either gets a JSON 431 or 408 and the connection is closed.
//
// And fewer system calls: cpp-httplib polls before every read and write, and writes a response's
// head and body separately, so with TCP_NODELAY the head goes out in a packet of its own. Here a
// read or write is tried first and waits only when the socket is not ready, and small writes are
// held back to go out with the next one (the head with the body, in one sendmsg), or before the
// next read, or at the end of the response. The wait for the next request is one blocking recv.
class GuardedStream final : public httplib::Stream {
 public:
  struct Limits {
    size_t max_head_bytes;
    std::chrono::milliseconds head_timeout;
    std::chrono::milliseconds read_timeout;
    std::chrono::milliseconds write_timeout;
  };
  GuardedStream(int fd, Limits limits) : fd_(fd), limits_(limits) {}

  // Waits up to `idle` for the next request to start; false when the client stays silent, or the
  // connection is to end.
  bool NextRequest(std::chrono::milliseconds idle) {
    if (refused_ || close_after_response_) return false;
    if (begin_ == end_ && !ReceiveWithin(idle)) return false;
    head_bytes_ = 0;
    tail_ = 0;
    head_done_ = false;
    head_deadline_ = Clock::now() + limits_.head_timeout;
    return true;
  }

  // The connection ends after the response being made.
  void CloseAfterResponse() { close_after_response_ = true; }

  bool is_readable() const override {
    return begin_ != end_ || (Flush() && WaitFor(fd_, POLLIN, Clock::now() + limits_.read_timeout));
  }
  // Writes wait for the socket themselves (up to the write timeout without progress).
  bool is_writable() const override { return !refused_; }

  ssize_t read(char* ptr, size_t size) override {
    if (refused_) return -1;
    if (begin_ == end_ && !Fill()) return -1;
    size_t n = std::min(size, end_ - begin_);
    if (!head_done_) {
      // Hand out the head a byte at a time past its end ("\r\n\r\n"), counting it.
      for (size_t i = 0; i < n; ++i) {
        tail_ = (tail_ << 8) | static_cast<unsigned char>(buffer_[begin_ + i]);
        if ((tail_ & 0xFFFFFFFF) == 0x0D0A0D0A) {
          head_done_ = true;
          n = i + 1;
          break;
        }
      }
      head_bytes_ += n;
      if (!head_done_ && head_bytes_ > limits_.max_head_bytes) {
        Refuse(431, "Request header fields too large");
        return -1;
      }
    }
    std::memcpy(ptr, buffer_.data() + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (refused_) return static_cast<ssize_t>(size);  // the refusal was the answer
    if (pending_.size() + size <= kHeldBackBytes) {
      pending_.append(ptr, size);
      return static_cast<ssize_t>(size);
    }
    if (!SendAll(pending_, std::string_view(ptr, size))) return -1;
    pending_.clear();
    return static_cast<ssize_t>(size);
  }

  // Sends what is held back; false if the client does not take it.
  bool Flush() const {
    if (pending_.empty()) return true;
    const bool sent = SendAll(pending_, {});
    pending_.clear();
    return sent;
  }

  // httplib asks for both on every request; a connection's addresses never change, so they are
  // looked up once (two system calls fewer per request on a kept-alive connection).
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    if (!remote_.known) remote_ = Address(getpeername);
    ip = remote_.ip;
    port = remote_.port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    if (!local_.known) local_ = Address(getsockname);
    ip = local_.ip;
    port = local_.port;
  }
  socket_t socket() const override { return fd_; }

 private:
  // Reads more from the socket; before the head is complete, only until its deadline. Sends what
  // is held back first: the client may be waiting for it (a 100 Continue) before it sends more.
  bool Fill() {
    if (!Flush()) return false;
    const auto read_until = Clock::now() + limits_.read_timeout;
    const bool deadline_binds = !head_done_ && head_deadline_ < read_until;
    while (true) {
      const ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
      if (n > 0) {
        begin_ = 0;
        end_ = static_cast<size_t>(n);
        return true;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      if (!WaitFor(fd_, POLLIN, deadline_binds ? head_deadline_ : read_until)) {
        if (deadline_binds && head_bytes_ > 0) Refuse(408, "Request header not received in time");
        return false;
      }
    }
  }

  // One blocking recv, bounded by the socket's receive timeout, instead of a poll and a recv: on
  // a kept-alive connection this wait comes once per request.
  bool ReceiveWithin(std::chrono::milliseconds idle) {
    if (receive_timeout_ != idle) {
      // At least 1 ms: a zero SO_RCVTIMEO waits forever.
      const auto us = std::max<int64_t>(
          1000, std::chrono::duration_cast<std::chrono::microseconds>(idle).count());
      const timeval tv{static_cast<time_t>(us / 1'000'000),
                       static_cast<suseconds_t>(us % 1'000'000)};
      if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
      receive_timeout_ = idle;
    }
    while (true) {
      const ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), 0);
      if (n > 0) {
        begin_ = 0;
        end_ = static_cast<size_t>(n);
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      return false;  // closed, failed, or silent for `idle` (EAGAIN)
    }
  }

  void Refuse(int status, const char* message) {
    const std::string body = JsonError(status, message).body;
    const std::string response =
        "HTTP/1.1 " + std::to_string(status) + " " + message +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\n\r\n" + body;
    SendAll(response, {});
    refused_ = true;
  }

  // Sends `first` then `second`, waiting for the socket when it is full; false when the client
  // takes nothing for the write timeout, or the connection fails.
  bool SendAll(std::string_view first, std::string_view second) const {
    iovec parts[2] = {{const_cast<char*>(first.data()), first.size()},
                      {const_cast<char*>(second.data()), second.size()}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    while (parts[0].iov_len + parts[1].iov_len > 0) {
      const ssize_t n = sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
        if (!WaitFor(fd_, POLLOUT, Clock::now() + limits_.write_timeout)) return false;
        continue;
      }
      auto sent = static_cast<size_t>(n);
      for (iovec& part : parts) {
        const size_t taken = std::min(sent, part.iov_len);
        part.iov_base = static_cast<char*>(part.iov_base) + taken;
        part.iov_len -= taken;
        sent -= taken;
      }
    }
    return true;
  }

  struct Endpoint {
    bool known = false;
    std::string ip;
    int port = 0;
  };
  Endpoint Address(int (*get)(int, sockaddr*, socklen_t*)) const {
    Endpoint out;
    out.known = true;  // a failure (the peer gone already) is not asked again either
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (get(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return out;
    char text[INET6_ADDRSTRLEN] = {};
    if (addr.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
      inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
      out.port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
      inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
      out.port = ntohs(a->sin6_port);
    }
    out.ip = text;
    return out;
  }

  // Writes up to this size are held back (a response's head, a small body).
  static constexpr size_t kHeldBackBytes = 16 * 1024;

  const int fd_;
  mutable Endpoint remote_;
  mutable Endpoint local_;
  const Limits limits_;
  // Written, not sent yet. Mutable: waiting to read (is_readable) sends it first.
  mutable std::string pending_;
  std::array<char, 16 * 1024> buffer_{};
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t head_bytes_ = 0;
  uint32_t tail_ = 0;  // the last four head bytes
  bool head_done_ = false;
  bool refused_ = false;
  bool close_after_response_ = false;
  Clock::time_point head_deadline_;
  std::chrono::milliseconds receive_timeout_{-1};  // SO_RCVTIMEO, once set
};

// The connection the calling thread is serving, so that a handler can have it closed.
thread_local GuardedStream* serving = nullptr;

// cpp-httplib's server, serving each connection through a GuardedStream: the same keep-alive loop
// as cpp-httplib's own, around its (protected) request processing.
class GuardedServer final : public httplib::Server {
 public:
  explicit GuardedServer(GuardedStream::Limits limits) : limits_(limits) {}

  // httplib's stop, and the kept-alive connections waiting for their next request are ended
  // (their recv returns at once): else each would hold the shutdown up to the keep-alive timeout.
  // Requests being served are finished.
  void StopServing() {
    {
      std::lock_guard<std::mutex> lock(awaiting_mu_);
      stopping_ = true;
      for (const int sock : awaiting_) shutdown(sock, SHUT_RD);
    }
    stop();
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    GuardedStream stream(sock, limits_);
    serving = &stream;
    bool ok = false;
    const auto idle = std::chrono::seconds(keep_alive_timeout_sec_);
    for (size_t left = keep_alive_max_count_;
         left > 0 && svr_sock_ != INVALID_SOCKET && AwaitRequest(stream, sock, idle); --left) {
      bool closed = false;
      ok = process_request(stream, /*close_connection=*/left == 1, closed, nullptr);
      ok = stream.Flush() && ok;
      if (!ok || closed) break;
    }
    serving = nullptr;
    shutdown(sock, SHUT_RDWR);
    close(sock);
    return ok;
  }

  // Waits for the connection's next request, as one of the connections Stop() can end.
  bool AwaitRequest(GuardedStream& stream, int sock, std::chrono::milliseconds idle) {
    {
      std::lock_guard<std::mutex> lock(awaiting_mu_);
      if (stopping_) return false;
      awaiting_.insert(sock);
    }
    const bool next = stream.NextRequest(idle);
    std::lock_guard<std::mutex> lock(awaiting_mu_);
    awaiting_.erase(sock);
    return next;
  }

  const GuardedStream::Limits limits_;
  std::mutex awaiting_mu_;
  std::unordered_set<int> awaiting_;  // sockets waiting for their next request
  bool stopping_ = false;
};

Request FromHttplib(const httplib::Request& req) {
  Request out;
  out.method = req.method;
  out.path = req.path;
  for (const auto& [key, value] : req.params) out.query.emplace(key, value);
  for (const auto& [name, value] : req.headers) {
    std::string lower = name;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers.emplace(std::move(lower), value);
  }
  for (const auto& [name, part] : req.files) {
    out.form.emplace(name, FormFile{part.filename, part.content_type, part.content});
  }
  return out;
}

// httplib compresses text and JSON responses itself, choosing brotli at quality 11 whenever the
// client offers it: 0.8 s of CPU for the status of 1,000 products (its gzip takes 5 ms), on every
// poll. So httplib only ever sees gzip offered, and nothing at all when the API has encoded the
// body already. Its Request object is its own non-const local, which the handlers see as const.
void LimitTransportCompression(const httplib::Request& req, bool accepts_gzip,
                               const Response& out) {
  auto& headers = const_cast<httplib::Headers&>(req.headers);
  headers.erase("Accept-Encoding");
  if (accepts_gzip && !out.headers.contains("Content-Encoding")) {
    headers.emplace("Accept-Encoding", "gzip");
  }
}

// Moves the body over (httplib's set_content copies it), or has httplib send a shared body from
// where it is kept.
void ToHttplib(const httplib::Request& req, Response&& in, httplib::Response& res) {
  for (const auto& [name, value] : in.headers) res.set_header(name, value);
  const bool shared = in.shared_body != nullptr && !in.shared_body->empty();
  if (shared) {
    // httplib would take any range a client names from the provider, past the end too: a shared
    // body is sent whole. (Its Request is its own non-const local, as above.)
    const_cast<httplib::Request&>(req).ranges.clear();
  }
  // httplib sends the requested byte ranges of a 200, but leaves the status to its handlers.
  res.status = in.status == 200 && !req.ranges.empty() ? 206 : in.status;
  if (shared) {
    const size_t size = in.shared_body->size();
    res.set_content_provider(
        size, in.content_type,
        [body = std::move(in.shared_body)](size_t offset, size_t length, httplib::DataSink& sink) {
          return sink.write(body->data() + offset, length);
        });
    return;
  }
  res.body = std::move(in.body);
  res.set_header("Content-Type", in.content_type);
}

}  // namespace

HttpServer::HttpServer(Api& api, ServerOptions options)
    : api_(api),
      options_(std::move(options)),
      server_(std::make_unique<GuardedServer>(
          GuardedStream::Limits{options_.max_header_bytes, options_.header_timeout,
                                std::chrono::seconds(10), std::chrono::seconds(10)})) {
  auto& s = *server_;
  // A connection holds a pool thread, hence a pool that grows (above), and short keep-alive and
  // read timeouts: an idle client gives its thread back quickly.
  const size_t threads = static_cast<size_t>(std::max(2, options_.threads));
  const size_t max_connections = static_cast<size_t>(std::max(2, options_.max_connections));
  s.new_task_queue = [threads, max_connections] {
    return new GrowingThreadPool(threads, max_connections);
  };
  s.set_keep_alive_max_count(1000);
  // httplib writes the head and the body of a response separately; with Nagle's algorithm the
  // body then waits for the client's delayed ACK of the head, 40 ms per small response.
  s.set_tcp_nodelay(true);
  // Remembered to widen its accept queue in Bind(): httplib listens with a backlog of 5, and a
  // SYN dropped from a full queue costs its client a second (the retransmission timeout).
  s.set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_socket_ = sock;
  });
  s.set_keep_alive_timeout(2);
  s.set_read_timeout(10, 0);
  s.set_write_timeout(10, 0);
  s.set_payload_max_length(options_.max_body_bytes);

  auto handle = [this](const httplib::Request& req, httplib::Response& res) {
    const Request in = FromHttplib(req);
    Response out = api_.Handle(in);
    LimitTransportCompression(req, AcceptsGzip(in), out);
    ToHttplib(req, std::move(out), res);
  };
  // Before httplib's routing, which reads the body of a POST, PUT, PATCH or DELETE only.
  s.set_pre_routing_handler([this, handle](const httplib::Request& req, httplib::Response& res) {
    using httplib::Server;
    const std::string& m = req.method;
    if (m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE") {
      return Server::HandlerResponse::Unhandled;
    }
    if (req.has_header("Transfer-Encoding") ||
        (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0")) {
      // httplib would leave the body unread, to be taken for the next request on the connection
      // (request smuggling, behind a proxy that forwards the body): refused, connection closed.
      api_.CountTransportRejection(req.path, 400);
      auto& headers = const_cast<httplib::Headers&>(req.headers);  // its own local, as above
      headers.erase("Connection");
      headers.emplace("Connection", "close");  // so httplib answers with Connection: close
      if (serving != nullptr) serving->CloseAfterResponse();
      res.status = 400;
      res.set_content(JsonError(400, m + " requests cannot have a body").body, "application/json");
      return Server::HandlerResponse::Handled;
    }
    // GETs and HEADs skip the routing: it matches every handler's std::regex against the path,
    // 10% of the CPU of a cached status request.
    if (m != "GET" && m != "HEAD") return Server::HandlerResponse::Unhandled;
    handle(req, res);
    return Server::HandlerResponse::Handled;
  });
  const std::string any = R"(/.*)";  // GETs and HEADs never get here (above)
  s.Post(any, handle);
  s.Put(any, handle);
  s.Delete(any, handle);
  s.Patch(any, handle);
  s.Options(any, handle);

  // httplib answers some errors itself (413 too large, 400 unparsable, 404 unknown method):
  // give those a JSON body too.
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        api_.CountTransportRejection(req.path, res.status);
        const std::string message = res.status == 413   ? "Request body is too large"
                                    : res.status == 404 ? "Not found"
                                    : res.status == 405 ? "Method not allowed"
                                    : res.status == 414 ? "Request URI too long"
                                                        : "Bad request";
        res.set_content(JsonError(res.status, message).body, "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("{} {}: unhandled exception: {}", req.method, req.path, what);
        res.status = 500;
        res.set_content(R"({"error": "Internal server error"})", "application/json");
      });
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Bind() {
  if (!server_->bind_to_port(options_.bind, options_.port)) {
    return Internal("cannot listen on " + options_.bind + ":" + std::to_string(options_.port));
  }
  // listen() again on a listening socket only changes its backlog (capped by somaxconn).
  if (listen_socket_ >= 0 && ::listen(listen_socket_, SOMAXCONN) != 0) {
    spdlog::warn("cannot widen the accept queue: {}", std::strerror(errno));
  }
  return Status::Ok();
}

void HttpServer::Serve() { server_->listen_after_bind(); }

void HttpServer::Stop() { static_cast<GuardedServer&>(*server_).StopServing(); }

}  // namespace imgproc::api
