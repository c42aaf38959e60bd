#include "request/request.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <queue>
#include <random>
#include <unordered_map>

namespace imgproc::request {

std::string NewRequestId() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    std::random_device rd;  // OpenSSL's generator failing is near impossible; still be correct
    for (auto& byte : b) byte = static_cast<unsigned char>(rd());
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) id += '-';
    id += kHex[b[i] >> 4];
    id += kHex[b[i] & 15];
  }
  return id;
}

bool IsUuid(std::string_view id) {
  if (id.size() != 36) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

bool IsImageEntry(std::string_view entry) {
  constexpr std::string_view kHttp = "http";
  for (size_t i = 0; i + kHttp.size() <= entry.size(); ++i) {
    size_t k = 0;
    // ASCII letters only: setting bit 0x20 lower-cases them and maps nothing else onto them.
    while (k < kHttp.size() && (entry[i + k] | 0x20) == kHttp[k]) ++k;
    if (k == kHttp.size()) return true;
  }
  return false;
}

std::vector<std::string> SplitEntries(std::string_view joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = joined.find(',', start);
    out.emplace_back(joined.substr(start, comma - start));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

std::string JoinEntries(const std::vector<std::string>& entries) {
  std::string out;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) out += ',';
    out += entries[i];
  }
  return out;
}

const char* ToString(RequestStatus status) {
  switch (status) {
    case RequestStatus::kPending:
      return "pending";
    case RequestStatus::kProcessing:
      return "processing";
    case RequestStatus::kCompleted:
      return "completed";
    case RequestStatus::kCancelled:
      return "cancelled";
  }
  return "pending";
}

bool IsFinished(RequestStatus status) {
  return status == RequestStatus::kCompleted || status == RequestStatus::kCancelled;
}

CancelVerdict DecideCancel(RequestStatus status) {
  switch (status) {
    case RequestStatus::kPending:
    case RequestStatus::kProcessing:
      return CancelVerdict::kCancel;
    case RequestStatus::kCancelled:
      return CancelVerdict::kAlreadyCancelled;
    case RequestStatus::kCompleted:
      return CancelVerdict::kAlreadyCompleted;
  }
  return CancelVerdict::kAlreadyCompleted;
}

RequestStatus ParseRequestStatus(std::string_view text) {
  if (text == "processing") return RequestStatus::kProcessing;
  if (text == "completed") return RequestStatus::kCompleted;
  if (text == "cancelled") return RequestStatus::kCancelled;
  return RequestStatus::kPending;
}

RequestPlan PlanRequest(const std::vector<NewProduct>& products, bool has_webhook, Millis now) {
  RequestPlan plan;
  plan.products.reserve(products.size());
  std::unordered_map<std::string_view, SlotRef> first_slot;  // by URL
  for (size_t pos = 0; pos < products.size(); ++pos) {
    const NewProduct& product = products[pos];
    ProductPlan p;
    p.input_urls = JoinEntries(product.entries);
    for (size_t i = 0; i < product.entries.size(); ++i) {
      if (!IsImageEntry(product.entries[i])) continue;
      const SlotRef slot{pos, static_cast<int>(i)};
      auto [it, first] = first_slot.emplace(product.entries[i], slot);
      p.image_indices.push_back(slot.index);
      p.same_as.push_back(first ? std::nullopt : std::optional<SlotRef>(it->second));
    }
    if (p.image_indices.empty()) p.output_urls = p.input_urls;
    plan.images_total += static_cast<int64_t>(p.image_indices.size());
    plan.products.push_back(std::move(p));
  }
  if (plan.images_total == 0) {
    plan.status = RequestStatus::kCompleted;
    plan.completed_at = now;
    if (has_webhook) plan.webhook_due = now;
  }
  return plan;
}

bool FitsClientQueue(int64_t queued, int64_t adding, int64_t limit) {
  return limit <= 0 || adding == 0 || queued + adding <= limit;
}

std::string ClientQueueMessage(int64_t queued, int64_t adding, int64_t limit) {
  return "Too many images queued: this request has " + std::to_string(adding) +
         " images and your earlier requests still have " + std::to_string(queued) +
         " unfinished, over the limit of " + std::to_string(limit) +
         " per client (MAX_QUEUED_IMAGES_PER_CLIENT); send it again once they have finished";
}

const char* ToString(ImageState state) {
  switch (state) {
    case ImageState::kQueued:
      return "queued";
    case ImageState::kLeased:
      return "leased";
    case ImageState::kDone:
      return "done";
    case ImageState::kFailed:
      return "failed";
    case ImageState::kWaiting:
      return "waiting";
  }
  return "queued";
}

ImageState ParseImageState(std::string_view text) {
  if (text == "leased") return ImageState::kLeased;
  if (text == "done") return ImageState::kDone;
  if (text == "failed") return ImageState::kFailed;
  if (text == "waiting") return ImageState::kWaiting;
  return ImageState::kQueued;
}

ImageRecord RecordOf(const ImageOutcome& outcome) {
  ImageRecord record;
  if (outcome.ok) {
    record.state = ImageState::kDone;
    record.output_url = outcome.output_url;
    record.input_bytes = outcome.input_bytes;
    record.output_bytes = outcome.output_bytes;
    record.reused = outcome.reused;
    if (!outcome.variants.empty()) record.variants = EncodeVariantOutputs(outcome.variants);
    return record;
  }
  record.error = outcome.error;
  if (outcome.retry_at) {
    record.state = ImageState::kQueued;
    record.due_at = outcome.retry_at;
  } else {
    record.state = ImageState::kFailed;
  }
  return record;
}

std::string ComposeOutputs(std::string_view input_urls, const std::vector<FinalImage>& images) {
  std::vector<std::string> outputs = SplitEntries(input_urls);
  for (const FinalImage& image : images) {
    if (image.index >= 0 && static_cast<size_t>(image.index) < outputs.size()) {
      outputs[static_cast<size_t>(image.index)] = image.output_url.value_or("");
    }
  }
  return JoinEntries(outputs);
}

ImageTally& ImageTally::operator+=(const ImageTally& other) {
  done += other.done;
  failed += other.failed;
  reused += other.reused;
  return *this;
}

ImageTally TallyOf(const ImageOutcome& outcome, int64_t finals) {
  ImageTally t;
  if (!outcome.ok) {
    t.failed = finals;
    return t;
  }
  t.done = finals;
  t.reused = finals - 1 + int64_t{outcome.reused};
  return t;
}

Completion AfterFinalImage(int64_t final_images, int64_t images_total, bool has_webhook,
                           Millis now) {
  Completion c;
  c.completed = final_images >= images_total;
  if (c.completed && has_webhook) c.webhook_due = now;
  return c;
}

RetryVerdict DecideRetry(RequestStatus status, int64_t images_failed) {
  if (!IsFinished(status)) return RetryVerdict::kStillRunning;
  return images_failed > 0 ? RetryVerdict::kRetry : RetryVerdict::kNothingFailed;
}

std::string WebhookId(std::string_view request_id, int64_t round) {
  // Round 0 keeps the id deliveries had before retries existed: receivers de-duplicate on it.
  std::string id = "msg_" + std::string(request_id);
  if (round > 0) id += "_" + std::to_string(round);
  return id;
}

std::string_view WebhookStateAfterAttempt(bool delivered, bool retry) {
  return delivered ? kWebhookDelivered : retry ? kWebhookRetrying : kWebhookFailed;
}

WebhookView ViewOfWebhook(std::string_view stored_state, int attempts,
                          std::optional<int> last_status) {
  WebhookView view;
  view.state = stored_state == kWebhookSending
                   ? std::string(attempts == 0 ? kWebhookPending : kWebhookRetrying)
                   : std::string(stored_state);
  view.attempts = attempts;
  view.last_status = last_status;
  return view;
}

DeliveryDecision DecideDelivery(const DeliveryAttempt& attempt, const RetrySchedule& schedule,
                                Millis now, double jitter) {
  DeliveryDecision decision;
  if (attempt.http_status && *attempt.http_status >= 200 && *attempt.http_status < 300) {
    decision.delivered = true;
    return decision;
  }
  // 410 Gone: the receiver asks us to stop.
  const bool may_pass = attempt.http_status ? *attempt.http_status != 410 : attempt.transient;
  const bool attempts_left =
      attempt.attempt >= 1 && static_cast<size_t>(attempt.attempt) <= schedule.size();
  if (!may_pass || !attempts_left) return decision;
  const int64_t base = schedule[static_cast<size_t>(attempt.attempt - 1)].count();
  const auto spread =
      static_cast<int64_t>(static_cast<double>(base) / 10 * std::clamp(jitter, 0.0, 1.0));
  decision.retry_at = now + std::max(base + spread, int64_t{attempt.retry_after.count()});
  return decision;
}

void AttachImages(const std::vector<int64_t>& product_ids, const std::vector<ImageRow>& rows,
                  std::vector<ProductView>& products) {
  size_t cursor = 0;
  for (const ImageRow& row : rows) {
    while (cursor < product_ids.size() && product_ids[cursor] != row.product_id) ++cursor;
    if (cursor == product_ids.size()) return;  // rows out of product order: the rest is unseen
    ProductView& product = products[cursor];
    if (row.state == ImageState::kDone) {
      if (row.input_bytes) {
        product.image_sizes.push_back(
            {row.index, *row.input_bytes, row.output_bytes.value_or(0), row.reused,
             row.variants ? DecodeVariantOutputs(*row.variants) : std::vector<VariantOutput>()});
      }
    } else if (row.error) {
      (row.state == ImageState::kFailed ? product.image_errors : product.image_retries)
          .push_back({row.index, row.url, *row.error, row.attempts});
    }
  }
}

Millis ReusableSince(Millis now, Millis max_age, std::optional<Millis> refresh_since) {
  return refresh_since ? *refresh_since : now - max_age;
}

std::vector<std::string> ConditionalHeaders(const CachedSource& source) {
  std::vector<std::string> headers;
  if (source.etag) headers.push_back("If-None-Match: " + *source.etag);
  if (source.last_modified) headers.push_back("If-Modified-Since: " + *source.last_modified);
  return headers;
}

bool MayCache(std::string_view cache_control) {
  // Directives are comma-separated tokens, case-insensitive (RFC 9111 5.2).
  for (std::string_view rest = cache_control; !rest.empty();) {
    const size_t comma = rest.find(',');
    std::string_view token = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    constexpr std::string_view kNoStore = "no-store";
    if (token.size() == kNoStore.size() &&
        std::equal(token.begin(), token.end(), kNoStore.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == b;
        })) {
      return false;
    }
  }
  return true;
}

ContentVerdict DecideContent(const std::optional<ContentRow>& row, std::string_view owner,
                             Millis now, Millis stored_since) {
  if (!row) return ContentVerdict::kStore;
  if (row->output_url && row->stored_at >= stored_since) {
    return ContentVerdict::kReuse;
  }
  // Stored but not to be reused, or not stored yet: whoever holds a live claim stores it.
  if (row->owner && *row->owner != owner && row->claimed_until > now) return ContentVerdict::kWait;
  return ContentVerdict::kStore;
}

std::vector<int64_t> FairPick(const std::vector<DueImages>& requests, int max) {
  // (images in flight with the picks, position in the list): the least is served next.
  using Turn = std::pair<int64_t, size_t>;
  std::priority_queue<Turn, std::vector<Turn>, std::greater<>> turns;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!requests[i].due.empty()) turns.emplace(requests[i].in_flight, i);
  }
  std::vector<size_t> taken(requests.size(), 0);
  std::vector<int64_t> picked;
  while (static_cast<int>(picked.size()) < max && !turns.empty()) {
    auto [in_flight, i] = turns.top();
    turns.pop();
    picked.push_back(requests[i].due[taken[i]++]);
    if (taken[i] < requests[i].due.size()) turns.emplace(in_flight + 1, i);
  }
  return picked;
}

}  // namespace imgproc::request
