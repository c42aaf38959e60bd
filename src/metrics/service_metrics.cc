#include "metrics/service_metrics.h"

namespace imgproc::metrics {
namespace {

constexpr char kUploadsRejected[] = "imgproc_uploads_rejected_total";
constexpr char kUploadsRejectedHelp[] = "Uploads refused, by reason (4xx answers)";
constexpr char kImages[] = "imgproc_images_total";
constexpr char kImagesHelp[] =
    "Image outcomes recorded: done, failed for good, or retried after a transient failure";
constexpr char kReused[] = "imgproc_images_reused_total";
constexpr char kReusedHelp[] =
    "Images whose stored output was reused (image cache): after a 304 Not Modified, or for bytes "
    "already stored";
constexpr char kHeld[] = "imgproc_downloads_held_total";
constexpr char kHeldHelp[] =
    "Downloads held at the image's header until its pixels fitted the budget, by outcome";
constexpr char kStage[] = "imgproc_stage_duration_seconds";
constexpr char kStageHelp[] = "Time spent per image in each pipeline stage";
constexpr char kWebhooks[] = "imgproc_webhook_deliveries_total";
constexpr char kWebhooksHelp[] = "Webhook delivery attempts, by outcome";

}  // namespace

ServiceMetrics::ServiceMetrics()
    : uploads_accepted_(
          registry_.GetCounter("imgproc_uploads_accepted_total", "Uploads accepted (202)")),
      requests_cancelled_(registry_.GetCounter("imgproc_requests_cancelled_total",
                                               "Requests cancelled (POST .../cancel)")),
      requests_retried_(registry_.GetCounter("imgproc_requests_retried_total",
                                             "Requests retried (POST .../retry)")),
      rejected_no_file_(
          registry_.GetCounter(kUploadsRejected, kUploadsRejectedHelp, {{"reason", "no_file"}})),
      rejected_invalid_csv_(registry_.GetCounter(kUploadsRejected, kUploadsRejectedHelp,
                                                 {{"reason", "invalid_csv"}})),
      rejected_invalid_webhook_(registry_.GetCounter(kUploadsRejected, kUploadsRejectedHelp,
                                                     {{"reason", "invalid_webhook_url"}})),
      rejected_invalid_outputs_(registry_.GetCounter(kUploadsRejected, kUploadsRejectedHelp,
                                                     {{"reason", "invalid_outputs"}})),
      rejected_too_large_(
          registry_.GetCounter(kUploadsRejected, kUploadsRejectedHelp, {{"reason", "too_large"}})),
      rejected_unauthorized_(registry_.GetCounter(kUploadsRejected, kUploadsRejectedHelp,
                                                  {{"reason", "unauthorized"}})),
      rejected_too_many_queued_(registry_.GetCounter(kUploadsRejected, kUploadsRejectedHelp,
                                                     {{"reason", "too_many_queued"}})),
      images_done_(registry_.GetCounter(kImages, kImagesHelp, {{"outcome", "done"}})),
      images_failed_(registry_.GetCounter(kImages, kImagesHelp, {{"outcome", "failed"}})),
      images_retried_(registry_.GetCounter(kImages, kImagesHelp, {{"outcome", "retried"}})),
      reused_304_(registry_.GetCounter(kReused, kReusedHelp, {{"how", "not_modified"}})),
      reused_content_(registry_.GetCounter(kReused, kReusedHelp, {{"how", "same_content"}})),
      held_resumed_(registry_.GetCounter(kHeld, kHeldHelp, {{"outcome", "resumed"}})),
      held_abandoned_(registry_.GetCounter(kHeld, kHeldHelp, {{"outcome", "abandoned"}})),
      bytes_in_(registry_.GetCounter("imgproc_image_bytes_in_total",
                                     "Bytes of images downloaded (successful downloads)")),
      bytes_out_(registry_.GetCounter("imgproc_image_bytes_out_total",
                                      "Bytes of compressed JPEGs stored")),
      download_(
          registry_.GetHistogram(kStage, kStageHelp, {{"stage", "download"}}, DurationBuckets())),
      compress_(
          registry_.GetHistogram(kStage, kStageHelp, {{"stage", "compress"}}, DurationBuckets())),
      upload_(registry_.GetHistogram(kStage, kStageHelp, {{"stage", "upload"}}, DurationBuckets())),
      webhook_delivered_(
          registry_.GetCounter(kWebhooks, kWebhooksHelp, {{"outcome", "delivered"}})),
      webhook_retrying_(registry_.GetCounter(kWebhooks, kWebhooksHelp, {{"outcome", "retrying"}})),
      webhook_failed_(registry_.GetCounter(kWebhooks, kWebhooksHelp, {{"outcome", "failed"}})) {}

void ServiceMetrics::SetQueueDepthSource(std::function<std::optional<double>()> read) {
  registry_.AddGauge("imgproc_queue_depth", "Images queued or being worked on (from the store)",
                     std::move(read));
}

void ServiceMetrics::UploadRejected(RejectReason reason) {
  switch (reason) {
    case RejectReason::kNoFile:
      return rejected_no_file_.Inc();
    case RejectReason::kInvalidCsv:
      return rejected_invalid_csv_.Inc();
    case RejectReason::kInvalidWebhook:
      return rejected_invalid_webhook_.Inc();
    case RejectReason::kInvalidOutputs:
      return rejected_invalid_outputs_.Inc();
    case RejectReason::kTooLarge:
      return rejected_too_large_.Inc();
    case RejectReason::kUnauthorized:
      return rejected_unauthorized_.Inc();
    case RejectReason::kTooManyQueued:
      return rejected_too_many_queued_.Inc();
  }
}

void ServiceMetrics::WebhookDelivery(DeliveryOutcome outcome) {
  switch (outcome) {
    case DeliveryOutcome::kDelivered:
      return webhook_delivered_.Inc();
    case DeliveryOutcome::kRetrying:
      return webhook_retrying_.Inc();
    case DeliveryOutcome::kFailed:
      return webhook_failed_.Inc();
  }
}

}  // namespace imgproc::metrics
