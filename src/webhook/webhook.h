// Telling the user's webhook_url that a request completed (docs/api.md, "Webhook"): the original
// list of product objects as the body (report::WebhookJson), optionally signed the Standard
// Webhooks way, retried on the schedule (request::DecideDelivery). Deliveries are recorded in the
// store, so a restart resumes them.
#ifndef IMGPROC_WEBHOOK_WEBHOOK_H_
#define IMGPROC_WEBHOOK_WEBHOOK_H_

#include <atomic>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "metrics/service_metrics.h"
#include "net/http_client.h"
#include "store/store.h"

namespace imgproc::webhook {

// The Standard Webhooks signature header value: "v1," + base64(HMAC-SHA256(secret,
// id + "." + timestamp + "." + body)). A secret of the form "whsec_<base64>" is base64-decoded
// first, as the specification says; any other secret is used as raw bytes.
std::string Sign(const std::string& secret, const std::string& id, int64_t timestamp,
                 const std::string& body);

using request::RetrySchedule;

// Parses "5s,5m,30m,2h" (units ms, s, m, h). An empty text means: never retry.
Result<RetrySchedule> ParseRetrySchedule(const std::string& text);

// What deliveries to one receiver have in common: "scheme://host:port" of the webhook URL (the
// port made explicit, scheme and host in lower case); the URL itself when it cannot be parsed.
std::string ReceiverOrigin(const std::string& url);

struct SenderOptions {
  std::string secret;  // empty: unsigned
  // The delays between attempts, about 3 days in all (like Standard Webhooks); then the delivery
  // has failed. Empty: a single attempt.
  RetrySchedule schedule = {
      std::chrono::seconds(5), std::chrono::minutes(5), std::chrono::minutes(30),
      std::chrono::hours(2),   std::chrono::hours(5),   std::chrono::hours(10),
      std::chrono::hours(14),  std::chrono::hours(20),  std::chrono::hours(20)};
  // A receiver answers at once or not at all: short timeouts, a small answer, no redirects (a
  // webhook URL is the user's to get right). The SSRF policy is the image downloads' one.
  net::FetchOptions fetch = [] {
    net::FetchOptions fetch;
    fetch.connect_timeout = std::chrono::seconds(5);
    fetch.total_timeout = std::chrono::seconds(5);
    fetch.max_redirects = 0;
    fetch.max_body_bytes = 64 * 1024;
    return fetch;
  }();
  metrics::ServiceMetrics* metrics = nullptr;  // delivery outcomes; may be null
  // Deliveries in flight at once, each on a thread of its own (net::Post blocks its caller).
  int concurrency = 16;
  // Deliveries in flight at once to one receiver (ReceiverOrigin), so that a slow or hanging
  // receiver, or one with many webhooks due, holds at most this many threads. As many more may
  // wait for them; the rest of its due webhooks wait in the store (see ClaimLoop).
  int per_receiver = 2;
};

// Background threads that deliver due webhooks from the store: one claims them, `concurrency`
// deliver them.
class Sender {
 public:
  // Claims and records deliveries in `deliveries`, reads the requests they are about in `reader`.
  // Times come from `clock` and deliveries go through `http`: the seams a test replaces.
  Sender(store::WebhookDeliveries& deliveries, store::RequestReader& reader, SenderOptions options,
         Clock& clock = RealClock(), net::HttpClient& http = net::CurlHttpClient());
  ~Sender();  // stops the threads

  void Start() EXCLUDES(mu_);
  // Returns once every thread has ended: deliveries in flight are cancelled and left to their
  // leases, as are the claimed jobs still waiting.
  void Stop() EXCLUDES(mu_);
  // Wakes the claiming thread (a request has just completed).
  void Notify() EXCLUDES(mu_);

 private:
  // A claimed delivery, waiting in memory for a thread and for room at its receiver.
  struct Waiting {
    store::WebhookJob job;
    std::string origin;
    // Started after this, it might still run when its lease has run out and another sender has
    // claimed it: then it is left to its lease instead.
    Clock::TimePoint start_by;
  };
  // A receiver's claimed jobs.
  struct Held {
    int in_flight = 0;
    int waiting = 0;
  };

  void ClaimLoop() EXCLUDES(mu_);
  void DeliveryLoop() EXCLUDES(mu_);
  // The oldest waiting job whose receiver has room (dropping those past their start_by), or
  // waiting_.end().
  std::deque<Waiting>::iterator NextRunnable() REQUIRES(mu_);
  // One job of `origin` fewer in flight (a delivery ended) or waiting (one dropped).
  void Release(const std::string& origin, bool in_flight) REQUIRES(mu_);
  void Deliver(const store::WebhookJob& job);
  // Records an attempt's outcome; counts it in the metrics only once it is recorded.
  void Record(const store::WebhookJob& job, bool delivered, std::optional<int> http_status,
              std::optional<request::Millis> retry_at, metrics::DeliveryOutcome outcome);

  store::WebhookDeliveries& deliveries_;
  store::RequestReader& reader_;
  Clock& clock_;
  net::HttpClient& http_;
  std::atomic<bool> cancel_{false};  // set by Stop(): aborts the deliveries in flight
  const SenderOptions options_;      // options_.fetch.cancel points to cancel_
  const size_t max_waiting_;
  const std::chrono::milliseconds lease_;
  std::thread claimer_;
  std::vector<std::thread> deliverers_;
  Mutex mu_;
  CondVar claim_cv_;                             // the claimer: woken, room to claim, stopping
  CondVar deliver_cv_;                           // the deliverers: a job may be runnable, stopping
  std::deque<Waiting> waiting_ GUARDED_BY(mu_);  // claimed and not started, oldest first
  std::unordered_map<std::string, Held> held_ GUARDED_BY(mu_);  // by receiver; none held: none
  bool stop_ GUARDED_BY(mu_) = false;
  bool woken_ GUARDED_BY(mu_) = false;
};

}  // namespace imgproc::webhook

#endif  // IMGPROC_WEBHOOK_WEBHOOK_H_
