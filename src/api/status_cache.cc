#include "api/status_cache.h"

#include <zlib.h>

#include <utility>

namespace imgproc::api {
namespace {

// What an entry counts against the byte budget.
size_t Footprint(const std::string& request_id, const StatusCache::Entry& entry) {
  return request_id.size() + entry.body.size() + entry.gzip_body.size();
}

}  // namespace

std::shared_ptr<const StatusCache::Entry> StatusCache::Find(const std::string& request_id) {
  MutexLock lock(&mu_);
  auto it = slots_.find(request_id);
  if (it == slots_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.position);
  return it->second.entry;
}

struct GzipStream::State {
  z_stream z{};
};

// windowBits 15 + 16: a gzip header and trailer instead of zlib's.
GzipStream::GzipStream()
    : state_(std::make_unique<State>()),
      ok_(deflateInit2(&state_->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                       Z_DEFAULT_STRATEGY) == Z_OK) {}

GzipStream::~GzipStream() {
  if (ok_) deflateEnd(&state_->z);
}

std::string GzipStream::Add(std::string_view piece, bool last) {
  if (!ok_) return {};
  z_stream& z = state_->z;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
  z.avail_in = static_cast<uInt>(piece.size());
  std::string out;
  char buffer[16 * 1024];
  int rc = Z_OK;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof buffer;
    rc = deflate(&z, last ? Z_FINISH : Z_NO_FLUSH);
    if (rc == Z_STREAM_ERROR) {
      ok_ = false;
      deflateEnd(&z);
      return {};
    }
    out.append(buffer, sizeof buffer - z.avail_out);
  } while (z.avail_out == 0 || (last && rc != Z_STREAM_END));
  return out;
}

std::string Gzip(std::string_view data) {
  GzipStream gzip;
  std::string out = gzip.Add(data, /*last=*/true);
  return gzip.ok() ? out : std::string();
}

void StatusCache::Put(const std::string& request_id, Entry entry) {
  if (entry.body.size() + request_id.size() > max_bytes_ / 4) return;  // would push out the rest
  entry.gzip_body = Gzip(entry.body);
  const size_t size = Footprint(request_id, entry);
  auto shared = std::make_shared<const Entry>(std::move(entry));
  MutexLock lock(&mu_);
  if (slots_.contains(request_id)) return;  // cached by a concurrent poll: identical
  lru_.push_front(request_id);
  slots_.emplace(request_id, Slot{std::move(shared), lru_.begin()});
  bytes_ += size;
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    auto last = slots_.find(lru_.back());
    bytes_ -= Footprint(last->first, *last->second.entry);
    slots_.erase(last);
    lru_.pop_back();
  }
}

void StatusCache::Erase(const std::string& request_id) {
  MutexLock lock(&mu_);
  auto it = slots_.find(request_id);
  if (it == slots_.end()) return;
  bytes_ -= Footprint(it->first, *it->second.entry);
  lru_.erase(it->second.position);
  slots_.erase(it);
}

}  // namespace imgproc::api
