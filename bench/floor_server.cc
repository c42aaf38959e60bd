#include "floor_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "process_client.h"

namespace imgproc::bench {
namespace {

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

FloorServer::~FloorServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (listener_ >= 0) shutdown(listener_, SHUT_RDWR);   // wakes accept()
    for (int fd : connections_) shutdown(fd, SHUT_RDWR);  // wakes recv()
  }
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& t : threads_) t.join();  // no new ones: the acceptor has ended
  if (listener_ >= 0) close(listener_);
}

bool FloorServer::Start() {
  listener_ = testing::ListenOnLoopback(port_);
  if (listener_ < 0) return false;
  acceptor_ = std::thread([this] { Accept(); });
  return true;
}

void FloorServer::Accept() {
  while (true) {
    const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      if (fd >= 0) close(fd);
      return;
    }
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    const int one = 1;  // as imgproc does
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connections_.push_back(fd);
    threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FloorServer::Serve(int fd) {
  char buffer[16 * 1024];
  uint32_t tail = 0;  // the last four bytes read, to spot each request's "\r\n\r\n"
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    bool ok = true;
    for (ssize_t i = 0; i < n && ok; ++i) {
      tail = (tail << 8) | static_cast<unsigned char>(buffer[i]);
      if (tail == 0x0D0A0D0A) ok = SendAll(fd, response_.data(), response_.size());
    }
    if (!ok) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Closed here, under the lock, so that the destructor never shuts down a reused descriptor.
  connections_.erase(std::find(connections_.begin(), connections_.end(), fd));
  close(fd);
}

std::optional<std::string> FetchRawResponse(int port, const std::string& path,
                                            const std::string& header) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  bool framed = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                                (header.empty() ? "" : header + "\r\n") + "\r\n";
    size_t expected = std::string::npos;  // head plus body, once the head is in
    char buffer[64 * 1024];
    for (bool sent = SendAll(fd, request.data(), request.size());
         sent && response.size() < expected;) {
      const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      response.append(buffer, static_cast<size_t>(n));
      const size_t head_end = response.find("\r\n\r\n");
      if (expected != std::string::npos || head_end == std::string::npos) continue;
      std::string head = response.substr(0, head_end + 2);
      std::transform(head.begin(), head.end(), head.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      const size_t at = head.find("\r\ncontent-length:");
      if (at == std::string::npos) break;
      expected = head_end + 4 + std::stoul(head.substr(at + 17));
      framed = true;
    }
    framed = framed && response.size() == expected;
  }
  close(fd);
  if (!framed) return std::nullopt;
  return response;
}

}  // namespace imgproc::bench
