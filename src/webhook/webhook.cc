#include "webhook/webhook.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <random>

#include "common/logging.h"
#include "common/thread_name.h"
#include "report/report.h"

namespace imgproc::webhook {
namespace {

std::string Base64(const unsigned char* data, size_t size) {
  std::string out(4 * ((size + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

std::string DecodeSecret(const std::string& secret) {
  constexpr std::string_view kPrefix = "whsec_";
  if (secret.rfind(kPrefix, 0) != 0) return secret;
  const std::string encoded = secret.substr(kPrefix.size());
  std::string out(3 * (encoded.size() / 4) + 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(encoded.data()),
                                static_cast<int>(encoded.size()));
  if (n < 0) return secret;
  // EVP_DecodeBlock counts the '=' padding as zero bytes; drop them.
  size_t len = static_cast<size_t>(n);
  for (auto it = encoded.rbegin(); it != encoded.rend() && *it == '=' && len > 0; ++it) --len;
  out.resize(len);
  return out;
}

}  // namespace

std::string Sign(const std::string& secret, const std::string& id, int64_t timestamp,
                 const std::string& body) {
  const std::string key = DecodeSecret(secret);
  const std::string message = id + "." + std::to_string(timestamp) + "." + body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &mac_len);
  return "v1," + Base64(mac, mac_len);
}

Result<RetrySchedule> ParseRetrySchedule(const std::string& text) {
  RetrySchedule schedule;
  if (text.empty()) return schedule;
  for (size_t start = 0; start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    size_t digits = 0;
    while (digits < item.size() && std::isdigit(static_cast<unsigned char>(item[digits]))) {
      ++digits;
    }
    const std::string unit = item.substr(digits);
    const int64_t scale = unit == "ms"  ? 1
                          : unit == "s" ? 1000
                          : unit == "m" ? 60'000
                          : unit == "h" ? 3'600'000
                                        : 0;
    if (digits == 0 || digits > 6 || scale == 0) {
      return InvalidArgument("retry schedule: '" + item + "' is not a duration like 5s, 5m or 2h");
    }
    schedule.emplace_back(std::stoll(item.substr(0, digits)) * scale);
  }
  return schedule;
}

std::string ReceiverOrigin(const std::string& url) {
  std::string origin = url;
  CURLU* parsed = curl_url();
  if (parsed == nullptr) return origin;
  char* scheme = nullptr;
  char* host = nullptr;
  char* port = nullptr;
  if (curl_url_set(parsed, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(parsed, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(parsed, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(parsed, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    origin = std::string(scheme) + "://" + host + ":" + port;
    std::transform(origin.begin(), origin.end(), origin.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(parsed);
  return origin;
}

namespace {

// The longest one delivery takes: the HTTP timeout, and the store's two calls around it.
std::chrono::milliseconds DeliveryTime(const SenderOptions& options) {
  return options.fetch.total_timeout + std::chrono::seconds(1);
}

// Long enough for a claimed job to wait its longest and then be delivered (see ClaimLoop):
// ceil(concurrency / per_receiver) delivery times, and one more.
std::chrono::milliseconds Lease(const SenderOptions& options) {
  const int rounds = (options.concurrency + options.per_receiver - 1) / options.per_receiver;
  return std::max<std::chrono::milliseconds>(std::chrono::seconds(60),
                                             (rounds + 1) * DeliveryTime(options));
}

SenderOptions Sanitised(SenderOptions options, const std::atomic<bool>* cancel) {
  options.concurrency = std::max(options.concurrency, 1);
  options.per_receiver = std::max(options.per_receiver, 1);
  options.fetch.cancel = cancel;
  return options;
}

}  // namespace

Sender::Sender(store::WebhookDeliveries& deliveries, store::RequestReader& reader,
               SenderOptions options, Clock& clock, net::HttpClient& http)
    : deliveries_(deliveries),
      reader_(reader),
      clock_(clock),
      http_(http),
      options_(Sanitised(std::move(options), &cancel_)),
      max_waiting_(static_cast<size_t>(options_.concurrency)),
      lease_(Lease(options_)) {}

Sender::~Sender() { Stop(); }

void Sender::Start() {
  claimer_ = std::thread([this] {
    NameThisThread("imgproc-webhook");
    ClaimLoop();
  });
  for (int i = 0; i < options_.concurrency; ++i) {
    deliverers_.emplace_back([this] {
      NameThisThread("imgproc-hook-out");
      DeliveryLoop();
    });
  }
}

void Sender::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cancel_ = true;
  claim_cv_.SignalAll();
  deliver_cv_.SignalAll();
  if (claimer_.joinable()) claimer_.join();
  for (std::thread& thread : deliverers_) {
    if (thread.joinable()) thread.join();
  }
  deliverers_.clear();
}

void Sender::Notify() {
  {
    MutexLock lock(&mu_);
    woken_ = true;
  }
  claim_cv_.SignalAll();
}

// Claimed jobs wait in memory, oldest first, until a thread is free and their receiver has fewer
// than per_receiver deliveries in flight. Two limits keep that wait short:
//  - per receiver, at most 2 * per_receiver jobs are held (in flight or waiting). The store hands
//    out due webhooks oldest first, so a receiver with a backlog (say a dead one whose customer
//    keeps completing requests) would otherwise fill the memory with jobs it cannot take, and
//    everyone's webhooks would wait behind them. Its other claimed jobs are left to their lease:
//    due again when it runs out, then behind whatever fell due meanwhile, attempts untouched.
//  - at most max_waiting_ (= concurrency) jobs wait in all; the claimer claims only while fewer
//    do. With the first limit, the waiting jobs can only number that many when every thread is
//    busy (a free thread means each waiting job's receiver has per_receiver in flight, and then
//    holds at most per_receiver waiting: concurrency / per_receiver receivers with per_receiver
//    in flight each is every thread), so claiming more would not deliver sooner.
// Each job must start and end within its lease, or another sender could claim it meanwhile and
// deliver it twice. Bound: let T be one delivery's longest time (DeliveryTime: 5 s + 1 s in the
// service). While a job J waits, a thread that finds J runnable takes J or an older job; J is not
// runnable only while its receiver has per_receiver deliveries in flight, and the first of those
// ends within T, freeing a thread that then takes J or an older job. So every T at least
// per_receiver jobs among J and the fewer than max_waiting_ older ones start: J starts within
// ceil(max_waiting_ / per_receiver) * T of its claim (8 * 6 s with 16 and 2) and ends one T
// later, 54 s; the lease is made at least that long (60 s in the service). Should the store be
// slower than T allows, a job past its start_by is dropped from memory instead of started late,
// and left to its lease like the others.
void Sender::ClaimLoop() {
  const int max_held = 2 * options_.per_receiver;
  while (true) {
    size_t room = 0;
    {
      MutexLock lock(&mu_);
      while (!stop_ && waiting_.size() >= max_waiting_) claim_cv_.Wait(&mu_);
      if (stop_) return;
      room = max_waiting_ - waiting_.size();
    }
    // Before the claim, so start_by is no later than the store's lease allows.
    const auto claimed_at = clock_.Now();
    auto jobs = deliveries_.ClaimWebhooks(static_cast<int>(room), lease_.count());
    if (!jobs.ok()) spdlog::warn("webhook: {}", jobs.status().message());
    if (jobs.ok() && !jobs->empty()) {
      {
        MutexLock lock(&mu_);
        for (auto& job : *jobs) {
          std::string origin = ReceiverOrigin(job.url);
          Held& held = held_[origin];
          if (held.in_flight + held.waiting >= max_held) {
            spdlog::debug("webhook {}: {} has enough deliveries under way; left to its lease",
                          job.request_id, origin);
            continue;
          }
          ++held.waiting;
          waiting_.push_back(
              {std::move(job), std::move(origin), claimed_at + lease_ - DeliveryTime(options_)});
        }
      }
      deliver_cv_.SignalAll();
      continue;
    }
    // Nothing due: look again in half a second (a retry's time may come), or when woken.
    MutexLock lock(&mu_);
    const auto until = clock_.Now() + std::chrono::milliseconds(500);
    while (!stop_ && !woken_ && clock_.Now() < until)
      (void)clock_.WaitUntil(&claim_cv_, &mu_, until);
    woken_ = false;
  }
}

void Sender::Release(const std::string& origin, bool in_flight) {
  auto it = held_.find(origin);
  if (it == held_.end()) return;
  --(in_flight ? it->second.in_flight : it->second.waiting);
  if (it->second.in_flight == 0 && it->second.waiting == 0) held_.erase(it);
}

std::deque<Sender::Waiting>::iterator Sender::NextRunnable() {
  const auto now = clock_.Now();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (now > it->start_by) {
      spdlog::warn("webhook {}: waited too long for a delivery slot; left to its lease",
                   it->job.request_id);
      Release(it->origin, /*in_flight=*/false);
      it = waiting_.erase(it);
      claim_cv_.Signal();  // room to claim another
      continue;
    }
    const auto held = held_.find(it->origin);
    if (held == held_.end() || held->second.in_flight < options_.per_receiver) return it;
    ++it;
  }
  return waiting_.end();
}

void Sender::DeliveryLoop() {
  while (true) {
    Waiting next;
    {
      MutexLock lock(&mu_);
      auto it = waiting_.end();
      while (!stop_ && (it = NextRunnable()) == waiting_.end()) deliver_cv_.Wait(&mu_);
      if (stop_) return;
      next = std::move(*it);
      waiting_.erase(it);
      Held& held = held_[next.origin];
      --held.waiting;
      ++held.in_flight;
    }
    claim_cv_.Signal();  // room to claim another
    Deliver(next.job);
    {
      MutexLock lock(&mu_);
      Release(next.origin, /*in_flight=*/true);
    }
    deliver_cv_.SignalAll();  // the receiver has room again
  }
}

void Sender::Record(const store::WebhookJob& job, bool delivered, std::optional<int> http_status,
                    std::optional<request::Millis> retry_at, metrics::DeliveryOutcome outcome) {
  const Status recorded =
      deliveries_.RecordWebhook(job.request_id, job.round, delivered, http_status, retry_at);
  if (!recorded.ok()) {
    // The job stays leased: when the lease runs out it is claimed and attempted again (a
    // delivered one is then sent twice, with the same webhook-id for receivers to de-duplicate).
    spdlog::error("webhook {}: cannot record the attempt ({}); attempted again after its lease",
                  job.request_id, recorded.message());
    return;
  }
  if (options_.metrics != nullptr) options_.metrics->WebhookDelivery(outcome);
}

void Sender::Deliver(const store::WebhookJob& job) {
  const logging::ScopedRequestId log_scope(job.request_id);
  auto request = reader_.GetRequest(job.request_id);
  if (!request.ok()) {
    if (request.status().code() == StatusCode::kNotFound) {
      spdlog::warn("webhook {}: {}", job.request_id, request.status().message());
      Record(job, false, std::nullopt, std::nullopt, metrics::DeliveryOutcome::kFailed);
      return;
    }
    // The store failed (e.g. PostgreSQL restarting): not the receiver's doing, so no attempt is
    // recorded (RecordWebhook would count one, and a store that cannot read now may not write
    // either). The job stays leased and is claimed again when the lease runs out, its attempts
    // and schedule untouched.
    spdlog::warn("webhook {}: cannot read the request ({}); trying again when its lease runs out",
                 job.request_id, request.status().message());
    return;
  }
  const std::string body = report::WebhookJson(*request);
  std::vector<std::string> headers;
  if (!options_.secret.empty()) {
    const std::string id = request::WebhookId(job.request_id, job.round);  // per round
    const int64_t ts = clock_.WallMillis() / 1000;
    headers = {"webhook-id: " + id, "webhook-timestamp: " + std::to_string(ts),
               "webhook-signature: " + Sign(options_.secret, id, ts, body)};
  }
  auto response = http_.Post(job.url, "application/json", body, headers, options_.fetch);
  if (!response.ok() && cancel_) {
    // Stop() cut it short: not the receiver's failure. Left to its lease, like the jobs that
    // were still waiting.
    return;
  }
  request::DeliveryAttempt attempt;
  attempt.attempt = job.attempts + 1;
  if (response.ok()) {
    attempt.http_status = static_cast<int>(response->status);
    if (auto it = response->headers.find("retry-after"); it != response->headers.end()) {
      attempt.retry_after = RetryAfter(it->second);
    }
  } else {
    attempt.transient = response.status().transient();
  }
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const request::DeliveryDecision decision =
      request::DecideDelivery(attempt, options_.schedule, clock_.WallMillis(),
                              std::uniform_real_distribution<double>(0, 1)(rng));
  if (decision.delivered) {
    spdlog::info("webhook {}: delivered (HTTP {})", job.request_id, *attempt.http_status);
    Record(job, true, attempt.http_status, std::nullopt, metrics::DeliveryOutcome::kDelivered);
    return;
  }
  spdlog::warn(
      "webhook {}: attempt {} failed ({}){}", job.request_id, attempt.attempt,
      response.ok() ? "HTTP " + std::to_string(response->status) : response.status().message(),
      decision.retry_at ? ", will retry" : ", giving up");
  Record(
      job, false, attempt.http_status, decision.retry_at,
      decision.retry_at ? metrics::DeliveryOutcome::kRetrying : metrics::DeliveryOutcome::kFailed);
}

}  // namespace imgproc::webhook
