// A request's life in one place: the values every layer shares (what the store keeps, what the
// API, the output CSV and the webhook show) and the rules that decide what happens to a request
// and its images, as pure functions. The stores keep the SQL and the transactions; what a row
// becomes is decided here, once for every store.
#ifndef IMGPROC_REQUEST_REQUEST_H_
#define IMGPROC_REQUEST_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "request/outputs.h"

namespace imgproc::request {

// Milliseconds since the Unix epoch; every time kept in the store is one of these.
using Millis = int64_t;

// ---- Ids ----------------------------------------------------------------------------------------

// A new random (version 4) UUID in its canonical lower-case form: a request's id.
std::string NewRequestId();
// True when `id` is a canonical UUID (8-4-4-4-12 hex digits).
bool IsUuid(std::string_view id);
// The SHA-256 of `bytes` in lower-case hex: an API key's digest, and the image cache's key for
// some content.
std::string Sha256Hex(std::string_view bytes);

// ---- Entries ------------------------------------------------------------------------------------

// Whether a URL entry is an image to process: it contains "http" in any case (the original
// design's rule, "HTTP://..." included). Any other entry passes through to the output unchanged.
bool IsImageEntry(std::string_view entry);

// The entries of a comma-joined URL list, empty ones included: the slots of an output list.
std::vector<std::string> SplitEntries(std::string_view joined);
// The stored and shown form of a URL list: the entries joined with ",".
std::string JoinEntries(const std::vector<std::string>& entries);

// ---- A new request ------------------------------------------------------------------------------

// The original design's three, and "cancelled" (POST /api/p/requests/<id>/cancel).
enum class RequestStatus { kPending, kProcessing, kCompleted, kCancelled };
const char* ToString(RequestStatus status);
RequestStatus ParseRequestStatus(std::string_view text);  // the inverse of ToString
// Completed or cancelled: nothing more happens to its images, and its status no longer changes
// (save its webhook's delivery).
bool IsFinished(RequestStatus status);

// One product as the CSV gave it.
struct NewProduct {
  int64_t serial_no = 0;
  std::string name;
  std::vector<std::string> entries;  // in input order
};

// An image slot of a request: a product (its position in the file) and an entry's index.
struct SlotRef {
  size_t product = 0;
  int index = 0;
  bool operator==(const SlotRef& other) const {
    return product == other.product && index == other.index;
  }
};

// What is stored for a product of a new request.
struct ProductPlan {
  std::string input_urls;          // the entries joined
  std::vector<int> image_indices;  // the entries that are images, in order
  // One per image_indices entry: the request's first slot with the same URL, when this one is
  // not it. Such a slot is never downloaded: it waits for that one and takes its outcome (its
  // output URL, or its error), so a URL named many times in a request is fetched, compressed and
  // stored once.
  std::vector<std::optional<SlotRef>> same_as;
  std::optional<std::string> output_urls;  // final at once when it has no image
};

// What is stored for a new request: its products, and whether it is completed at once (no
// image at all), in which case its webhook, if any, is due now.
struct RequestPlan {
  std::vector<ProductPlan> products;
  int64_t images_total = 0;
  RequestStatus status = RequestStatus::kPending;
  std::optional<Millis> completed_at;
  std::optional<Millis> webhook_due;  // set when completed with a webhook to send
};
RequestPlan PlanRequest(const std::vector<NewProduct>& products, bool has_webhook, Millis now);

// The rule of MAX_QUEUED_IMAGES_PER_CLIENT: a client whose earlier requests still have `queued`
// unfinished images may add `adding` more while the sum stays within `limit` (0: no limit).
// False means the request is refused with ClientQueueMessage's words.
bool FitsClientQueue(int64_t queued, int64_t adding, int64_t limit);
std::string ClientQueueMessage(int64_t queued, int64_t adding, int64_t limit);

// ---- An image's outcome -------------------------------------------------------------------------

// kWaiting: a slot whose URL an earlier slot of its request also names (ProductPlan::same_as);
// it is never taken by a worker and becomes final with that slot's outcome.
enum class ImageState { kQueued, kLeased, kDone, kFailed, kWaiting };
const char* ToString(ImageState state);
ImageState ParseImageState(std::string_view text);  // the inverse of ToString

// What a worker learnt about an image.
struct ImageOutcome {
  bool ok = false;
  std::string output_url;  // when ok
  std::string error;       // when !ok: shown to the user in "Image Errors"
  // When !ok and the failure is transient: try again at this time instead of failing the image.
  std::optional<Millis> retry_at;
  // When ok: bytes downloaded and bytes of the stored output (shown as the saving).
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
  // When ok: the output is one stored before (the image cache), not compressed or stored again.
  bool reused = false;
  // When ok: the request's variants of the image (OutputPlan::variants), in the plan's order.
  std::vector<VariantOutput> variants = {};
};

// What recording an outcome makes of the image's row: queued again for a retry (due at
// `due_at`, its last error kept), or final (done with its output, or failed with its error).
struct ImageRecord {
  ImageState state = ImageState::kQueued;
  std::optional<Millis> due_at;  // a retry's
  std::optional<std::string> output_url;
  std::optional<std::string> error;
  std::optional<int64_t> input_bytes;
  std::optional<int64_t> output_bytes;
  bool reused = false;
  std::optional<std::string> variants =
      std::nullopt;  // EncodeVariantOutputs, when done with variants
  bool final() const { return state == ImageState::kDone || state == ImageState::kFailed; }
};
ImageRecord RecordOf(const ImageOutcome& outcome);

// A final image of a product: its output, or none when it failed.
struct FinalImage {
  int index = 0;
  std::optional<std::string> output_url;
};
// The output list of a product whose images are all final: one entry per input entry, in input
// order; an image's output URL, empty for a failed one, and every other entry unchanged.
std::string ComposeOutputs(std::string_view input_urls, const std::vector<FinalImage>& images);

// What final images add to their request's counters. An outcome made final `finals` slots: the
// worker's image and the slots that waited on it (ProductPlan::same_as), which reuse its output
// when it is done. Summed over the outcomes recorded in one transaction
// (ImageLeases::RecordImages).
struct ImageTally {
  int64_t done = 0;
  int64_t failed = 0;
  int64_t reused = 0;  // of `done`: outputs not made for this slot
  ImageTally& operator+=(const ImageTally& other);
};
ImageTally TallyOf(const ImageOutcome& outcome, int64_t finals);

// What one more final image makes of its request: completed when it was the last, and then its
// webhook (if it has one) is due now.
struct Completion {
  bool completed = false;
  std::optional<Millis> webhook_due;
};
Completion AfterFinalImage(int64_t final_images, int64_t images_total, bool has_webhook,
                           Millis now);

// ---- Fair share between running requests -------------------------------------------------------

// A running request as the next claim sees it: the images it has in flight (leased, the lease
// running) and its first due images, in the order they are taken (earliest due, then oldest).
struct DueImages {
  int64_t in_flight = 0;
  std::vector<int64_t> due;  // image ids
};

// The images the next workers take, `max` at most, in the order picked: each next one from the
// request with the fewest images in flight, those picked so far included, and of two with as
// many the one listed first (callers list requests oldest first). So the workers are shared
// equally between the running requests (a 10-image request sent beside a 50,000-image one gets
// half of them at its first claim), a request alone gets them all, and within a request images
// go first due first.
std::vector<int64_t> FairPick(const std::vector<DueImages>& requests, int max);

// ---- Cancelling a request ----------------------------------------------------------------------

// The image error of every image a cancel left undone (its slot stays empty).
inline constexpr std::string_view kCancelledError = "cancelled";

// What a cancel does to a request in `status`: a pending or processing one is cancelled (no new
// image starts; those in flight are dropped at their next stage; every undone image fails with
// kCancelledError; the request is finished and its webhook, if any, is due once); a cancelled one
// is left as it is (a cancel is idempotent); a completed one cannot be cancelled (409).
enum class CancelVerdict { kCancel, kAlreadyCancelled, kAlreadyCompleted };
CancelVerdict DecideCancel(RequestStatus status);

// ---- Retrying a request's failed images ---------------------------------------------------------

// What a retry does to a request in `status` with `images_failed` failed images: a finished one
// with failed images has them queued again with fresh attempts (the slots waiting on them too),
// their products' outputs cleared, and the request back to `processing` for one more round: it
// completes again and its webhook, if any, is sent again (WebhookId). A request still running
// cannot be retried (409), nor one without a failed image (409: there is nothing to redo).
enum class RetryVerdict { kRetry, kStillRunning, kNothingFailed };
RetryVerdict DecideRetry(RequestStatus status, int64_t images_failed);

// ---- Webhooks -----------------------------------------------------------------------------------

// A webhook's delivery as the store keeps it: "pending" (due, never attempted), "sending"
// (leased to a sender), "retrying" (attempted, due again at its next time), "delivered" and
// "failed" (settled).
inline constexpr std::string_view kWebhookPending = "pending";
inline constexpr std::string_view kWebhookSending = "sending";
inline constexpr std::string_view kWebhookRetrying = "retrying";
inline constexpr std::string_view kWebhookDelivered = "delivered";
inline constexpr std::string_view kWebhookFailed = "failed";

// The webhook-id of a request's delivery in round `round` (0 for its first run, one more for each
// retry): the same for every attempt of a round, so receivers can de-duplicate, and new for each
// retry, whose delivery is a new message.
std::string WebhookId(std::string_view request_id, int64_t round);

// The stored state after an attempt: delivered, due again (`retry`), or failed for good.
std::string_view WebhookStateAfterAttempt(bool delivered, bool retry);

// A delivery as the status shows it: "sending" is not shown (it is "pending" until a first
// attempt, "retrying" after).
struct WebhookView {
  std::string state;  // pending | retrying | delivered | failed
  int attempts = 0;
  std::optional<int> last_status;
  bool settled() const { return state == kWebhookDelivered || state == kWebhookFailed; }
};
WebhookView ViewOfWebhook(std::string_view stored_state, int attempts,
                          std::optional<int> last_status);

// The delays between a webhook's attempts: after the first failure wait schedule[0], after the
// second schedule[1], and so on; when it runs out the delivery has failed.
using RetrySchedule = std::vector<std::chrono::milliseconds>;

// How one delivery attempt went: an HTTP answer (`http_status`), or no answer (`transient` says
// whether the failure may pass: a timeout, a refused connection; not a refused destination).
struct DeliveryAttempt {
  int attempt = 1;  // this one's number, from 1
  std::optional<int> http_status;
  bool transient = true;
  std::chrono::milliseconds retry_after{0};  // what the receiver asked for (Retry-After)
};

// What to record after an attempt.
struct DeliveryDecision {
  bool delivered = false;
  std::optional<Millis> retry_at;  // not delivered and tried again then; none: failed for good
};

// A 2xx delivers; 410 Gone, a permanent failure or a spent schedule fail for good; anything else
// is tried again after the schedule's delay for this attempt plus up to a tenth of it (`jitter`,
// from 0 to 1, scales that tenth: retries of many requests spread out), or after the receiver's
// Retry-After when that is longer.
DeliveryDecision DecideDelivery(const DeliveryAttempt& attempt, const RetrySchedule& schedule,
                                Millis now, double jitter);

// ---- What the status shows ----------------------------------------------------------------------

struct ImageError {
  int index = 0;  // the entry's position in its product's URL list
  std::string url;
  std::string error;
  int attempts = 0;
};

// The sizes of one done image.
struct ImageSize {
  int index = 0;
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
  bool reused = false;  // an output stored before: nothing compressed or stored for it this time
  std::vector<VariantOutput> variants = {};  // its variants, when its request has some
};

struct ProductView {
  int64_t serial_no = 0;
  std::string product_name;
  std::string input_urls;                  // comma-joined, as stored
  std::optional<std::string> output_urls;  // null until every image of the product is final
  std::vector<ImageError> image_errors;    // failed for good
  std::vector<ImageError> image_retries;   // failed for now, to be tried again (error = last one)
  std::vector<ImageSize> image_sizes;      // done images with known sizes, by index
};

// Which products of a request a read returns, in file order: from `offset` (0-based), at most
// `limit` of them (all the rest when unset).
struct ProductRange {
  int64_t offset = 0;
  std::optional<int64_t> limit;
};

struct RequestView {
  std::string request_id;
  RequestStatus status = RequestStatus::kPending;
  Millis created_at = 0;
  std::optional<std::string> webhook_url;
  std::optional<std::string> owner;  // who may see it, when API keys are on (a key's digest)
  OutputPlan outputs;                // what its images become
  int images_total = 0;
  int images_done = 0;                // finished successfully
  int images_failed = 0;              // finished with an error
  int images_reused = 0;              // done with an output stored before (ImageOutcome::reused)
  int64_t round = 0;                  // 0, and one more for each retry (WebhookId)
  std::vector<ProductView> products;  // file order: those of the ProductRange read
  int64_t products_total = 0;         // every product of the request
  std::optional<WebhookView> webhook;
};

// One line of the list of recent requests.
struct RequestSummary {
  std::string request_id;
  RequestStatus status = RequestStatus::kPending;
  Millis created_at = 0;
  int images_total = 0;
  int images_done = 0;
  int images_failed = 0;
  int images_reused = 0;
};

// An image row as the status reads it: the stores select a request's images that carry an error
// or sizes, ordered by product and index, and hand them to AttachImages.
struct ImageRow {
  int64_t product_id = 0;
  int index = 0;
  std::string url;  // empty for a done image (not shown)
  ImageState state = ImageState::kQueued;
  std::optional<std::string> error;
  int attempts = 0;
  std::optional<int64_t> input_bytes;
  std::optional<int64_t> output_bytes;
  bool reused = false;
  std::optional<std::string> variants = std::nullopt;  // EncodeVariantOutputs
};
// Adds to `products` (whose store ids are `product_ids`, in the same order) what `rows` (in
// product order) show: a failed image's error, a queued one's last error (to be retried), a done
// image's sizes.
void AttachImages(const std::vector<int64_t>& product_ids, const std::vector<ImageRow>& rows,
                  std::vector<ProductView>& products);

// ---- Reusing earlier outputs (the image cache)
// ---------------------------------------------------

// What the image cache knows of a URL, for one output variant: the validators and the SHA-256 of
// the bytes it last answered, and the output stored for those bytes.
struct CachedSource {
  std::string sha256;  // hex, of the input bytes
  std::optional<std::string> etag;
  std::optional<std::string> last_modified;
  // The entry's age: the older of the URL's last answer (200 or 304) and its output's storing.
  Millis known_since = 0;
  std::string output_url;
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
  std::vector<VariantOutput> variants =
      {};  // the output's variants (the cache key's plan has them)
};

// The oldest output of the image cache an image may reuse at `now`: one made within `max_age`
// (IMAGE_CACHE_MAX_AGE), or, for a request that asked for refresh (made at `refresh_since`), one
// made since (by another slot of it, or a request after it). Anything older is made anew.
Millis ReusableSince(Millis now, Millis max_age, std::optional<Millis> refresh_since);

// The headers of a conditional GET for a cached source: If-None-Match for its ETag,
// If-Modified-Since for its Last-Modified (a server that has both uses the ETag, RFC 9110 13.2.2).
std::vector<std::string> ConditionalHeaders(const CachedSource& source);

// Whether a response may be remembered and its output reused later: not when its Cache-Control
// says no-store (then the image is processed as without a cache, now and next time).
bool MayCache(std::string_view cache_control);

// The cache's row for some content (the SHA-256 of an input) in one output variant: stored (an
// output URL), or being stored by a worker (`owner`, until `claimed_until`).
struct ContentRow {
  std::optional<std::string> output_url;
  int64_t output_bytes = 0;
  Millis stored_at = 0;
  std::optional<std::string> owner;
  Millis claimed_until = 0;
};

// What a worker holding content does: reuse the stored output (stored at `stored_since` or later:
// within IMAGE_CACHE_MAX_AGE, or since its request was made when that request asked for
// `refresh`); store it itself (nobody has, or the output is older, or the worker storing it let
// its claim run out, or it is this worker's own claim); or wait for the worker storing it now, so
// that two workers never store two objects for the same content.
enum class ContentVerdict { kReuse, kStore, kWait };
ContentVerdict DecideContent(const std::optional<ContentRow>& row, std::string_view owner,
                             Millis now, Millis stored_since);

}  // namespace imgproc::request

#endif  // IMGPROC_REQUEST_REQUEST_H_
