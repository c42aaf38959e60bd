// The pipeline's CPU stage and the bound on what waits for it.
//
// I/O workers download and upload (their threads mostly wait on the network); they hand the
// CPU-bound compression to CpuStage, whose fixed set of threads (one per core by default) does
// all of it: exactly that many images are decoded at once, and their large buffers are reused
// within those threads' allocator arenas instead of spreading over every worker's.
#ifndef IMGPROC_PIPELINE_CPU_STAGE_H_
#define IMGPROC_PIPELINE_CPU_STAGE_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"

namespace imgproc::pipeline {

// A fixed pool of threads running jobs in the order they were handed over.
class CpuStage {
 public:
  explicit CpuStage(int threads);
  ~CpuStage();  // runs what is queued, then joins

  CpuStage(const CpuStage&) = delete;
  CpuStage& operator=(const CpuStage&) = delete;

  // Runs `job` on one of the stage's threads and returns once it has run.
  void Run(const std::function<void()>& job) EXCLUDES(mu_);

 private:
  // Lives in the frame of the Run() call that waits for it.
  struct Job {
    const std::function<void()>* work = nullptr;
    bool done = false;  // under the stage's mu_
    // Its own, so that a finished job wakes only the worker waiting for it, not every worker
    // with a job in the queue (dozens of them when downloads are quick).
    CondVar finished;
  };
  void Loop() EXCLUDES(mu_);

  Mutex mu_;
  CondVar queued_;
  std::deque<Job*> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Bounds the pixels of images between the start of their download and the end of their
// compression, so memory stays flat whatever the size of a request or its images.
//
// Before a download the size is unknown: a worker reserves an estimate (a running average of
// recent images) and replaces it by the real pixel count once the image's header is in, while
// the rest of the download is held back until that fits (TryResize, then Resize). A reservation
// waits while the budget is spent, except when nothing at all is in flight, so an image larger
// than the whole budget still goes through, alone. Waiting reservations are admitted first come,
// first served, those waiting to resize before new ones, and only the ones admitted are woken.
class PixelBudget {
 public:
  // Deadlines are on `clock`.
  explicit PixelBudget(uint64_t limit, Clock& clock = RealClock());

  // Blocks until the estimate fits; returns the pixels reserved.
  uint64_t Reserve() EXCLUDES(mu_);
  // Replaces `reserved` by an image's pixel count `actual` if that is no more, or fits now and
  // no one is waiting to resize; never waits. True when replaced.
  bool TryResize(uint64_t& reserved, uint64_t actual) EXCLUDES(mu_);
  // The same, but waits for room until `deadline` (Clock::TimePoint::max(): no limit), having
  // given `reserved` up meanwhile. False, with `reserved` 0, when the deadline came first.
  bool Resize(uint64_t& reserved, uint64_t actual, Clock::TimePoint deadline) EXCLUDES(mu_);
  // Replaces a reservation by the image's pixel count now, room or not (0 if unknown keeps the
  // estimate); returns the new reservation.
  uint64_t Correct(uint64_t reserved, uint64_t actual) EXCLUDES(mu_);
  void Release(uint64_t reserved) EXCLUDES(mu_);

  uint64_t in_flight() const EXCLUDES(mu_);
  size_t waiters() const EXCLUDES(mu_);  // Reserve() and Resize() calls waiting for room

 private:
  // A Reserve() or Resize() call waiting for room, in its own frame.
  struct Waiter {
    uint64_t wanted = 0;    // 0: the estimate at admission
    uint64_t reserved = 0;  // set when admitted (under the budget's mu_)
    CondVar admitted;
  };
  bool Fits(uint64_t pixels) const REQUIRES(mu_);
  void Learn(uint64_t actual) REQUIRES(mu_);  // the estimate follows the images seen
  void Admit() REQUIRES(mu_);                 // admits waiters in order while they fit

  const uint64_t limit_;
  Clock& clock_;
  mutable Mutex mu_;
  std::deque<Waiter*> resizing_ GUARDED_BY(mu_);  // served first: their downloads have started
  std::deque<Waiter*> waiting_ GUARDED_BY(mu_);
  uint64_t in_flight_ GUARDED_BY(mu_) = 0;
  uint64_t estimate_ GUARDED_BY(mu_);
};

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_CPU_STAGE_H_
