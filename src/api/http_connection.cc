#include "api/http_connection.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>

#include "api/multipart.h"
#include "api/status_cache.h"

namespace imgproc::api {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

// The errors of a body's Content-Encoding (http::error::body_limit says it grew too large).
const beast::error_code kUnsupportedEncoding =
    boost::system::errc::make_error_code(boost::system::errc::not_supported);
const beast::error_code kCorruptEncoding =
    boost::system::errc::make_error_code(boost::system::errc::illegal_byte_sequence);

// A request body held in memory, bounded after decoding: a gzip or deflate body is inflated as
// it arrives, and parsing stops (http::error::body_limit) as soon as the decoded bytes pass
// `limit`. Beast's own body_limit counts the bytes on the wire only.
struct BoundedBody {
  struct value_type {
    std::string data;
    uint64_t limit = 0;
  };

  class reader {
   public:
    // Made before the head is parsed: the encoding is read from it in init().
    template <bool isRequest, class Fields>
    reader(http::header<isRequest, Fields>& header, value_type& body) : body_(body) {
      if constexpr (std::is_same_v<Fields, http::fields>) fields_ = &header;
    }
    ~reader() {
      if (inflating_) inflateEnd(&zs_);
    }
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;

    void init(const boost::optional<std::uint64_t>& length, beast::error_code& ec) {
      ec = {};
      const auto encoding =
          fields_ ? (*fields_)[http::field::content_encoding] : beast::string_view();
      const auto is = [&](const char* name) { return beast::iequals(encoding, name); };
      if (is("gzip") || is("x-gzip") || is("deflate")) {
        // 15 + 32: zlib and gzip framing both, recognised from the header. (Some clients send
        // raw deflate for "deflate"; that is refused as corrupt rather than guessed at.)
        if (inflateInit2(&zs_, 15 + 32) != Z_OK) {
          ec = kCorruptEncoding;
          return;
        }
        inflating_ = true;
      } else if (!encoding.empty() && !is("identity")) {
        ec = kUnsupportedEncoding;
        return;
      }
      if (length && !inflating_) {
        if (*length > body_.limit) {
          ec = http::error::body_limit;
          return;
        }
        body_.data.reserve(static_cast<size_t>(*length));
      }
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      ec = {};
      size_t taken = 0;
      for (const auto b : beast::buffers_range_ref(buffers)) {
        const std::string_view in(static_cast<const char*>(b.data()), b.size());
        if (inflating_ ? !Inflate(in, ec) : !Append(in, ec)) return taken;
        taken += in.size();
      }
      return taken;
    }

    void finish(beast::error_code& ec) const {
      ec = {};
      if (inflating_ && !stream_end_) ec = kCorruptEncoding;  // a truncated stream
    }

   private:
    bool Append(std::string_view in, beast::error_code& ec) {
      if (in.size() > body_.limit - body_.data.size()) {
        ec = http::error::body_limit;
        return false;
      }
      body_.data.append(in);
      return true;
    }

    bool Inflate(std::string_view in, beast::error_code& ec) {
      if (stream_end_) {
        if (in.empty()) return true;
        ec = kCorruptEncoding;  // bytes after the end of the compressed stream
        return false;
      }
      zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      zs_.avail_in = static_cast<uInt>(in.size());
      char out[16 * 1024];
      while (zs_.avail_in > 0 && !stream_end_) {
        zs_.next_out = reinterpret_cast<Bytef*>(out);
        zs_.avail_out = sizeof out;
        const int rc = inflate(&zs_, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
          ec = kCorruptEncoding;
          return false;
        }
        stream_end_ = rc == Z_STREAM_END;
        if (!Append({out, sizeof out - zs_.avail_out}, ec)) return false;
        if (rc == Z_BUF_ERROR && zs_.avail_out != 0) break;  // no progress possible
      }
      if (stream_end_ && zs_.avail_in > 0) {
        ec = kCorruptEncoding;
        return false;
      }
      return true;
    }

    const http::fields* fields_ = nullptr;
    value_type& body_;
    z_stream zs_{};
    bool inflating_ = false;
    bool stream_end_ = false;
  };
};

// The connection's socket as Beast's SyncReadStream, reads bounded by a deadline: the phase's
// (head or body) and the read timeout without a byte. A phase's deadline grows by a second per
// `rate` bytes received in it, when a rate is set.
class SocketStream {
 public:
  SocketStream(int fd, const ConnectionLimits& limits) : fd_(fd), limits_(limits) {}

  void StartPhase(Clock::time_point deadline, uint64_t rate) {
    phase_deadline_ = deadline;
    phase_rate_ = rate;
    phase_bytes_ = 0;
  }

  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, beast::error_code& ec) {
    const boost::asio::mutable_buffer b = *boost::asio::buffer_sequence_begin(buffers);
    const auto until = std::min(Deadline(), Clock::now() + limits_.read_timeout);
    while (true) {
      const ssize_t n = recv(fd_, b.data(), b.size(), MSG_DONTWAIT);
      if (n > 0) {
        phase_bytes_ += static_cast<uint64_t>(n);
        ec = {};
        return static_cast<size_t>(n);
      }
      if (n == 0) {
        ec = boost::asio::error::eof;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ec = beast::error_code(errno, boost::system::system_category());
        return 0;
      }
      if (!Wait(POLLIN, until)) {
        ec = beast::error::timeout;
        return 0;
      }
    }
  }

  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers) {
    beast::error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  // Sends `first` then `second`; false when the client takes nothing for the write timeout, or
  // the connection fails.
  bool Send(std::string_view first, std::string_view second = {}) {
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
        if (!Wait(POLLOUT, Clock::now() + limits_.write_timeout)) return false;
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

 private:
  Clock::time_point Deadline() const {
    if (phase_rate_ == 0) return phase_deadline_;
    return phase_deadline_ + std::chrono::milliseconds(phase_bytes_ * 1000 / phase_rate_);
  }

  bool Wait(short events, Clock::time_point until) const {
    while (true) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, events, 0};
      const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
      if (n > 0) return true;  // ready, or an error the next call reports
      if (n < 0 && errno != EINTR) return false;
    }
  }

  const int fd_;
  const ConnectionLimits& limits_;
  Clock::time_point phase_deadline_ = Clock::time_point::max();
  uint64_t phase_rate_ = 0;
  uint64_t phase_bytes_ = 0;
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// %XX escapes decoded (an invalid one is kept as written); `plus_is_space` for query strings.
std::string PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  const auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

// The request as the Api sees it, from Beast's parsed head (the form is added once the body is
// in).
template <class Fields>
Request FromHead(const http::request_header<Fields>& head, const std::string& peer) {
  Request out;
  out.method = std::string(head.method_string());
  const std::string_view target(head.target().data(), head.target().size());
  const size_t question = target.find('?');
  out.path = PercentDecode(target.substr(0, question), false);
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      out.query.emplace(
          PercentDecode(pair.substr(0, eq), true),
          eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1), true));
    }
  }
  for (const auto& field : head) {
    out.headers.emplace(Lower({field.name_string().data(), field.name_string().size()}),
                        std::string(field.value()));
  }
  out.remote_address = peer;
  return out;
}

// Text types are worth compressing; images and gzip bodies are not.
bool Compressible(std::string_view content_type) {
  return content_type.rfind("text/", 0) == 0 || content_type.rfind("application/json", 0) == 0 ||
         content_type.rfind("application/javascript", 0) == 0 ||
         content_type.rfind("image/svg+xml", 0) == 0;
}

// The one byte range `value` asks of a body of `size` bytes ("bytes=first-last", "bytes=first-"
// or "bytes=-suffix"): [first, end), or nullopt when the range is not one satisfiable range.
// A list of ranges is not served: it multiplies the response (thousands of "0-" ranges of one
// document made a 64 MB answer).
std::optional<std::pair<uint64_t, uint64_t>> OneRange(std::string_view value, uint64_t size) {
  constexpr std::string_view kUnit = "bytes=";
  if (value.substr(0, kUnit.size()) != kUnit) return std::nullopt;
  value.remove_prefix(kUnit.size());
  const size_t dash = value.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto number = [](std::string_view digits) -> std::optional<uint64_t> {
    if (digits.empty() || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string_view::npos) {
      return std::nullopt;
    }
    return std::stoull(std::string(digits));
  };
  const auto first = number(value.substr(0, dash));
  const auto last = number(value.substr(dash + 1));
  if (!first) {  // a suffix: the last N bytes
    if (!last || *last == 0 || size == 0) return std::nullopt;
    return std::pair(size - std::min(*last, size), size);
  }
  if (*first >= size || (dash + 1 < value.size() && (!last || *last < *first))) return std::nullopt;
  return std::pair(*first, last ? std::min(*last + 1, size) : size);
}

// The head of `response`: its status line, Content-Type, `framing` (the Content-Length or the
// Transfer-Encoding line), its headers, and the Connection header `close` and `http10` call for.
std::string ResponseHead(const Response& response, std::string_view framing, bool close,
                         bool http10) {
  const auto status = static_cast<http::status>(response.status);
  const beast::string_view reason = http::obsolete_reason(status);
  std::string head;
  head.reserve(256);
  head.append(http10 ? "HTTP/1.0 " : "HTTP/1.1 ")
      .append(std::to_string(response.status))
      .append(" ")
      .append(reason.data(), reason.size())
      .append("\r\nContent-Type: ")
      .append(response.content_type)
      .append("\r\n")
      .append(framing)
      .append("\r\n");
  for (const auto& [name, value] : response.headers) {
    head.append(name).append(": ").append(value).append("\r\n");
  }
  if (close) {
    head.append("Connection: close\r\n");
  } else if (http10) {
    head.append("Connection: keep-alive\r\n");
  }
  head.append("\r\n");
  return head;
}

// Writes a response made as it is sent (Response::stream) in HTTP/1.1 chunks, gzip-encoded as
// it goes when the client accepts it; false when the client or the stream fails (the body is
// then cut short: the connection must close).
bool WriteStreamed(SocketStream& stream, const Request& request, Response& response, bool close) {
  std::optional<GzipStream> gzip;
  if (Compressible(response.content_type) && AcceptsGzip(request)) {
    gzip.emplace();
    response.headers["Content-Encoding"] = "gzip";
    response.headers["Vary"] = "Accept-Encoding";
  }
  if (!stream.Send(ResponseHead(response, "Transfer-Encoding: chunked", close, false))) {
    return false;
  }
  if (request.method == "HEAD") return true;
  const auto chunk = [&](std::string_view data) {
    if (data.empty()) return true;
    char size[24];
    const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return stream.Send(std::string_view(size, static_cast<size_t>(n)), data) && stream.Send("\r\n");
  };
  while (true) {
    Result<std::string> piece = response.stream();
    if (!piece.ok()) {
      spdlog::error("streamed response cut short: {}", piece.status().message());
      return false;
    }
    const bool last = piece->empty();
    if (gzip) {
      const std::string encoded = gzip->Add(*piece, last);
      if (!gzip->ok()) return false;
      if (!chunk(encoded)) return false;
    } else if (!chunk(*piece)) {
      return false;
    }
    if (last) return stream.Send("0\r\n\r\n");
  }
}

// Writes `response` (its head only for a HEAD request); gzip-encoded when the client accepts it
// and the API has not encoded it already.
bool WriteResponse(SocketStream& stream, const Request* request, Response response, bool close,
                   bool http10) {
  if (response.stream) {
    if (request != nullptr && !http10) return WriteStreamed(stream, *request, response, close);
    // An HTTP/1.0 client takes no chunks: the body is made whole first.
    if (Status s = ReadWholeBody(response); !s.ok()) {
      spdlog::error("streamed response not made: {}", s.message());
      return false;
    }
  }
  std::string encoded;
  std::string_view body = response.content();
  const bool head_only = request != nullptr && request->method == "HEAD";
  if (response.status == 200 && response.ranges && request != nullptr) {
    response.headers["Accept-Ranges"] = "bytes";
    if (const auto it = request->headers.find("range"); it != request->headers.end()) {
      if (const auto range = OneRange(it->second, body.size())) {
        response.status = 206;
        response.headers["Content-Range"] = "bytes " + std::to_string(range->first) + "-" +
                                            std::to_string(range->second - 1) + "/" +
                                            std::to_string(body.size());
        body = body.substr(range->first, range->second - range->first);
      }
    }
  }
  if (request != nullptr && !body.empty() && !response.headers.contains("Content-Encoding") &&
      Compressible(response.content_type) && AcceptsGzip(*request)) {
    encoded = Gzip(body);
    if (!encoded.empty()) {
      body = encoded;
      response.headers["Content-Encoding"] = "gzip";
      response.headers["Vary"] = "Accept-Encoding";
    }
  }
  const std::string head =
      ResponseHead(response, "Content-Length: " + std::to_string(body.size()), close, http10);
  return stream.Send(head, head_only ? std::string_view() : body);
}

// After a refusal, the client may still be sending (the body not read, or what followed a
// malformed head). Closing with unread data makes the kernel reset the connection, which can
// destroy the refusal before the client reads it: so the write side is closed first and what
// still arrives is read and dropped, for a bounded time and amount.
void LingeringClose(int fd) {
  shutdown(fd, SHUT_WR);
  const auto until = Clock::now() + std::chrono::seconds(2);
  size_t drained = 0;
  char sink[16 * 1024];
  while (drained < (4u << 20)) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n <= 0 && !(n < 0 && errno == EINTR)) break;
    if (n > 0) drained += static_cast<size_t>(n);
  }
}

// Waits up to `idle` for the next request's first bytes, in one blocking recv bounded by the
// socket's receive timeout (on a kept-alive connection this wait comes once per request).
bool AwaitRequest(int fd, beast::flat_buffer& buffer, std::chrono::milliseconds idle,
                  IdleConnections& connections, std::chrono::milliseconds& receive_timeout) {
  if (buffer.size() > 0) return !connections.stopping();
  if (receive_timeout != idle) {
    // At least 1 ms: a zero SO_RCVTIMEO waits forever.
    const auto us = std::max<int64_t>(
        1000, std::chrono::duration_cast<std::chrono::microseconds>(idle).count());
    const timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
    receive_timeout = idle;
  }
  if (!connections.Enter(fd)) return false;
  ssize_t n;
  const auto space = buffer.prepare(std::min<size_t>(16 * 1024, buffer.max_size() - buffer.size()));
  do {
    n = recv(fd, space.data(), space.size(), 0);
  } while (n < 0 && errno == EINTR);
  connections.Leave(fd);
  if (n <= 0) return false;  // closed, failed, or silent for `idle`
  buffer.commit(static_cast<size_t>(n));
  return true;
}

// What ends a request's handling: answered on a connection that goes on, or refused (the
// connection ends, lingering if the client may still be sending).
enum class Next { kGoOn, kClose, kCloseLingering };

class ConnectionServer {
 public:
  ConnectionServer(int fd, const std::string& peer, Api& api, const ConnectionLimits& limits,
                   IdleConnections& idle)
      : fd_(fd),
        peer_(peer),
        api_(api),
        limits_(limits),
        idle_(idle),
        stream_(fd, limits),
        // Room for the largest head plus what Beast reads ahead of it.
        buffer_(std::max<size_t>(limits.max_header_bytes, 16 * 1024) + 64 * 1024) {}

  void Run() {
    Next next = Next::kGoOn;
    for (int served = 0; next == Next::kGoOn && served < limits_.max_requests; ++served) {
      if (!AwaitRequest(fd_, buffer_, limits_.keep_alive, idle_, receive_timeout_)) break;
      next = ServeOne(served + 1 == limits_.max_requests);
    }
    if (next == Next::kCloseLingering) LingeringClose(fd_);
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
  }

 private:
  Next Refuse(int status, const std::string& message, bool lingering = true) {
    WriteResponse(stream_, nullptr, JsonError(status, message), /*close=*/true, false);
    return lingering ? Next::kCloseLingering : Next::kClose;
  }

  Next ServeOne(bool last) {
    http::request_parser<BoundedBody> parser;
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<size_t>(limits_.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    // On the wire; the reader bounds the decoded body (a gzip body is smaller on the wire).
    parser.body_limit(limits_.max_body_bytes);
    parser.get().body().limit = limits_.max_body_bytes;
    stream_.StartPhase(Clock::now() + limits_.header_timeout, 0);
    beast::error_code ec;
    http::read_header(stream_, buffer_, parser, ec);
    if (ec) return HeadError(ec, parser);

    const auto& head = parser.get();
    const bool http10 = head.version() == 10;
    if (head.version() != 11 && !http10) return Refuse(505, "HTTP version not supported");
    // Beast accepts a Transfer-Encoding whose last coding is not chunked, and equal duplicate
    // lengths, as RFC 7230 allows; both are what request smuggling is made of: refused.
    if (head.count(http::field::transfer_encoding) > 0 &&
        (head.count(http::field::transfer_encoding) > 1 ||
         !beast::iequals(head[http::field::transfer_encoding], "chunked"))) {
      return Refuse(400, "Unsupported Transfer-Encoding");
    }
    if (head.count(http::field::content_length) > 1) {
      return Refuse(400, "More than one Content-Length");
    }
    const bool has_body = parser.chunked() || parser.content_length().value_or(0) > 0;
    const auto method = head.method();
    if (has_body && method != http::verb::post && method != http::verb::put &&
        method != http::verb::patch) {
      return Refuse(400, std::string(head.method_string()) + " requests cannot have a body");
    }

    Request request = FromHead(head, peer_);
    const bool close = last || !parser.keep_alive() || idle_.stopping();
    if (std::optional<Response> early = api_.Admit(request)) {
      // Answered from the head: a body is not read, and ends the connection.
      WriteResponse(stream_, &request, std::move(*early), close || has_body, http10);
      return has_body ? Next::kCloseLingering : close ? Next::kClose : Next::kGoOn;
    }
    if (has_body) {
      if (beast::iequals(head[http::field::expect], "100-continue") &&
          !stream_.Send(http10 ? "HTTP/1.0 100 Continue\r\n\r\n"
                               : "HTTP/1.1 100 Continue\r\n\r\n")) {
        return Next::kClose;
      }
      stream_.StartPhase(Clock::now() + limits_.body_timeout, limits_.body_min_rate);
      http::read(stream_, buffer_, parser, ec);
      if (ec) return BodyError(ec, request.path);
      const auto content_type = head[http::field::content_type];
      if (const std::string boundary =
              MultipartBoundary({content_type.data(), content_type.size()});
          !boundary.empty()) {
        auto form = ParseMultipart(boundary, parser.get().body().data);
        if (form.ok()) {
          request.form = std::move(*form);
        } else {
          request.form_problem = form.status().message();
        }
      }
    }
    Response response = api_.Handle(request);
    return WriteResponse(stream_, &request, std::move(response), close, http10) && !close
               ? Next::kGoOn
               : Next::kClose;
  }

  Next HeadError(const beast::error_code& ec, const http::request_parser<BoundedBody>& parser) {
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec == boost::asio::error::eof) {
      return Next::kClose;  // the client left
    }
    if (ec == beast::error::timeout) {
      return Refuse(408, "Request header not received in time", /*lingering=*/false);
    }
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return Refuse(431, "Request header fields too large");
    }
    if (ec == http::error::body_limit) {  // from its Content-Length, before reading it
      const auto target = parser.get().target();
      api_.CountTransportRejection(PercentDecode({target.data(), target.size()}, false), 413);
      return Refuse(413, "Request body is too large");
    }
    return Refuse(400, "Bad request");
  }

  Next BodyError(const beast::error_code& ec, const std::string& path) {
    if (ec == http::error::partial_message || ec == boost::asio::error::eof) return Next::kClose;
    if (ec == http::error::body_limit) {
      api_.CountTransportRejection(path, 413);
      return Refuse(413, "Request body is too large");
    }
    if (ec == beast::error::timeout) {
      return Refuse(408, "Request body not received in time", /*lingering=*/false);
    }
    if (ec == kUnsupportedEncoding) {
      return Refuse(415, "Unsupported Content-Encoding (gzip and deflate are accepted)");
    }
    if (ec == kCorruptEncoding)
      return Refuse(400, "The body does not decode as its Content-Encoding says");
    return Refuse(400, "Bad request");
  }

  const int fd_;
  const std::string& peer_;
  Api& api_;
  const ConnectionLimits& limits_;
  IdleConnections& idle_;
  SocketStream stream_;
  beast::flat_buffer buffer_;
  std::chrono::milliseconds receive_timeout_{-1};  // SO_RCVTIMEO, once set
};

}  // namespace

bool IdleConnections::Enter(int fd) {
  MutexLock lock(&mu_);
  if (stopping_) return false;
  waiting_.insert(fd);
  return true;
}

void IdleConnections::Leave(int fd) {
  MutexLock lock(&mu_);
  waiting_.erase(fd);
}

void IdleConnections::Stop() {
  MutexLock lock(&mu_);
  stopping_ = true;
  for (const int fd : waiting_) shutdown(fd, SHUT_RD);
}

bool IdleConnections::stopping() const {
  MutexLock lock(&mu_);
  return stopping_;
}

void ServeConnection(int fd, const std::string& peer, Api& api, const ConnectionLimits& limits,
                     IdleConnections& idle) {
  ConnectionServer(fd, peer, api, limits, idle).Run();
}

}  // namespace imgproc::api
