#include "raw_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>

namespace imgproc::testing {

int Connect(int port, const char* source) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

RawResponse ReadResponse(int fd, std::string& buffered, bool head_only) {
  RawResponse r;
  char buf[65536];
  const auto fill = [&] {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) buffered.append(buf, static_cast<size_t>(n));
    return n > 0;
  };
  size_t end;
  while ((end = buffered.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return r;
  }
  r.head = buffered.substr(0, end + 4);
  buffered.erase(0, end + 4);
  std::smatch m;
  const std::regex length_header("\r\nContent-Length: (\\d+)\r\n", std::regex::icase);
  const size_t length = std::regex_search(r.head, m, length_header) ? std::stoul(m[1]) : 0;
  if (head_only) return r;
  while (buffered.size() < length && fill()) {
  }
  r.body = buffered.substr(0, length);
  buffered.erase(0, std::min(length, buffered.size()));
  return r;
}

int CountResponses(const std::string& answer) {
  int count = 0;
  for (size_t at = answer.find("HTTP/1."); at != std::string::npos;
       at = answer.find("HTTP/1.", at + 1)) {
    // A status line starts the answer or follows the end of a head or body.
    count += at == 0 || answer[at - 1] == '\n' || answer[at - 1] == '}';
  }
  return count;
}

}  // namespace imgproc::testing
