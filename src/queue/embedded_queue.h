// The embedded queue: the images table of the store itself, polled with leases, plus a
// condition variable so a new request starts at once instead of at the next poll.
#ifndef IMGPROC_QUEUE_EMBEDDED_QUEUE_H_
#define IMGPROC_QUEUE_EMBEDDED_QUEUE_H_

#include <condition_variable>
#include <mutex>

#include "queue/queue.h"

namespace imgproc::queue {

class EmbeddedQueue final : public WorkQueue {
 public:
  // `lease` is how long a taken image stays with its worker before another may take it.
  EmbeddedQueue(store::Store& store, std::chrono::milliseconds lease);

  void Notify() override;
  Result<std::vector<store::ImageTask>> Take(const std::string& owner, int max,
                                             std::chrono::milliseconds wait) override;
  void Shutdown() override;

 private:
  store::Store& store_;
  const std::chrono::milliseconds lease_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;  // bumped by Notify(), so a wake-up is never missed
  bool shutdown_ = false;
};

}  // namespace imgproc::queue

#endif  // IMGPROC_QUEUE_EMBEDDED_QUEUE_H_
