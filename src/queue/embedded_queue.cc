#include "queue/embedded_queue.h"

#include <algorithm>

namespace imgproc::queue {

EmbeddedQueue::EmbeddedQueue(store::ImageLeases& store, std::chrono::milliseconds lease,
                             std::chrono::milliseconds poll)
    : store_(store), lease_(lease), poll_(poll) {}

void EmbeddedQueue::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generation_;
  }
  cv_.notify_all();
}

void EmbeddedQueue::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

Result<std::vector<store::ImageTask>> EmbeddedQueue::Take(const std::string& owner, int max,
                                                          std::chrono::milliseconds wait) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + wait;
  while (true) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutdown_) return std::vector<store::ImageTask>();
      seen = generation_;
    }
    auto tasks = store_.ClaimImages(owner, max, lease_.count());
    if (!tasks.ok() || !tasks->empty()) return tasks;

    // Nothing due: sleep until notified, until the next retry or lease expiry, or the deadline.
    auto until = std::min(deadline, Clock::now() + poll_);
    auto next = store_.NextImageDue();
    if (next.ok() && next->has_value()) {
      const auto in =
          std::chrono::milliseconds(std::max<int64_t>(0, **next - RealClock().WallMillis()));
      until = std::min(until, Clock::now() + in + std::chrono::milliseconds(1));
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, until, [&] { return shutdown_ || generation_ != seen; });
    if (shutdown_) return std::vector<store::ImageTask>();
    if (Clock::now() >= deadline && generation_ == seen) return std::vector<store::ImageTask>();
  }
}

}  // namespace imgproc::queue
