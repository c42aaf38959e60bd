// Telling the user's webhook_url that a request completed (CONTRACT.md §4): the original list of
// product objects as the body, optionally signed the Standard Webhooks way, retried with backoff.
// Deliveries are recorded in the store, so a restart resumes them.
#ifndef IMGPROC_WEBHOOK_WEBHOOK_H_
#define IMGPROC_WEBHOOK_WEBHOOK_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "metrics/service_metrics.h"
#include "net/http_client.h"
#include "store/store.h"

namespace imgproc::webhook {

// The body: a JSON list of {"Serial Number", "Product Name", "Input Image Urls",
// "Output Image Urls"}, in file order.
std::string Payload(const store::RequestView& request);

// The Standard Webhooks signature header value: "v1," + base64(HMAC-SHA256(secret,
// id + "." + timestamp + "." + body)). A secret of the form "whsec_<base64>" is base64-decoded
// first, as the specification says; any other secret is used as raw bytes.
std::string Sign(const std::string& secret, const std::string& id, int64_t timestamp,
                 const std::string& body);

// The delays between attempts: after the first failure wait schedule[0], after the second
// schedule[1], and so on; when it runs out the delivery has failed.
using RetrySchedule = std::vector<std::chrono::milliseconds>;

// Parses "5s,5m,30m,2h" (units ms, s, m, h). An empty text means: never retry.
Result<RetrySchedule> ParseRetrySchedule(const std::string& text);

// `delay` with up to 10% random jitter added, so that retries of many requests spread out.
std::chrono::milliseconds Jitter(std::chrono::milliseconds delay);

struct SenderOptions {
  std::string secret;  // empty: unsigned
  RetrySchedule schedule;
  net::FetchOptions fetch;                     // timeout 5 s, SSRF policy
  metrics::ServiceMetrics* metrics = nullptr;  // delivery outcomes; may be null
};

// A background thread that delivers due webhooks from the store.
class Sender {
 public:
  Sender(store::Store& store, SenderOptions options);
  ~Sender();  // stops the thread

  void Start();
  void Stop();
  // Wakes the thread (a request has just completed).
  void Notify();

 private:
  void Run();
  void Deliver(const store::WebhookJob& job);

  store::Store& store_;
  const SenderOptions options_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
};

}  // namespace imgproc::webhook

#endif  // IMGPROC_WEBHOOK_WEBHOOK_H_
