#include "webhook/webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <random>

#include "common/logging.h"
#include "common/product_json.h"
#include "common/thread_name.h"

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

std::string Payload(const store::RequestView& request) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& p : request.products) list.push_back(ProductJson(p, /*with_errors=*/false));
  return list.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

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

std::chrono::milliseconds Jitter(std::chrono::milliseconds delay) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return delay + std::chrono::milliseconds(
                     std::uniform_int_distribution<int64_t>(0, delay.count() / 10)(rng));
}

Sender::Sender(store::Store& store, SenderOptions options)
    : store_(store), options_(std::move(options)) {}

Sender::~Sender() { Stop(); }

void Sender::Start() {
  thread_ = std::thread([this] {
    NameThisThread("imgproc-webhook");
    Run();
  });
}

void Sender::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Sender::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Sender::Run() {
  // The lease outlives one delivery (5 s timeout), so no other sender takes it meanwhile.
  constexpr store::Millis kLeaseMs = 60'000;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_) return;
    }
    auto jobs = store_.ClaimWebhooks(4, kLeaseMs);
    if (!jobs.ok()) spdlog::warn("webhook: {}", jobs.status().message());
    if (jobs.ok() && !jobs->empty()) {
      for (const auto& job : *jobs) Deliver(job);
      continue;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_ || woken_; });
    woken_ = false;
  }
}

void Sender::Deliver(const store::WebhookJob& job) {
  const logging::ScopedRequestId log_scope(job.request_id);
  auto count = [this](metrics::DeliveryOutcome outcome) {
    if (options_.metrics != nullptr) options_.metrics->WebhookDelivery(outcome);
  };
  auto request = store_.GetRequest(job.request_id);
  if (!request.ok()) {
    spdlog::warn("webhook {}: {}", job.request_id, request.status().message());
    store_.RecordWebhook(job.request_id, false, std::nullopt, std::nullopt);
    count(metrics::DeliveryOutcome::kFailed);
    return;
  }
  const std::string body = Payload(*request);
  std::vector<std::string> headers;
  if (!options_.secret.empty()) {
    const std::string id = "msg_" + job.request_id;  // stable, so receivers can de-duplicate
    const int64_t ts = store::NowMillis() / 1000;
    headers = {"webhook-id: " + id, "webhook-timestamp: " + std::to_string(ts),
               "webhook-signature: " + Sign(options_.secret, id, ts, body)};
  }
  auto response = net::Post(job.url, "application/json", body, headers, options_.fetch);
  const int attempt = job.attempts + 1;
  std::optional<int> http_status;
  const bool attempts_left = static_cast<size_t>(attempt) <= options_.schedule.size();
  bool retry = true;
  std::chrono::milliseconds delay =
      attempts_left ? Jitter(options_.schedule[static_cast<size_t>(attempt - 1)])
                    : std::chrono::milliseconds(0);
  if (response.ok()) {
    http_status = static_cast<int>(response->status);
    if (response->status >= 200 && response->status < 300) {
      spdlog::info("webhook {}: delivered (HTTP {})", job.request_id, response->status);
      store_.RecordWebhook(job.request_id, true, http_status, std::nullopt);
      count(metrics::DeliveryOutcome::kDelivered);
      return;
    }
    retry = response->status != 410;  // 410 Gone: the receiver asks us to stop
    if (auto it = response->headers.find("retry-after"); it != response->headers.end()) {
      delay = std::max(delay, RetryAfter(it->second));
    }
  } else {
    retry = response.status().transient();
  }
  retry = retry && attempts_left;
  spdlog::warn(
      "webhook {}: attempt {} failed ({}){}", job.request_id, attempt,
      response.ok() ? "HTTP " + std::to_string(response->status) : response.status().message(),
      retry ? ", will retry" : ", giving up");
  store_.RecordWebhook(
      job.request_id, false, http_status,
      retry ? std::optional<store::Millis>(store::NowMillis() + delay.count()) : std::nullopt);
  count(retry ? metrics::DeliveryOutcome::kRetrying : metrics::DeliveryOutcome::kFailed);
}

}  // namespace imgproc::webhook
