// Status bodies of finished requests, kept in memory.
//
// Once a request is finished and its webhook (if any) has settled, its status changes only if it
// is retried, yet clients keep polling it, and a large request's body takes a store query over
// every product and a serialisation of hundreds of KiB. A finished body is kept here with the
// request's round, least recently used first out beyond a byte budget; the API serves it only
// while the store's round is the same (one indexed read), so a retry through another API process
// is seen at once.
#ifndef IMGPROC_API_STATUS_CACHE_H_
#define IMGPROC_API_STATUS_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"

namespace imgproc::api {

class StatusCache {
 public:
  struct Entry {
    std::optional<std::string> owner;  // the API key digest that created the request
    int64_t round = 0;                 // the request's round (request::RequestView::round)
    std::string body;                  // the JSON status body
    std::string gzip_body;             // the same, gzip-encoded (filled in by Put)
  };

  explicit StatusCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The entry for `request_id`, or null.
  std::shared_ptr<const Entry> Find(const std::string& request_id);
  // Keeps `entry`, with its body compressed once for the clients that accept gzip.
  void Put(const std::string& request_id, Entry entry);
  // Drops the entry for `request_id` (its request was retried), if any.
  void Erase(const std::string& request_id);

 private:
  using Lru = std::list<std::string>;  // request ids, most recently used first
  struct Slot {
    std::shared_ptr<const Entry> entry;
    Lru::iterator position;
  };

  const size_t max_bytes_;
  Mutex mu_;
  Lru lru_ GUARDED_BY(mu_);
  std::unordered_map<std::string, Slot> slots_ GUARDED_BY(mu_);
  size_t bytes_ GUARDED_BY(mu_) = 0;
};

// `data` in gzip format (RFC 1952); empty if zlib fails.
std::string Gzip(std::string_view data);

// Gzip for a body sent in pieces (a streamed response): each piece in, what zlib has ready out,
// the trailer with the last. One piece's worth of memory, whatever the body's length.
class GzipStream {
 public:
  GzipStream();
  ~GzipStream();
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  // The gzip bytes that `piece` makes ready (maybe none); with `last`, the rest and the trailer.
  // Empty with !ok() if zlib fails.
  std::string Add(std::string_view piece, bool last);
  bool ok() const { return ok_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  bool ok_ = false;
};

}  // namespace imgproc::api

#endif  // IMGPROC_API_STATUS_CACHE_H_
