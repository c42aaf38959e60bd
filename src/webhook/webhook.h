// Telling the user's webhook_url that a request completed (docs/api.md, "Webhook"): the original
// list of product objects as the body (report::WebhookJson), optionally signed the Standard
// Webhooks way, retried on the schedule (request::DecideDelivery). Deliveries are recorded in the
// store, so a restart resumes them.
#ifndef IMGPROC_WEBHOOK_WEBHOOK_H_
#define IMGPROC_WEBHOOK_WEBHOOK_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

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
  RetrySchedule schedule;
  net::FetchOptions fetch;                     // timeout 5 s, SSRF policy
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
  Sender(store::WebhookDeliveries& deliveries, store::RequestReader& reader, SenderOptions options);
  ~Sender();  // stops the threads

  void Start();
  // Returns once every thread has ended: deliveries in flight are cancelled and left to their
  // leases, as are the claimed jobs still waiting.
  void Stop();
  // Wakes the claiming thread (a request has just completed).
  void Notify();

 private:
  // A claimed delivery, waiting in memory for a thread and for room at its receiver.
  struct Waiting {
    store::WebhookJob job;
    std::string origin;
    // Started after this, it might still run when its lease has run out and another sender has
    // claimed it: then it is left to its lease instead.
    std::chrono::steady_clock::time_point start_by;
  };
  // A receiver's claimed jobs.
  struct Held {
    int in_flight = 0;
    int waiting = 0;
  };

  void ClaimLoop();
  void DeliveryLoop();
  // Under mu_: the oldest waiting job whose receiver has room (dropping those past their
  // start_by), or waiting_.end().
  std::deque<Waiting>::iterator NextRunnable();
  // Under mu_: one job of `origin` fewer in flight (a delivery ended) or waiting (one dropped).
  void Release(const std::string& origin, bool in_flight);
  void Deliver(const store::WebhookJob& job);
  // Records an attempt's outcome; counts it in the metrics only once it is recorded.
  void Record(const store::WebhookJob& job, bool delivered, std::optional<int> http_status,
              std::optional<request::Millis> retry_at, metrics::DeliveryOutcome outcome);

  store::WebhookDeliveries& deliveries_;
  store::RequestReader& reader_;
  std::atomic<bool> cancel_{false};  // set by Stop(): aborts the deliveries in flight
  const SenderOptions options_;      // options_.fetch.cancel points to cancel_
  const size_t max_waiting_;
  const std::chrono::milliseconds lease_;
  std::thread claimer_;
  std::vector<std::thread> deliverers_;
  std::mutex mu_;
  std::condition_variable claim_cv_;            // the claimer: woken, room to claim, stopping
  std::condition_variable deliver_cv_;          // the deliverers: a job may be runnable, stopping
  std::deque<Waiting> waiting_;                 // claimed and not started, oldest first
  std::unordered_map<std::string, Held> held_;  // by receiver; none held: no entry
  bool stop_ = false;
  bool woken_ = false;
};

}  // namespace imgproc::webhook

#endif  // IMGPROC_WEBHOOK_WEBHOOK_H_
