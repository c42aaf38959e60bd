// The metrics imgproc exports at GET /metrics: one place that names them all, so every part of
// the service (API, workers, webhook sender) updates the same series. Parts take a nullable
// pointer to it; without one they count nothing (unit tests, tools).
#ifndef IMGPROC_METRICS_SERVICE_METRICS_H_
#define IMGPROC_METRICS_SERVICE_METRICS_H_

#include <functional>
#include <optional>

#include "metrics/metrics.h"

namespace imgproc::metrics {

// Why an upload was refused (a label of imgproc_uploads_rejected_total).
enum class RejectReason {
  kNoFile,
  kInvalidCsv,
  kInvalidWebhook,
  kInvalidOutputs,  // output settings or presets (format, quality, ...)
  kTooLarge,
  kUnauthorized,
  kTooManyQueued,
};

// A webhook delivery attempt's result (a label of imgproc_webhook_deliveries_total).
enum class DeliveryOutcome { kDelivered, kRetrying, kFailed };

class ServiceMetrics {
 public:
  ServiceMetrics();

  // The queue depth gauge reads this at scrape time (images queued or leased, from the store).
  void SetQueueDepthSource(std::function<std::optional<double>()> read);

  Registry& registry() { return registry_; }
  std::string Render() const { return registry_.Render(); }

  void UploadAccepted() { uploads_accepted_.Inc(); }
  void RequestCancelled() { requests_cancelled_.Inc(); }
  void RequestRetried() { requests_retried_.Inc(); }
  void UploadRejected(RejectReason reason);
  // A recorded image outcome: done, failed for good, or to be retried.
  void ImageDone() { images_done_.Inc(); }
  void ImageFailed() { images_failed_.Inc(); }
  void ImageRetried() { images_retried_.Inc(); }
  // An image whose earlier output was reused from the image cache: its host answered 304 Not
  // Modified to a conditional request, or sent bytes whose output was already stored.
  void ImageReused(bool not_modified) { (not_modified ? reused_304_ : reused_content_).Inc(); }
  // A download held at the image's header until its pixels fitted the budget: resumed, or
  // abandoned after waiting half its timeout (and made again once there was room).
  void DownloadHeld(bool resumed) { (resumed ? held_resumed_ : held_abandoned_).Inc(); }
  void BytesIn(uint64_t n) { bytes_in_.Inc(n); }
  void BytesOut(uint64_t n) { bytes_out_.Inc(n); }
  Histogram& download_seconds() { return download_; }
  Histogram& compress_seconds() { return compress_; }
  Histogram& upload_seconds() { return upload_; }
  void WebhookDelivery(DeliveryOutcome outcome);

 private:
  Registry registry_;
  Counter& uploads_accepted_;
  Counter& requests_cancelled_;
  Counter& requests_retried_;
  Counter& rejected_no_file_;
  Counter& rejected_invalid_csv_;
  Counter& rejected_invalid_webhook_;
  Counter& rejected_invalid_outputs_;
  Counter& rejected_too_large_;
  Counter& rejected_unauthorized_;
  Counter& rejected_too_many_queued_;
  Counter& images_done_;
  Counter& images_failed_;
  Counter& images_retried_;
  Counter& reused_304_;
  Counter& reused_content_;
  Counter& held_resumed_;
  Counter& held_abandoned_;
  Counter& bytes_in_;
  Counter& bytes_out_;
  Histogram& download_;
  Histogram& compress_;
  Histogram& upload_;
  Counter& webhook_delivered_;
  Counter& webhook_retrying_;
  Counter& webhook_failed_;
};

}  // namespace imgproc::metrics

#endif  // IMGPROC_METRICS_SERVICE_METRICS_H_
