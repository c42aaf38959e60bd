// The durable record of requests, products and their images: the source of truth for status,
// output URLs and the work still to do. SQLite is the embedded default; PostgreSQL is shared by
// several processes. What a request's rows become is decided by the request model
// (request/request.h); a store keeps the SQL and the transactions.
//
// The interface is split by role, and each caller sees only its part: the API writes new requests
// (RequestWriter) and reads them (RequestReader), workers and brokers take and record images
// (ImageLeases), the webhook sender takes and records deliveries (WebhookDeliveries).
#ifndef IMGPROC_STORE_STORE_H_
#define IMGPROC_STORE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "request/request.h"

namespace imgproc::store {

using request::Millis;

// A validated request to store.
struct NewRequest {
  std::string request_id;
  std::optional<std::string> webhook_url;
  std::optional<std::string> owner;  // the API key's digest, when API keys are on
  // Who is charged for its images: the API key's digest, or the client's address without keys.
  std::string client;
  // Refused (kResourceExhausted) when the client's unfinished images would pass this; 0: no limit.
  int64_t max_client_images = 0;
  std::vector<request::NewProduct> products;
  // The image cache is not read for its images (refresh=true): each is fetched and compressed
  // anew, and the result replaces what the cache had.
  bool refresh = false;
  // What its images become (request::EncodePlan; "" for the seed's JPEG at quality 50).
  std::string outputs{};
};

class RequestWriter {
 public:
  virtual ~RequestWriter() = default;

  // Stores a request with its products and one row per image entry (request::PlanRequest). A
  // request without an image is completed at once. kResourceExhausted, storing nothing, when its
  // client's unfinished images would pass `max_client_images` (request::FitsClientQueue).
  [[nodiscard]] virtual Status CreateRequest(const NewRequest& request) = 0;

  // Cancels a request as request::DecideCancel says, in one transaction: every image not yet
  // final fails with request::kCancelledError (a leased one's lease is dropped, so its worker's
  // outcome is ignored), the products still waiting get their outputs (request::ComposeOutputs),
  // and the request is `cancelled`, its webhook (if any) due now. kAlreadyCancelled and
  // kAlreadyCompleted change nothing. NotFound for an unknown id, or one `owner` does not own
  // (when given).
  [[nodiscard]] virtual Result<request::CancelVerdict> CancelRequest(
      const std::string& request_id, const std::optional<std::string>& owner) = 0;

  // Retries a request as request::DecideRetry says, in one transaction: its failed images are
  // queued again with no attempt counted (those waiting on another slot wait again), their
  // products' outputs are cleared, and the request is `processing` in its next round, its webhook
  // (if any) to be sent again when it completes. The other verdicts change nothing. NotFound as
  // for CancelRequest.
  [[nodiscard]] virtual Result<request::RetryVerdict> RetryRequest(
      const std::string& request_id, const std::optional<std::string>& owner) = 0;
};

class RequestReader {
 public:
  virtual ~RequestReader() = default;

  // The request as its status shows it, with the products of `range` (and the count of all of
  // them); NotFound when the id is unknown. One consistent snapshot, read beside the pipeline's
  // writes (never waiting for them).
  [[nodiscard]] virtual Result<request::RequestView> GetRequestPage(
      const std::string& request_id, const request::ProductRange& range) = 0;

  // GetRequestPage with every product.
  [[nodiscard]] Result<request::RequestView> GetRequest(const std::string& request_id) {
    return GetRequestPage(request_id, {});
  }

  // The request's round (0, one more per retry): whether a finished status kept in memory is still
  // its status. NotFound when the id is unknown.
  [[nodiscard]] virtual Result<int64_t> RequestRound(const std::string& request_id) = 0;

  // The newest requests first (created_at descending, then request_id), at most `limit`. With an
  // `owner`, only that owner's requests; without one, every request.
  [[nodiscard]] virtual Result<std::vector<request::RequestSummary>> ListRequests(
      const std::optional<std::string>& owner, int limit) = 0;

  // How many images are queued or leased (not yet final): the queue depth, from the counters of
  // the unfinished requests (not a count of the images, which grows with the queue). Also the
  // readiness probe's query: it never waits behind the workers' writes.
  [[nodiscard]] virtual Result<int64_t> CountUnfinishedImages() = 0;
};

// One image of one product that must be downloaded, compressed and stored.
struct ImageTask {
  int64_t image_id = 0;
  std::string request_id;
  int64_t serial_no = 0;
  int index = 0;  // position of the entry in the product's URL list
  std::string url;
  int attempts = 0;       // attempts started so far, this one included
  std::string queue_ref;  // the broker's handle for this delivery (a Redis stream entry), if any
  // When its request asked for refresh: the request's creation time (outputs stored before it are
  // not reused).
  std::optional<Millis> refresh_since;
  std::string outputs{};  // its request's output plan (request::EncodePlan)
};

// Who claims images, and how many at most (ImageLeases::ClaimImagesFor).
struct ImageClaim {
  std::string owner;  // the leases' holder
  int max = 1;
};

// A worker's outcome for the image it holds, to record (ImageLeases::RecordImages).
struct ImageResult {
  int64_t image_id = 0;
  std::string owner;  // the lease's holder
  request::ImageOutcome outcome;
};

// What RecordImages did with one ImageResult.
struct Recorded {
  bool taken = false;        // recorded: its owner still held the lease
  bool webhook_due = false;  // its request completed in this transaction, with a webhook to send
  bool operator==(const Recorded&) const = default;
};

class ImageLeases {
 public:
  virtual ~ImageLeases() = default;

  // Leases images that are due (queued and past their retry time, or whose lease expired) until
  // now + lease_ms, counting an attempt for each, in one transaction for several claimants: up
  // to `max` to each of `claims` in turn, the first the earliest due. Answers each claim's images.
  [[nodiscard]] virtual Result<std::vector<std::vector<ImageTask>>> ClaimImagesFor(
      const std::vector<ImageClaim>& claims, Millis lease_ms) = 0;

  // ClaimImagesFor one owner.
  [[nodiscard]] Result<std::vector<ImageTask>> ClaimImages(const std::string& owner, int max,
                                                           Millis lease_ms) {
    auto claimed = ClaimImagesFor({{owner, max}}, lease_ms);
    if (!claimed.ok()) return claimed.status();
    return std::move(claimed->front());
  }

  // Like ClaimImages, for the given images only (those a broker handed out). Images that are not
  // due (finished, waiting for a retry, or leased to a live worker) are left out of the result.
  [[nodiscard]] virtual Result<std::vector<ImageTask>> ClaimImagesById(
      const std::vector<int64_t>& image_ids, const std::string& owner, Millis lease_ms) = 0;

  // Extends to now + lease_ms the leases of `image_ids` still held by an owner whose name starts
  // with `owner_prefix` (one worker process): the images it is working on, so that a slow one is
  // not taken over while its worker is alive. Only the images named: a claim whose answer was lost
  // (the connection broke after its commit) is held by nobody who knows it, and must run out.
  [[nodiscard]] virtual Result<int> ExtendLeases(const std::string& owner_prefix,
                                                 const std::vector<int64_t>& image_ids,
                                                 Millis lease_ms) = 0;

  // Records workers' outcomes (request::RecordOf), all in one transaction, and answers for each
  // whether it was taken, and whether it completed its request with a webhook due (so that only
  // those wake the webhook sender). One is ignored (not taken) unless its `owner` still holds the
  // lease, so a slow worker cannot overwrite a result. When the last image of a product is final
  // its outputs are composed (request::ComposeOutputs), and when the last of the request is, the
  // request completes in the same transaction (request::AfterFinalImage). The transaction locks
  // products, then requests, each in key order, so that concurrent batches never deadlock.
  [[nodiscard]] virtual Result<std::vector<Recorded>> RecordImages(
      const std::vector<ImageResult>& results) = 0;

  // RecordImages for one outcome: whether it was taken.
  [[nodiscard]] Result<bool> RecordImage(int64_t image_id, const std::string& owner,
                                         const request::ImageOutcome& outcome) {
    auto recorded = RecordImages({{image_id, owner, outcome}});
    if (!recorded.ok()) return recorded.status();
    return recorded->front().taken;
  }

  // For each of `leases` (image id and owner), whether the owner still holds it: false once it is
  // lost (taken over after it expired, or dropped by a cancel). A worker asks before compressing
  // and before storing, so a cancelled image stops at its next stage instead of running to the
  // end; a process asks for all of its images in flight in one read (WorkerPool::LeaseLost).
  [[nodiscard]] virtual Result<std::vector<bool>> HoldLeases(
      const std::vector<std::pair<int64_t, std::string>>& leases) = 0;

  // Returns every lease to the queue, images and webhooks: only for the single-process embedded
  // mode at start-up, where whatever a previous run had leased died with it. Returns how many
  // images were released.
  [[nodiscard]] virtual Result<int> ReleaseLeases() = 0;

  // Marks up to `max` due images as handed to a broker now and returns them, oldest first: those
  // not handed over since they became queued, or (with `enqueued_before`) last handed over before
  // that time. Concurrent callers get disjoint images.
  [[nodiscard]] virtual Result<std::vector<int64_t>> TakeImagesToEnqueue(
      std::optional<Millis> enqueued_before, int max) = 0;

  // The earliest time a queued image becomes due, if any image is queued.
  [[nodiscard]] virtual Result<std::optional<Millis>> NextImageDue() = 0;
};

// A webhook delivery that is due.
struct WebhookJob {
  std::string request_id;
  std::string url;
  int attempts = 0;   // attempts made before this one
  int64_t round = 0;  // the request's round (request::WebhookId)
};

class WebhookDeliveries {
 public:
  virtual ~WebhookDeliveries() = default;

  // Leases due webhook deliveries (pending, or retrying and past their next time, or leased and
  // past their lease) for lease_ms.
  [[nodiscard]] virtual Result<std::vector<WebhookJob>> ClaimWebhooks(int max, Millis lease_ms) = 0;

  // Records a delivery attempt of the request's round `round` (WebhookJob::round): delivered, or
  // to be tried again at `retry_at`, or failed for good (request::WebhookStateAfterAttempt). An
  // attempt of an earlier round (the request was retried meanwhile) changes nothing.
  [[nodiscard]] virtual Status RecordWebhook(const std::string& request_id, int64_t round,
                                             bool delivered, std::optional<int> http_status,
                                             std::optional<Millis> retry_at) = 0;
};

// What the cache has on some content, and whether this worker is to store it.
struct ContentClaim {
  request::ContentVerdict verdict = request::ContentVerdict::kStore;
  std::string output_url;  // kReuse: the stored output
  int64_t output_bytes = 0;
  std::vector<request::VariantOutput> variants = {};  // kReuse: the output's variants
};

// The image cache, shared by every worker of every process on the store: what a URL answered
// (its validators and the SHA-256 of its bytes), and the output stored for some content in an
// output variant (the output settings, e.g. "jpeg-q50"), so that the same image is neither
// fetched, compressed nor stored twice. Its rows are small (a URL, a hash, a few times) and are
// dropped when older than the cache's maximum age (PurgeCache).
class ImageCache {
 public:
  virtual ~ImageCache() = default;

  // What the cache knows of `url` in `variant`, with the output of its content; nothing when the
  // URL is unknown or its content has no stored output.
  [[nodiscard]] virtual Result<std::optional<request::CachedSource>> FindSource(
      const std::string& url, const std::string& variant) = 0;

  // Remembers what `url` answered now (a 200 with these bytes and validators, or a 304).
  [[nodiscard]] virtual Status RememberSource(const std::string& url, const std::string& variant,
                                              const std::string& sha256,
                                              const std::optional<std::string>& etag,
                                              const std::optional<std::string>& last_modified,
                                              int64_t input_bytes) = 0;

  // Decides (request::DecideContent), in one transaction, what `owner` does with content
  // `sha256`: reuse its output, store it (the content is then claimed by `owner` until
  // now + lease_ms), or wait for another worker storing it.
  [[nodiscard]] virtual Result<ContentClaim> ClaimContent(const std::string& sha256,
                                                          const std::string& variant,
                                                          const std::string& owner,
                                                          Millis stored_since, Millis lease_ms) = 0;

  // Records the output `owner` stored for content it claimed, and drops the claim.
  [[nodiscard]] virtual Status StoreContent(
      const std::string& sha256, const std::string& variant, const std::string& owner,
      const std::string& output_url, int64_t output_bytes,
      const std::vector<request::VariantOutput>& variants) = 0;

  // Drops `owner`'s claim on some content without an output (its compression or upload failed),
  // so another worker with the same bytes need not wait for the claim to run out.
  [[nodiscard]] virtual Status ReleaseContent(const std::string& sha256, const std::string& variant,
                                              const std::string& owner) = 0;

  // Forgets the output of some content (it is no longer in the storage): stored again next time.
  [[nodiscard]] virtual Status ForgetContent(const std::string& sha256,
                                             const std::string& variant) = 0;

  // Drops what the cache learnt before `before` (its maximum age). Returns the rows dropped.
  [[nodiscard]] virtual Result<int64_t> PurgeCache(Millis before) = 0;
};

// Every role, for the process that wires them (and the tests).
class Store : public RequestWriter,
              public RequestReader,
              public ImageLeases,
              public WebhookDeliveries,
              public ImageCache {};

// Opens the store named by a DATABASE_URL ("sqlite:///abs/path.db", "sqlite://rel/path.db" or
// "postgresql://user:password@host:port/db"), creating and migrating the schema. Its times
// (creation, leases, retries) come from `clock`.
[[nodiscard]] Result<std::unique_ptr<Store>> OpenStore(const std::string& database_url,
                                                       Clock& clock = RealClock());

}  // namespace imgproc::store

#endif  // IMGPROC_STORE_STORE_H_
