// The durable record of requests, products and their images: the source of truth for status,
// output URLs and the work still to do. SQLite is the embedded default; other engines (PostgreSQL)
// implement the same interface.
#ifndef IMGPROC_STORE_STORE_H_
#define IMGPROC_STORE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "csv/product_csv.h"

namespace imgproc::store {

// Milliseconds since the Unix epoch; every time in the store is one of these.
using Millis = int64_t;
Millis NowMillis();

enum class RequestStatus { kPending, kProcessing, kCompleted };
const char* ToString(RequestStatus status);
RequestStatus ParseRequestStatus(const std::string& s);  // the inverse of ToString

// Whether a URL entry is an image to process: it contains "http" in any case (the original
// design's rule, "HTTP://..." included); any other entry passes through to the output unchanged.
bool IsImageEntry(std::string_view entry);

// The entries of a comma-joined URL list, empty ones included (the inverse of csv::JoinUrls):
// the slots a product's output list fills in.
std::vector<std::string> SplitUrlEntries(const std::string& joined);

// One image of one product that must be downloaded, compressed and stored.
struct ImageTask {
  int64_t image_id = 0;
  std::string request_id;
  int64_t serial_no = 0;
  int index = 0;  // position of the entry in the product's URL list
  std::string url;
  int attempts = 0;       // attempts started so far, this one included
  std::string queue_ref;  // the broker's handle for this delivery (a Redis stream entry), if any
};

// What a worker learnt about an image.
struct ImageOutcome {
  bool ok = false;
  std::string output_url;  // when ok
  std::string error;       // when !ok: shown to the user in "Image Errors"
  // When !ok and the failure is transient: try again at this time instead of failing the image.
  std::optional<Millis> retry_at;
  // When ok: bytes downloaded and bytes of the stored JPEG (shown as the saving).
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
};

struct ImageError {
  int index = 0;
  std::string url;
  std::string error;
  int attempts = 0;
};

// The sizes of one finished (done) image of a product.
struct ImageSize {
  int index = 0;  // position of the entry in the product's URL list
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
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

struct WebhookState {
  std::string state;  // "pending", "retrying", "delivered", "failed"
  int attempts = 0;
  std::optional<int> last_status;
};

struct RequestView {
  std::string request_id;
  RequestStatus status = RequestStatus::kPending;
  Millis created_at = 0;
  std::optional<std::string> webhook_url;
  std::optional<std::string> owner;  // who may see it, when API keys are on (a key's digest)
  int images_total = 0;
  int images_done = 0;                // finished successfully
  int images_failed = 0;              // finished with an error
  std::vector<ProductView> products;  // file order
  std::optional<WebhookState> webhook;
};

// One line of the list of recent requests.
struct RequestSummary {
  std::string request_id;
  RequestStatus status = RequestStatus::kPending;
  Millis created_at = 0;
  int images_total = 0;
  int images_done = 0;
  int images_failed = 0;
};

// A webhook delivery that is due.
struct WebhookJob {
  std::string request_id;
  std::string url;
  int attempts = 0;  // attempts made before this one
};

// A validated request to store.
struct NewRequest {
  std::string request_id;
  std::optional<std::string> webhook_url;
  std::optional<std::string> owner;  // the API key's digest, when API keys are on
  // Who is charged for its images: the API key's digest, or the client's address without keys.
  std::string client;
  // Refused (kResourceExhausted) when the client's unfinished images would pass this; 0: no limit.
  int64_t max_client_images = 0;
  std::vector<csv::ProductRow> rows;
};

// The rule of MAX_QUEUED_IMAGES_PER_CLIENT: a client whose earlier requests still have `queued`
// unfinished images may add a request of `adding` images while the sum stays within `limit`
// (0: no limit); kResourceExhausted, saying so, otherwise.
Status CheckClientImages(int64_t queued, int64_t adding, int64_t limit);

class Store {
 public:
  virtual ~Store() = default;

  // Stores a validated request with its products and one task per image entry (IsImageEntry). A
  // request with no such entry is completed at once. kResourceExhausted, storing nothing, when
  // its client's unfinished images would pass `max_client_images`.
  virtual Status CreateRequest(const NewRequest& request) = 0;

  // NotFound when the id is unknown.
  virtual Result<RequestView> GetRequest(const std::string& request_id) = 0;

  // Leases up to `max` images that are due (queued and past their retry time, or whose lease
  // expired) to `owner` until now + lease_ms, counting an attempt for each.
  virtual Result<std::vector<ImageTask>> ClaimImages(const std::string& owner, int max,
                                                     Millis lease_ms) = 0;

  // Like ClaimImages, for the given images only (those a broker handed out). Images that are not
  // due (finished, waiting for a retry, or leased to a live worker) are left out of the result.
  virtual Result<std::vector<ImageTask>> ClaimImagesById(const std::vector<int64_t>& image_ids,
                                                         const std::string& owner,
                                                         Millis lease_ms) = 0;

  // Extends to now + lease_ms the leases of `image_ids` still held by an owner whose name starts
  // with `owner_prefix` (one worker process): the images it is working on, so that a slow one is
  // not taken over while its worker is alive. Only the images named: a claim whose answer was lost
  // (the connection broke after its commit) is held by nobody who knows it, and must run out.
  virtual Result<int> ExtendLeases(const std::string& owner_prefix,
                                   const std::vector<int64_t>& image_ids, Millis lease_ms) = 0;

  // Records a worker's outcome. Ignored (returns OK with false) unless `owner` still holds the
  // lease, so a slow worker cannot overwrite a result. When the last image of the request becomes
  // final, the request becomes completed in the same transaction and its webhook is scheduled.
  virtual Result<bool> RecordImage(int64_t image_id, const std::string& owner,
                                   const ImageOutcome& outcome) = 0;

  // Returns every lease to the queue: only for the single-process embedded mode at start-up, where
  // whatever a previous run had leased died with it. Returns how many were released.
  virtual Result<int> ReleaseLeases() = 0;

  // Marks up to `max` due images as handed to a broker now and returns them, oldest first: those
  // not handed over since they became queued, or (with `enqueued_before`) last handed over before
  // that time. Concurrent callers get disjoint images.
  virtual Result<std::vector<int64_t>> TakeImagesToEnqueue(std::optional<Millis> enqueued_before,
                                                           int max) = 0;

  // The earliest time a queued image becomes due, if any image is queued.
  virtual Result<std::optional<Millis>> NextImageDue() = 0;

  // Leases due webhook deliveries (pending, or retrying and past their next time) for lease_ms.
  virtual Result<std::vector<WebhookJob>> ClaimWebhooks(int max, Millis lease_ms) = 0;

  // Records a delivery attempt: delivered, or to be retried at `retry_at`, or failed for good.
  virtual Status RecordWebhook(const std::string& request_id, bool delivered,
                               std::optional<int> http_status, std::optional<Millis> retry_at) = 0;

  // The newest requests first (created_at descending, then request_id), at most `limit`. With an
  // `owner`, only that owner's requests; without one, every request.
  virtual Result<std::vector<RequestSummary>> ListRequests(const std::optional<std::string>& owner,
                                                           int limit) = 0;

  // How many images are queued or leased (not yet final): the queue depth, from the counters of
  // the unfinished requests (not a count of the images, which grows with the queue). Also the
  // readiness probe's query: it never waits behind the workers' writes.
  virtual Result<int64_t> CountUnfinishedImages() = 0;
};

// Opens the store named by a DATABASE_URL ("sqlite:///abs/path.db", "sqlite://rel/path.db" or
// "postgresql://user:password@host:port/db"), creating and migrating the schema.
Result<std::unique_ptr<Store>> OpenStore(const std::string& database_url);

}  // namespace imgproc::store

#endif  // IMGPROC_STORE_STORE_H_
