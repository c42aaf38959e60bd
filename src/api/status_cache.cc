#include "api/status_cache.h"

#include <utility>

namespace imgproc::api {

std::shared_ptr<const StatusCache::Entry> StatusCache::Find(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(request_id);
  if (it == slots_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.position);
  return it->second.entry;
}

void StatusCache::Put(const std::string& request_id, Entry entry) {
  const size_t size = entry.body.size() + request_id.size();
  if (size > max_bytes_ / 4) return;  // one huge body must not push out everything else
  auto shared = std::make_shared<const Entry>(std::move(entry));
  std::lock_guard<std::mutex> lock(mu_);
  if (slots_.contains(request_id)) return;  // cached by a concurrent poll: identical
  lru_.push_front(request_id);
  slots_.emplace(request_id, Slot{std::move(shared), lru_.begin()});
  bytes_ += size;
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    auto last = slots_.find(lru_.back());
    bytes_ -= last->second.entry->body.size() + last->first.size();
    slots_.erase(last);
    lru_.pop_back();
  }
}

}  // namespace imgproc::api
