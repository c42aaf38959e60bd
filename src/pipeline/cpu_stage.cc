#include "pipeline/cpu_stage.h"

#include <algorithm>

#include "common/thread_name.h"

namespace imgproc::pipeline {
namespace {

// Until images have been seen, assume a large product photo: the first burst of downloads is
// then small rather than dozens of 12 MP images at once.
constexpr uint64_t kFirstEstimate = 12'000'000;
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
  if (waiting_.empty() && Fits()) {
    in_flight_ += estimate_;
    return estimate_;
  }
  Waiter self;
  waiting_.push_back(&self);
  self.admitted.wait(lock, [&] { return self.reserved != 0; });
  return self.reserved;
}

uint64_t PixelBudget::Correct(uint64_t reserved, uint64_t actual) {
  if (actual == 0) return reserved;
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_ = in_flight_ - reserved + actual;
  // Mostly the recent images: requests tend to hold images of one kind.
  estimate_ = std::max(kSmallestEstimate, (3 * estimate_ + actual) / 4);
  Admit();
  return actual;
}

void PixelBudget::Release(uint64_t reserved) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_ -= std::min(reserved, in_flight_);
  Admit();
}

bool PixelBudget::Fits() const { return in_flight_ == 0 || in_flight_ + estimate_ <= limit_; }

void PixelBudget::Admit() {
  while (!waiting_.empty() && Fits()) {
    Waiter* next = waiting_.front();
    waiting_.pop_front();
    next->reserved = estimate_;  // never 0: the estimate has a floor
    in_flight_ += estimate_;
    next->admitted.notify_one();  // under mu_: `next` lives until its Reserve() has it back
  }
}

uint64_t PixelBudget::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

}  // namespace imgproc::pipeline
