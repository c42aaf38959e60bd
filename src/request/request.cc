#include "request/request.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <random>

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
  for (const NewProduct& product : products) {
    ProductPlan p;
    p.input_urls = JoinEntries(product.entries);
    for (size_t i = 0; i < product.entries.size(); ++i) {
      if (IsImageEntry(product.entries[i])) p.image_indices.push_back(static_cast<int>(i));
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
  }
  return "queued";
}

ImageState ParseImageState(std::string_view text) {
  if (text == "leased") return ImageState::kLeased;
  if (text == "done") return ImageState::kDone;
  if (text == "failed") return ImageState::kFailed;
  return ImageState::kQueued;
}

ImageRecord RecordOf(const ImageOutcome& outcome) {
  ImageRecord record;
  if (outcome.ok) {
    record.state = ImageState::kDone;
    record.output_url = outcome.output_url;
    record.input_bytes = outcome.input_bytes;
    record.output_bytes = outcome.output_bytes;
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

Completion AfterFinalImage(int64_t final_images, int64_t images_total, bool has_webhook,
                           Millis now) {
  Completion c;
  c.completed = final_images >= images_total;
  if (c.completed && has_webhook) c.webhook_due = now;
  return c;
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
        product.image_sizes.push_back({row.index, *row.input_bytes, row.output_bytes.value_or(0)});
      }
    } else if (row.error) {
      (row.state == ImageState::kFailed ? product.image_errors : product.image_retries)
          .push_back({row.index, row.url, *row.error, row.attempts});
    }
  }
}

}  // namespace imgproc::request
