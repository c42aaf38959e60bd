// The HTTP API as plain functions of plain values: no HTTP library types here, so every handler
// can be tested without a socket (the transport, http_connection.h, turns bytes into these).
#ifndef IMGPROC_API_HANDLERS_H_
#define IMGPROC_API_HANDLERS_H_

#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "api/multipart.h"
#include "api/status_cache.h"
#include "common/mutex.h"
#include "csv/product_csv.h"
#include "metrics/service_metrics.h"
#include "store/store.h"

namespace imgproc::api {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::map<std::string, std::string> query;
  std::map<std::string, FormFile> form;        // multipart parts by name (first one wins)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string remote_address;                  // the client's IP address, as text
  std::string form_problem;  // why a multipart body could not be read into `form`, if it could not
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Set instead of `body` for bytes kept elsewhere (a finished status held in memory): the
  // transport sends them from there, without a copy per response.
  std::shared_ptr<const std::string> shared_body;
  // Set instead of `body` for a body made as it is sent (a big request's output CSV): called
  // until it answers an empty piece, the end. The transport sends the pieces as they come
  // (chunked, and gzip-encoded as they go when the client accepts it), so memory does not grow
  // with the body. An error can no longer change the status: the connection is closed, and the
  // client sees the body cut short.
  std::function<Result<std::string>()> stream;
  std::map<std::string, std::string> headers;
  // The transport may answer a request for one byte range of it with a 206 (a stored image);
  // other responses are always sent whole.
  bool ranges = false;

  std::string_view content() const { return shared_body ? *shared_body : body; }
};

struct ApiOptions {
  csv::Limits csv_limits;
  // The file a /media/ path names (what follows "/media/"), or nullopt when it names none; unset
  // when the storage serves no files here (then /media/ is 404).
  std::function<std::optional<std::filesystem::path>(std::string_view relative)> media;
  // KeyDigest() of every accepted API key. Empty: no authentication (the zero-setup default).
  std::set<std::string> api_key_digests;
  // Unfinished images one client (API key, or address without keys) may have queued; 0: no limit.
  int64_t max_client_images = 500'000;
  // Served at /metrics and updated for uploads; null: /metrics is empty and nothing is counted.
  metrics::ServiceMetrics* metrics = nullptr;
  // Checks that the broker (Redis) answers, for /readyz; empty when the store is the queue.
  std::function<Status()> broker_ready;
  // Checks that the storage answers (an S3 bucket), for /readyz; empty when there is nothing to
  // ask (local disk, ImgBB).
  std::function<Status()> storage_ready;
  // The presets an upload may name (PRESETS).
  request::Presets presets = request::DefaultPresets();
};

class Api {
 public:
  // `on_created` runs after a request is stored (wakes the workers).
  // `writer` stores the uploads, `reader` reads them back (status, lists, the output CSV).
  Api(store::RequestWriter& writer, store::RequestReader& reader, ApiOptions options,
      std::function<void()> on_created);

  Response Handle(const Request& request);

  // Callers of a status that wait on a build another caller has under way (see BuildStatusOnce).
  int sharing_builds() EXCLUDES(building_mu_) {
    MutexLock lock(&building_mu_);
    return sharing_builds_;
  }

  // Once a request's head is in, before its body is read: the response to send without reading
  // the body (an unknown route, a wrong method, a missing or unknown API key), or nullopt to read
  // it and call Handle(). Anyone can send a body; only a caller the API accepts gets it read.
  std::optional<Response> Admit(const Request& head);

  // The transport refused an upload before it reached Handle() (body over the limit: 413).
  void CountTransportRejection(const std::string& path, int status);

 private:
  // The caller's identity for the per-request access check: the digest of its API key, nullopt
  // when API keys are off, or an error response (401) when they are on and the key is not valid.
  Result<std::optional<std::string>> Caller(const Request& request) const;
  // The 401 for a caller without a valid key (counted as a refused upload when it was one).
  Response Unauthorized(const imgproc::Status& why, bool upload);
  Response Upload(const Request& request, const std::optional<std::string>& owner);
  // The request named by an id from a URL (NotFound unless it is a known UUID), and the response
  // for a failure to load it.
  // Another key's request is NotFound too, so ids leak nothing.
  Result<request::RequestView> LoadRequest(const std::string& request_id,
                                           const std::optional<std::string>& caller,
                                           const request::ProductRange& range = {});
  Response LoadError(const std::string& request_id, const imgproc::Status& status);
  // A finished request's status comes from memory, gzip-encoded when `accepts_gzip`.
  Response RequestStatus(const std::string& request_id, const std::optional<std::string>& caller,
                         bool accepts_gzip);
  // GET /status/<id>/?offset=N&limit=M: the status with that slice of the products (file order)
  // and their count ("page"), read from the store for each call (a page is small; the whole
  // status is what polls of a big request share and keep).
  Response StatusPage(const std::string& request_id, const Request& request,
                      const std::optional<std::string>& caller);
  // A status read from the store, for any caller: `owner` is checked by each of them.
  struct BuiltStatus {
    bool loaded = false;               // the request exists (else `response` is the error)
    std::optional<std::string> owner;  // its API key digest
    Response response;
    // The body gzip-encoded, by the first of the callers sharing it that accepts gzip.
    mutable std::once_flag gzip_once;
    mutable std::string gzip_body;
  };
  void BuildStatus(const std::string& request_id, BuiltStatus& built);
  // BuildStatus, once for all the callers asking at the same time: one arriving while a build is
  // under way waits for it and shares its result instead of starting its own. 50 clients polling
  // a 1,000-product request otherwise read and serialise it 50 times over (2 ms of CPU each).
  std::shared_ptr<const BuiltStatus> BuildStatusOnce(const std::string& request_id);
  // POST /api/p/requests/<id>/cancel: cancels a running request (store::CancelRequest) and
  // answers with its status; again on a cancelled one, the same (idempotent); 409 once completed.
  Response Cancel(const std::string& request_id, const std::optional<std::string>& caller);
  // POST /api/p/requests/<id>/retry: queues a finished request's failed images again
  // (store::RetryRequest) and answers with its status; 409 while it runs or when none failed.
  Response Retry(const std::string& request_id, const std::optional<std::string>& caller);
  Response OutputCsv(const std::string& request_id, bool with_errors,
                     const std::optional<std::string>& caller);
  Response Media(const std::string& relative, const std::optional<std::string>& caller);
  Response ListRequests(const Request& request, const std::optional<std::string>& caller);
  Response Health();
  Response Ready();
  Response Metrics() const;
  void Rejected(metrics::RejectReason reason) const;

  store::RequestWriter& writer_;
  store::RequestReader& reader_;
  const ApiOptions options_;
  std::function<void()> on_created_;
  StatusCache finished_statuses_{64 * 1024 * 1024};
  Mutex building_mu_;
  // The status builds under way, by request id.
  std::unordered_map<std::string, std::shared_future<std::shared_ptr<const BuiltStatus>>> building_
      GUARDED_BY(building_mu_);
  int sharing_builds_ GUARDED_BY(building_mu_) = 0;  // callers waiting on another's build
};

// A JSON error response: {"error": message}.
Response JsonError(int status, const std::string& message);

// Reads a streamed body (Response::stream) to its end into `body`, for a client that takes no
// chunks (HTTP/1.0) and for tests; a body that is not streamed is left as it is.
Status ReadWholeBody(Response& response);

// The stored identity of an API key: hex SHA-256, so the store never holds keys.
std::string KeyDigest(const std::string& key);

// True when the request's Accept-Encoding lists gzip (or *) without q=0.
bool AcceptsGzip(const Request& request);

}  // namespace imgproc::api

#endif  // IMGPROC_API_HANDLERS_H_
