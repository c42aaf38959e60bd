#include "api/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

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

void ToHttplib(const Response& in, httplib::Response& res) {
  res.status = in.status;
  for (const auto& [name, value] : in.headers) res.set_header(name, value);
  res.set_content(in.body, in.content_type);
}

}  // namespace

HttpServer::HttpServer(Api& api, ServerOptions options)
    : api_(api), options_(std::move(options)), server_(std::make_unique<httplib::Server>()) {
  auto& s = *server_;
  // A connection holds a pool thread, hence a pool that grows (above), and short keep-alive and
  // read timeouts: an idle client gives its thread back quickly.
  const size_t threads = static_cast<size_t>(std::max(2, options_.threads));
  const size_t max_connections = static_cast<size_t>(std::max(2, options_.max_connections));
  s.new_task_queue = [threads, max_connections] {
    return new GrowingThreadPool(threads, max_connections);
  };
  s.set_keep_alive_max_count(100);
  s.set_keep_alive_timeout(2);
  s.set_read_timeout(10, 0);
  s.set_write_timeout(10, 0);
  s.set_payload_max_length(options_.max_body_bytes);

  auto handle = [this](const httplib::Request& req, httplib::Response& res) {
    ToHttplib(api_.Handle(FromHttplib(req)), res);
  };
  const std::string any = R"(/.*)";
  s.Get(any, handle);
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
  return Status::Ok();
}

void HttpServer::Serve() { server_->listen_after_bind(); }

void HttpServer::Stop() { server_->stop(); }

}  // namespace imgproc::api
