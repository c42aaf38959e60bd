// The webhook Sender against a real SQLite store and receivers on 127.0.0.1 that the tests hold
// (issue 19): deliveries run concurrently, a slow receiver delays nobody else, one receiver never
// has more than its share of them, and store errors neither fail a webhook nor go unnoticed.
//
// Nothing here sleeps to decide an outcome: receivers block on a gate the test opens, and the
// test waits on condition variables (with a deadline, so that a regression fails instead of
// hanging) for what the Sender has done.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fixture_server.h"
#include "forwarding_store.h"
#include "metrics/service_metrics.h"
#include "net/http_client.h"
#include "store/store.h"
#include "webhook/webhook.h"

namespace imgproc::webhook {
namespace {

using namespace std::chrono_literals;

// How long a test waits for what must happen. Far longer than it takes (milliseconds), far
// shorter than the old sequential Sender needed (eight 30 s timeouts).
constexpr auto kDeadline = 5s;

// Requests that reach a receiver wait here until the test opens it.
class Gate {
 public:
  // In a receiver's handler.
  void Pass() {
    std::unique_lock<std::mutex> lock(mu_);
    ++arrived_;
    ++inside_;
    max_inside_ = std::max(max_inside_, inside_);
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
    --inside_;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // True once `n` requests have arrived (within the deadline).
  bool WaitForArrivals(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kDeadline, [&] { return arrived_ >= n; });
  }
  int arrived() {
    std::lock_guard<std::mutex> lock(mu_);
    return arrived_;
  }
  int max_inside() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_inside_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int arrived_ = 0;
  int inside_ = 0;
  int max_inside_ = 0;
};

// Opens `gate` when it goes out of scope: declared after the Sender, so that however a test ends,
// no handler still waits when the Sender stops (the old one waited for its delivery) and the
// receivers shut down.
class OpenAtExit {
 public:
  explicit OpenAtExit(Gate& gate) : gate_(gate) {}
  ~OpenAtExit() { gate_.Open(); }
  OpenAtExit(const OpenAtExit&) = delete;
  OpenAtExit& operator=(const OpenAtExit&) = delete;

 private:
  Gate& gate_;
};

// A webhook receiver on its own port (its own origin) that answers `status`, after `gate` if any.
class Receiver {
 public:
  explicit Receiver(Gate* gate = nullptr, int status = 200) {
    server_.server().Post("/hook", [gate, status](const httplib::Request&, httplib::Response& res) {
      if (gate != nullptr) gate->Pass();
      res.status = status;
    });
    server_.Start();
  }
  std::string url() const { return server_.Url("/hook"); }
  size_t received() const { return server_.CountRequests("/hook"); }

 private:
  testing::FixtureServer server_;
};

// The real store, with what the Sender does to it observable (and, for some tests, failing).
class WatchedStore : public testing::ForwardingStore {
 public:
  explicit WatchedStore(store::Store& inner) : ForwardingStore(inner) {}

  // When set, GetRequest or RecordWebhook fail with it instead of reaching the store.
  void FailGetRequest(Status status) { get_failure_ = std::move(status); }
  void FailRecordWebhook(Status status) { record_failure_ = std::move(status); }

  Result<request::RequestView> GetRequestPage(const std::string& request_id,
                                              const request::ProductRange& range) override {
    Note([&] { ++reads_[request_id]; });
    if (!get_failure_.ok()) return get_failure_;
    return ForwardingStore::GetRequestPage(request_id, range);
  }
  Status RecordWebhook(const std::string& request_id, int64_t round, bool delivered,
                       std::optional<int> http_status,
                       std::optional<request::Millis> retry_at) override {
    Status status = record_failure_;
    if (status.ok()) {
      status = ForwardingStore::RecordWebhook(request_id, round, delivered, http_status, retry_at);
    }
    // Noted after the store has it, so that a test that saw the note sees the state.
    Note([&] { records_[request_id].push_back(delivered); });
    return status;
  }

  // True once `done()` holds (within the deadline); checked after every call noted.
  bool WaitUntil(const std::function<bool()>& done) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kDeadline, done);
  }
  // Under WaitUntil's lock only.
  int reads(const std::string& id) { return reads_[id]; }
  bool recorded_delivered(const std::string& id) {
    const auto& attempts = records_[id];
    return !attempts.empty() && attempts.back();
  }
  size_t records(const std::string& id) { return records_[id].size(); }

 private:
  void Note(const std::function<void()>& change) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      change();
    }
    cv_.notify_all();
  }

  Status get_failure_;
  Status record_failure_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> reads_;
  std::map<std::string, std::vector<bool>> records_;
};

class SenderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { net::InitHttpClient(); }

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("imgproc-sender-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto opened = store::OpenStore("sqlite://" + (dir_ / "imgproc.db").string());
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    store_ = std::move(*opened);
    watched_ = std::make_unique<WatchedStore>(*store_);
  }
  void TearDown() override {
    watched_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A request whose only image entry is not an http URL: it completes at once and its webhook
  // to `url` is due.
  void CreateCompleted(const std::string& id, const std::string& url) {
    store::NewRequest request;
    request.request_id = id;
    request.webhook_url = url;
    request.products = {{1, "SKU-" + id, {"kept-as-is.jpg"}}};
    const Status created = store_->CreateRequest(request);
    ASSERT_TRUE(created.ok()) << created.message();
  }

  request::WebhookView Webhook(const std::string& id) {
    auto view = store_->GetRequest(id);
    EXPECT_TRUE(view.ok()) << view.status().message();
    return view.ok() && view->webhook ? *view->webhook : request::WebhookView{};
  }

  // The service's settings, but a 30 s HTTP timeout: longer than any test waits, so that a
  // delivery stuck behind a hanging receiver cannot get through by its timeout.
  static SenderOptions Options() {
    SenderOptions options;
    options.schedule = {5s, 5min};
    options.fetch.allow_private = true;
    options.fetch.total_timeout = 30s;
    options.fetch.connect_timeout = 5s;
    options.fetch.max_body_bytes = 64 * 1024;
    options.fetch.max_redirects = 0;
    options.concurrency = 16;
    options.per_receiver = 2;
    return options;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<WatchedStore> watched_;
};

TEST(ReceiverOriginTest, IsSchemeHostAndPort) {
  EXPECT_EQ(ReceiverOrigin("http://Hooks.Example.com/a?b=c"), "http://hooks.example.com:80");
  EXPECT_EQ(ReceiverOrigin("https://hooks.example.com/x"), "https://hooks.example.com:443");
  EXPECT_EQ(ReceiverOrigin("http://127.0.0.1:8080/one"), ReceiverOrigin("http://127.0.0.1:8080/2"));
  EXPECT_NE(ReceiverOrigin("http://127.0.0.1:8080/"), ReceiverOrigin("http://127.0.0.1:8081/"));
  EXPECT_NE(ReceiverOrigin("http://h/"), ReceiverOrigin("https://h/"));
  EXPECT_EQ(ReceiverOrigin("not a url"), "not a url");
}

// Issue 19: eight receivers that hang delayed another request's webhook until each had timed out
// in turn. Now the other receiver gets its webhook while all eight still hang.
TEST_F(SenderTest, HangingReceiversDoNotDelayOthers) {
  Gate hanging;
  std::vector<std::unique_ptr<Receiver>> slow;
  for (int i = 0; i < 8; ++i) {
    slow.push_back(std::make_unique<Receiver>(&hanging));
    CreateCompleted("slow" + std::to_string(i), slow.back()->url());
  }
  Receiver fast;
  CreateCompleted("fast", fast.url());
  Sender sender(*watched_, *watched_, Options());
  const OpenAtExit open_at_exit(hanging);
  sender.Start();

  EXPECT_TRUE(watched_->WaitUntil([&] { return watched_->recorded_delivered("fast"); }))
      << "the webhook to the fast receiver waits behind the hanging ones";
  EXPECT_TRUE(hanging.WaitForArrivals(8)) << "deliveries are not concurrent";
  EXPECT_EQ(fast.received(), 1u);
  EXPECT_EQ(Webhook("fast").state, "delivered");

  hanging.Open();
  EXPECT_TRUE(watched_->WaitUntil([&] {
    for (int i = 0; i < 8; ++i) {
      if (!watched_->recorded_delivered("slow" + std::to_string(i))) return false;
    }
    return true;
  }));
  sender.Stop();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(Webhook("slow" + std::to_string(i)).state, "delivered");
}

// One receiver with many webhooks due holds at most `per_receiver` deliveries, and as many more
// waiting for them: another receiver's webhook, due after all of them, goes out while they hang,
// and its other webhooks stay in the store, leased but not attempted (not failed, no attempt
// counted), to be claimed again when their lease runs out.
TEST_F(SenderTest, OneReceiverTakesAtMostItsShareOfTheDeliveries) {
  Gate hanging;
  Receiver busy(&hanging);
  for (int i = 0; i < 6; ++i) CreateCompleted("busy" + std::to_string(i), busy.url());
  Receiver other;
  CreateCompleted("other", other.url());
  Sender sender(*watched_, *watched_, Options());
  const OpenAtExit open_at_exit(hanging);
  sender.Start();

  EXPECT_TRUE(watched_->WaitUntil([&] { return watched_->recorded_delivered("other"); }))
      << "the other receiver's webhook waits behind the busy one's";
  EXPECT_TRUE(hanging.WaitForArrivals(2));
  EXPECT_EQ(hanging.arrived(), 2) << "more than per_receiver deliveries to one receiver";

  // Once the first two end, the two held in memory go; the last two were left to their lease.
  hanging.Open();
  const auto delivered = [&] {
    int n = 0;
    for (int i = 0; i < 6; ++i) n += watched_->recorded_delivered("busy" + std::to_string(i));
    return n;
  };
  EXPECT_TRUE(watched_->WaitUntil([&] { return delivered() == 4; }));
  sender.Stop();
  EXPECT_EQ(busy.received(), 4u);
  EXPECT_EQ(hanging.max_inside(), 2);
  int leased = 0;
  for (int i = 0; i < 6; ++i) {
    const request::WebhookView webhook = Webhook("busy" + std::to_string(i));
    if (webhook.state == "delivered") continue;
    ++leased;
    EXPECT_EQ(webhook.state, "pending");
    EXPECT_EQ(webhook.attempts, 0);
  }
  EXPECT_EQ(leased, 2);
}

// A store error while reading the request (PostgreSQL restarting, say) is not the receiver's
// failure: the webhook keeps its attempts and is tried again, where it used to fail for good.
TEST_F(SenderTest, StoreErrorReadingTheRequestDoesNotFailTheWebhook) {
  Receiver receiver;
  CreateCompleted("r1", receiver.url());
  watched_->FailGetRequest(Transient("server closed the connection unexpectedly"));
  Sender sender(*watched_, *watched_, Options());
  sender.Start();
  EXPECT_TRUE(watched_->WaitUntil([&] { return watched_->reads("r1") >= 1; }));
  sender.Stop();  // joins: the delivery attempt is over

  const request::WebhookView webhook = Webhook("r1");
  EXPECT_EQ(webhook.state, "pending");  // leased, to be claimed again when the lease runs out
  EXPECT_EQ(webhook.attempts, 0);
  EXPECT_EQ(receiver.received(), 0u);
}

// Only a request that is gone fails its webhook at once.
TEST_F(SenderTest, UnknownRequestFailsTheWebhook) {
  Receiver receiver;
  CreateCompleted("r1", receiver.url());
  watched_->FailGetRequest(NotFound("Request ID not found"));
  Sender sender(*watched_, *watched_, Options());
  sender.Start();
  EXPECT_TRUE(watched_->WaitUntil([&] { return watched_->records("r1") >= 1; }));
  sender.Stop();
  EXPECT_EQ(Webhook("r1").state, "failed");
  EXPECT_EQ(receiver.received(), 0u);
}

// spdlog's default logger also writes to a ring buffer while this lives. Made before any thread
// that logs starts and gone after they end: spdlog's sink list is not for changing under load.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  bool Contains(const std::string& text) const {
    for (const std::string& line : sink_->last_formatted()) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

uint64_t Deliveries(metrics::ServiceMetrics& metrics, const std::string& outcome) {
  return metrics.registry()
      .GetCounter("imgproc_webhook_deliveries_total", "Webhook delivery attempts, by outcome",
                  {{"outcome", outcome}})
      .Value();
}

// A delivery whose outcome the store did not take is logged, and not counted as recorded.
TEST_F(SenderTest, UnrecordedOutcomeIsLoggedAndNotCounted) {
  const LogCapture log;
  Receiver receiver;
  CreateCompleted("r1", receiver.url());
  watched_->FailRecordWebhook(Transient("disk I/O error"));
  metrics::ServiceMetrics metrics;
  SenderOptions options = Options();
  options.metrics = &metrics;
  Sender sender(*watched_, *watched_, options);
  sender.Start();
  EXPECT_TRUE(watched_->WaitUntil([&] { return watched_->records("r1") >= 1; }));
  sender.Stop();

  EXPECT_EQ(receiver.received(), 1u);
  EXPECT_EQ(Deliveries(metrics, "delivered"), 0u);
  EXPECT_TRUE(log.Contains("cannot record the attempt (disk I/O error)"));
}

// What the Sender did before stays: a 5xx is retried on the schedule, a 410 stops the retries.
TEST_F(SenderTest, RetriesAFailureAndStopsOnGone) {
  Receiver failing(nullptr, 503);
  Receiver gone(nullptr, 410);
  CreateCompleted("failing", failing.url());
  CreateCompleted("gone", gone.url());
  metrics::ServiceMetrics metrics;
  SenderOptions options = Options();
  options.metrics = &metrics;
  Sender sender(*watched_, *watched_, options);
  sender.Start();
  EXPECT_TRUE(watched_->WaitUntil(
      [&] { return watched_->records("failing") >= 1 && watched_->records("gone") >= 1; }));
  sender.Stop();

  const request::WebhookView failing_state = Webhook("failing");
  EXPECT_EQ(failing_state.state, "retrying");  // in 5 s: the schedule's first delay
  EXPECT_EQ(failing_state.attempts, 1);
  EXPECT_EQ(failing_state.last_status.value_or(0), 503);
  EXPECT_EQ(Webhook("gone").state, "failed");
  EXPECT_EQ(Deliveries(metrics, "retrying"), 1u);
  EXPECT_EQ(Deliveries(metrics, "failed"), 1u);
}

// Stop() does not wait for a hanging receiver: the delivery is cancelled and left to its lease.
TEST_F(SenderTest, StopDoesNotWaitForAHangingReceiver) {
  Gate hanging;
  Receiver receiver(&hanging);
  CreateCompleted("r1", receiver.url());
  Sender sender(*watched_, *watched_, Options());
  const OpenAtExit open_at_exit(hanging);
  sender.Start();
  ASSERT_TRUE(hanging.WaitForArrivals(1));

  auto stopped = std::async(std::launch::async, [&] { sender.Stop(); });
  EXPECT_EQ(stopped.wait_for(kDeadline), std::future_status::ready)
      << "Stop() waits for the receiver";
  hanging.Open();
  stopped.wait();
  const request::WebhookView webhook = Webhook("r1");
  EXPECT_NE(webhook.state, "failed");
  EXPECT_EQ(webhook.attempts, 0);
}

}  // namespace
}  // namespace imgproc::webhook
