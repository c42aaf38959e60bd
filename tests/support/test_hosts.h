// The peers an integration test owns, on 127.0.0.1: an image host that serves generated images
// and every kind of broken answer, and a webhook receiver that checks signatures.
#ifndef IMGPROC_TESTS_SUPPORT_TEST_HOSTS_H_
#define IMGPROC_TESTS_SUPPORT_TEST_HOSTS_H_

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fixture_server.h"
#include "webhook/webhook.h"

namespace imgproc::testing {

using namespace std::chrono_literals;

// Serves generated images and every kind of broken answer, and counts what it was asked.
class ImageHost {
 public:
  ImageHost() {
    auto& s = server_.server();
    s.Get(R"(/img/([A-Za-z0-9_.]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (latency_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms_));
      auto it = images_.find(req.matches[1]);
      if (it == images_.end()) {
        res.status = 404;
        return;
      }
      // Deliberately wrong Content-Type: the format must be recognised from the bytes.
      res.set_content(it->second, "application/octet-stream");
    });
    // An image whose first 32 KiB come after 20 ms and the rest only 300 ms later; counts what it
    // sent.
    s.Get(R"(/slow/([A-Za-z0-9_.]+))", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string& image = images_.at(req.matches[1]);
      res.set_content_provider(
          image.size(), "application/octet-stream",
          [this, &image](size_t offset, size_t length, httplib::DataSink& sink) {
            constexpr size_t kHead = 32 * 1024;
            if (offset == 0) std::this_thread::sleep_for(20ms);
            if (offset == kHead) std::this_thread::sleep_for(300ms);
            const size_t n = offset < kHead ? std::min(length, kHead - offset) : length;
            if (!sink.write(image.data() + offset, n)) return false;
            slow_sent_ += n;
            return true;
          });
    });
    s.Get("/page.html", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("<!doctype html><html><body>Not an image</body></html>", "text/html");
    });
    s.Get("/empty.jpg", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("", "image/jpeg");
    });
    s.Get(R"(/redirect/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
      const int n = std::stoi(req.matches[1]);
      res.set_redirect(n <= 1 ? "/img/photo.jpg" : "/redirect/" + std::to_string(n - 1));
    });
    // Up to 1 GiB without Content-Length; counts what it managed to send.
    s.Get("/huge.jpg", [this](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("image/jpeg", [this](size_t, httplib::DataSink& sink) {
        const std::string chunk(64 * 1024, '\xFF');
        for (int i = 0; i < 16 * 1024; ++i) {
          if (!sink.write(chunk.data(), chunk.size())) return false;
          huge_sent_ += chunk.size();
        }
        sink.done();
        return true;
      });
    });
    s.Get("/flaky.jpg", [this](const httplib::Request&, httplib::Response& res) {
      if (flaky_failures_left_-- > 0) {
        res.status = 500;
        return;
      }
      res.set_content(images_.at("photo.jpg"), "image/jpeg");
    });
  }

  // Stops serving before the members the handlers read are destroyed.
  ~ImageHost() { server_.Stop(); }

  void Add(const std::string& name, std::string bytes) { images_[name] = std::move(bytes); }
  void Start() { server_.Start(); }
  std::string Url(const std::string& path) const { return server_.Url(path); }
  int port() const { return server_.port(); }
  size_t Count(const std::string& path) const { return server_.CountRequests(path); }
  size_t Total() const { return server_.requests().size(); }
  void set_latency_ms(int ms) { latency_ms_ = ms; }
  void set_flaky_failures(int n) { flaky_failures_left_ = n; }
  size_t huge_sent() const { return huge_sent_; }
  size_t slow_sent() const { return slow_sent_; }

 private:
  FixtureServer server_;
  std::map<std::string, std::string> images_;
  std::atomic<int> latency_ms_{0};
  std::atomic<int> flaky_failures_left_{0};
  std::atomic<size_t> huge_sent_{0};
  std::atomic<size_t> slow_sent_{0};
};

inline constexpr char kWebhookSecret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// Records webhook deliveries; answers 500 to the first `fail_first` of them.
class WebhookReceiver {
 public:
  WebhookReceiver() {
    server_.server().Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      ids_.push_back(req.get_header_value("webhook-id"));  // of every attempt
      if (fail_first_ > 0) {
        --fail_first_;
        res.status = 500;
        return;
      }
      bodies_.push_back(req.body);
      content_types_.push_back(req.get_header_value("Content-Type"));
      // What a receiver does with the Standard Webhooks headers: recompute the signature.
      const std::string timestamp = req.get_header_value("webhook-timestamp");
      signatures_valid_.push_back(
          !timestamp.empty() &&
          req.get_header_value("webhook-signature") ==
              webhook::Sign(kWebhookSecret, ids_.back(), std::stoll(timestamp), req.body));
      res.status = 200;
    });
    server_.Start();
  }
  ~WebhookReceiver() { server_.Stop(); }  // before the members its handler writes go

  std::string Url() const { return server_.Url("/hook"); }
  void set_fail_first(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_first_ = n;
  }
  std::vector<std::string> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  std::vector<std::string> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }
  std::vector<bool> signatures_valid() {
    std::lock_guard<std::mutex> lock(mu_);
    return signatures_valid_;
  }
  std::string content_type(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return content_types_.at(i);
  }
  size_t attempts() const { return server_.requests().size(); }
  // Waits until `n` deliveries succeeded or the timeout passes.
  bool WaitFor(size_t n, std::chrono::seconds timeout = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (bodies().size() >= n) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

 private:
  FixtureServer server_;
  std::mutex mu_;
  int fail_first_ = 0;
  std::vector<std::string> bodies_;
  std::vector<std::string> content_types_;
  std::vector<std::string> ids_;
  std::vector<bool> signatures_valid_;
};

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_TEST_HOSTS_H_
