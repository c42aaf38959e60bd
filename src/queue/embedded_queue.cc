#include "queue/embedded_queue.h"

#include <algorithm>

namespace imgproc::queue {

EmbeddedQueue::EmbeddedQueue(store::ImageLeases& store, std::chrono::milliseconds lease,
                             std::chrono::milliseconds poll, Clock& clock)
    : store_(store),
      lease_(lease),
      poll_(poll),
      clock_(clock),
      claims_([this](const std::vector<store::ImageClaim>& claims) {
        return store_.ClaimImagesFor(claims, lease_.count());
      }) {}

void EmbeddedQueue::Notify() {
  {
    MutexLock lock(&mu_);
    ++generation_;
  }
  cv_.SignalAll();
}

void EmbeddedQueue::Shutdown() {
  {
    MutexLock lock(&mu_);
    shutdown_ = true;
  }
  cv_.SignalAll();
}

Result<std::vector<store::ImageTask>> EmbeddedQueue::Take(const std::string& owner, int max,
                                                          std::chrono::milliseconds wait) {
  const auto deadline = clock_.Now() + wait;
  while (true) {
    uint64_t seen;
    {
      MutexLock lock(&mu_);
      if (shutdown_) return std::vector<store::ImageTask>();
      seen = generation_;
    }
    auto tasks = claims_.Call({owner, max});
    if (!tasks.ok() || !tasks->empty()) return tasks;

    // Nothing due: sleep until notified, until the next retry or lease expiry, or the deadline.
    auto until = std::min(deadline, clock_.Now() + poll_);
    auto next = store_.NextImageDue();
    if (next.ok() && next->has_value()) {
      const auto in = std::chrono::milliseconds(std::max<int64_t>(0, **next - clock_.WallMillis()));
      until = std::min(until, clock_.Now() + in + std::chrono::milliseconds(1));
    }
    MutexLock lock(&mu_);
    while (!shutdown_ && generation_ == seen && clock_.Now() < until) {
      (void)clock_.WaitUntil(&cv_, &mu_, until);
    }
    if (shutdown_) return std::vector<store::ImageTask>();
    if (clock_.Now() >= deadline && generation_ == seen) return std::vector<store::ImageTask>();
  }
}

}  // namespace imgproc::queue
