// The store itself as the queue: its images table, claimed with leases (with PostgreSQL, FOR
// UPDATE SKIP LOCKED), plus a condition variable so work stored by this process starts at once.
// Work stored by other processes (an API process, with PostgreSQL) is found by polling.
#ifndef IMGPROC_QUEUE_EMBEDDED_QUEUE_H_
#define IMGPROC_QUEUE_EMBEDDED_QUEUE_H_

#include "common/batcher.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "queue/queue.h"

namespace imgproc::queue {

class EmbeddedQueue final : public WorkQueue {
 public:
  // `lease` is how long a taken image stays with its worker before another may take it; `poll`
  // is the longest wait before looking at the store again when nothing was notified.
  // Waits are on `clock`.
  EmbeddedQueue(store::ImageLeases& store, std::chrono::milliseconds lease,
                std::chrono::milliseconds poll = std::chrono::hours(1), Clock& clock = RealClock());

  void Notify() override EXCLUDES(mu_);
  Result<std::vector<store::ImageTask>> Take(const std::string& owner, int max,
                                             std::chrono::milliseconds wait) override EXCLUDES(mu_);
  void Done(const store::ImageTask&) override {}  // the store's record is all there is
  void Shutdown() override EXCLUDES(mu_);

 private:
  store::ImageLeases& store_;
  const std::chrono::milliseconds lease_;
  const std::chrono::milliseconds poll_;
  Clock& clock_;
  // The claims of the workers taking at the same time, in one store transaction: one per image
  // was, after the results were batched, the largest write of a re-import (perf, 400 images).
  Batcher<store::ImageClaim, std::vector<store::ImageTask>> claims_;
  Mutex mu_;
  CondVar cv_;
  uint64_t generation_ GUARDED_BY(mu_) = 0;  // bumped by Notify(), so a wake-up is never missed
  bool shutdown_ GUARDED_BY(mu_) = false;
};

}  // namespace imgproc::queue

#endif  // IMGPROC_QUEUE_EMBEDDED_QUEUE_H_
