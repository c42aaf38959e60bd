// The work queue hands images to workers. The store stays the source of truth (an image is done
// only when the store says so); a queue decides who works on what next and wakes idle workers.
#ifndef IMGPROC_QUEUE_QUEUE_H_
#define IMGPROC_QUEUE_QUEUE_H_

#include <chrono>
#include <string>
#include <vector>

#include "common/result.h"
#include "store/store.h"

namespace imgproc::queue {

class WorkQueue {
 public:
  virtual ~WorkQueue() = default;

  // Tells waiting workers that new work was stored (a new request, a retry that became due).
  virtual void Notify() = 0;

  // Leases up to `max` images to `owner`, waiting up to `wait` for one to become available.
  // Returns an empty list when nothing came in time or Shutdown() was called.
  virtual Result<std::vector<store::ImageTask>> Take(const std::string& owner, int max,
                                                     std::chrono::milliseconds wait) = 0;

  // Tells the queue that the outcome of a taken image is recorded in the store.
  virtual void Done(const store::ImageTask& task) = 0;

  // Wakes every waiting Take() and makes later ones return at once.
  virtual void Shutdown() = 0;
};

}  // namespace imgproc::queue

#endif  // IMGPROC_QUEUE_QUEUE_H_
