#include "api/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "api/guarded_server.h"
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
          GuardedServer::Limits{options_.max_header_bytes, options_.header_timeout,
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
      GuardedServer::CloseConnectionAfterResponse();
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

void HttpServer::Stop() { server_->StopServing(); }

}  // namespace imgproc::api
