#include "guarded_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <string_view>

namespace imgproc::testing {
namespace {

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

}  // namespace

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
  using Limits = GuardedServer::Limits;
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
    const std::string body = std::string(R"({"error":")") + message + "\"}";
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

namespace {
// The connection the calling thread is serving, so that a handler can have it closed.
thread_local GuardedStream* serving = nullptr;
}  // namespace

GuardedServer::GuardedServer(Limits limits) : limits_(limits) {
  set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_socket_ = sock;
  });
}

int GuardedServer::BindToAnyPort(const std::string& host) {
  const int port = bind_to_any_port(host);
  // listen() again on a listening socket sets its backlog anew (Linux).
  if (port > 0 && ::listen(listen_socket_, SOMAXCONN) != 0) return -1;
  return port;
}

void GuardedServer::StopServing() {
  {
    std::lock_guard<std::mutex> lock(awaiting_mu_);
    stopping_ = true;
    for (const int sock : awaiting_) shutdown(sock, SHUT_RD);
  }
  stop();
}

void GuardedServer::CloseConnectionAfterResponse() {
  if (serving != nullptr) serving->CloseAfterResponse();
}

// The same keep-alive loop as cpp-httplib's own, around its (protected) request processing.
bool GuardedServer::process_and_close_socket(socket_t sock) {
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

bool GuardedServer::AwaitRequest(GuardedStream& stream, int sock, std::chrono::milliseconds idle) {
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

}  // namespace imgproc::testing
