#include "pipeline/cpu_stage.h"

#include <algorithm>

#include "common/thread_name.h"

namespace imgproc::pipeline {
namespace {

// Until images have been seen, assume a product photo of a few megapixels. A guess too low costs
// little: a larger image's download is held at its header until its real size fits.
constexpr uint64_t kFirstEstimate = 3'000'000;
constexpr uint64_t kSmallestEstimate = 100'000;

}  // namespace

CpuStage::CpuStage(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Loop(); });
}

CpuStage::~CpuStage() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  queued_.SignalAll();
  for (auto& t : threads_) t.join();
}

void CpuStage::Run(const std::function<void()>& job) {
  Job entry;
  entry.work = &job;
  MutexLock lock(&mu_);
  queue_.push_back(&entry);
  queued_.Signal();
  while (!entry.done) entry.finished.Wait(&mu_);
}

void CpuStage::Loop() {
  NameThisThread("imgproc-cpu");
  MutexLock lock(&mu_);
  while (true) {
    while (!stop_ && queue_.empty()) queued_.Wait(&mu_);
    if (queue_.empty()) return;  // stopping, and nothing left
    Job* job = queue_.front();
    queue_.pop_front();
    lock.Unlock();
    (*job->work)();
    lock.Lock();
    job->done = true;
    job->finished.Signal();
  }
}

PixelBudget::PixelBudget(uint64_t limit, Clock& clock)
    : limit_(std::max<uint64_t>(limit, 1)),
      clock_(clock),
      estimate_(std::min(kFirstEstimate, limit_)) {}

uint64_t PixelBudget::Reserve() {
  MutexLock lock(&mu_);
  if (resizing_.empty() && waiting_.empty() && Fits(estimate_)) {
    in_flight_ += estimate_;
    return estimate_;
  }
  Waiter self;
  waiting_.push_back(&self);
  while (self.reserved == 0) self.admitted.Wait(&mu_);
  return self.reserved;
}

bool PixelBudget::TryResize(uint64_t& reserved, uint64_t actual) {
  MutexLock lock(&mu_);
  Learn(actual);
  const uint64_t held = std::min(reserved, in_flight_);
  in_flight_ -= held;
  if (actual > reserved && !(resizing_.empty() && Fits(actual))) {
    in_flight_ += held;
    return false;
  }
  in_flight_ += actual;
  reserved = actual;
  Admit();
  return true;
}

bool PixelBudget::Resize(uint64_t& reserved, uint64_t actual, Clock::TimePoint deadline) {
  MutexLock lock(&mu_);
  in_flight_ -= std::min(reserved, in_flight_);
  reserved = 0;
  Waiter self;
  self.wanted = std::max<uint64_t>(actual, 1);
  resizing_.push_back(&self);
  Admit();
  while (self.reserved == 0) {
    if (deadline == Clock::TimePoint::max()) {
      self.admitted.Wait(&mu_);
    } else if (!clock_.WaitUntil(&self.admitted, &mu_, deadline) && self.reserved == 0 &&
               clock_.Now() >= deadline) {
      resizing_.erase(std::find(resizing_.begin(), resizing_.end(), &self));
      Admit();  // new reservations may go again
      return false;
    }
  }
  reserved = self.reserved;
  return true;
}

uint64_t PixelBudget::Correct(uint64_t reserved, uint64_t actual) {
  if (actual == 0) return reserved;
  MutexLock lock(&mu_);
  Learn(actual);
  in_flight_ = in_flight_ - std::min(reserved, in_flight_) + actual;
  Admit();
  return actual;
}

void PixelBudget::Release(uint64_t reserved) {
  MutexLock lock(&mu_);
  in_flight_ -= std::min(reserved, in_flight_);
  Admit();
}

bool PixelBudget::Fits(uint64_t pixels) const {
  return in_flight_ == 0 || in_flight_ + pixels <= limit_;
}

void PixelBudget::Learn(uint64_t actual) {
  // Mostly the recent images: requests tend to hold images of one kind.
  estimate_ = std::max(kSmallestEstimate, (3 * estimate_ + actual) / 4);
}

void PixelBudget::Admit() {
  while (true) {
    // Downloads under way, waiting to resize, come before new ones.
    std::deque<Waiter*>& queue = resizing_.empty() ? waiting_ : resizing_;
    if (queue.empty()) return;
    Waiter* next = queue.front();
    const uint64_t pixels = next->wanted != 0 ? next->wanted : estimate_;  // never 0: a floor
    if (!Fits(pixels)) return;
    queue.pop_front();
    next->reserved = pixels;
    in_flight_ += pixels;
    next->admitted.Signal();  // under mu_: `next` lives until its call has it back
  }
}

uint64_t PixelBudget::in_flight() const {
  MutexLock lock(&mu_);
  return in_flight_;
}

size_t PixelBudget::waiters() const {
  MutexLock lock(&mu_);
  return resizing_.size() + waiting_.size();
}

}  // namespace imgproc::pipeline
