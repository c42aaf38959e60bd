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
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  queued_.notify_all();
  for (auto& t : threads_) t.join();
}

void CpuStage::Run(const std::function<void()>& job) {
  Job entry;
  entry.work = &job;
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&entry);
  queued_.notify_one();
  entry.finished.wait(lock, [&] { return entry.done; });
}

void CpuStage::Loop() {
  NameThisThread("imgproc-cpu");
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    queued_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    Job* job = queue_.front();
    queue_.pop_front();
    lock.unlock();
    (*job->work)();
    lock.lock();
    job->done = true;
    job->finished.notify_one();
  }
}

PixelBudget::PixelBudget(uint64_t limit)
    : limit_(std::max<uint64_t>(limit, 1)), estimate_(std::min(kFirstEstimate, limit_)) {}

uint64_t PixelBudget::Reserve() {
  std::unique_lock<std::mutex> lock(mu_);
  if (resizing_.empty() && waiting_.empty() && Fits(estimate_)) {
    in_flight_ += estimate_;
    return estimate_;
  }
  Waiter self;
  waiting_.push_back(&self);
  self.admitted.wait(lock, [&] { return self.reserved != 0; });
  return self.reserved;
}

bool PixelBudget::TryResize(uint64_t& reserved, uint64_t actual) {
  std::lock_guard<std::mutex> lock(mu_);
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

bool PixelBudget::Resize(uint64_t& reserved, uint64_t actual, Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  in_flight_ -= std::min(reserved, in_flight_);
  reserved = 0;
  Waiter self;
  self.wanted = std::max<uint64_t>(actual, 1);
  resizing_.push_back(&self);
  Admit();
  const auto admitted = [&] { return self.reserved != 0; };
  if (deadline == Clock::time_point::max()) {
    self.admitted.wait(lock, admitted);
  } else if (!self.admitted.wait_until(lock, deadline, admitted)) {
    resizing_.erase(std::find(resizing_.begin(), resizing_.end(), &self));
    Admit();  // new reservations may go again
    return false;
  }
  reserved = self.reserved;
  return true;
}

uint64_t PixelBudget::Correct(uint64_t reserved, uint64_t actual) {
  if (actual == 0) return reserved;
  std::lock_guard<std::mutex> lock(mu_);
  Learn(actual);
  in_flight_ = in_flight_ - std::min(reserved, in_flight_) + actual;
  Admit();
  return actual;
}

void PixelBudget::Release(uint64_t reserved) {
  std::lock_guard<std::mutex> lock(mu_);
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
    next->admitted.notify_one();  // under mu_: `next` lives until its call has it back
  }
}

uint64_t PixelBudget::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

}  // namespace imgproc::pipeline
