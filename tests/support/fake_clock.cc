#include "fake_clock.h"

#include <vector>

namespace imgproc::testing {

FakeClock::FakeClock()
    : now_(TimePoint() + std::chrono::hours(24)),
      wall_at_start_(1'767'225'600'000),  // 2026-01-01T00:00:00Z
      start_(now_) {}

Clock::TimePoint FakeClock::Now() const {
  MutexLock lock(&mu_);
  return now_;
}

int64_t FakeClock::WallMillis() const {
  MutexLock lock(&mu_);
  return wall_at_start_ +
         std::chrono::duration_cast<std::chrono::milliseconds>(now_ - start_).count();
}

bool FakeClock::WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) {
  auto waiting = std::make_shared<Waiting>();
  waiting->cv = cv;
  waiting->mu = mu;
  waiting->deadline = deadline;
  {
    MutexLock lock(&mu_);
    if (now_ >= deadline) return false;
    waiting_.push_back(waiting);
    changed_.SignalAll();
  }
  cv->Wait(mu);  // woken by the owner of `cv`, or by Advance()
  // Off the list, and inactive, before returning: `cv` may not outlive this call. `mu` is let go
  // meanwhile, so that Advance(), which takes the guard before `mu`, cannot deadlock with it.
  mu->Unlock();
  {
    MutexLock lock(&waiting->guard);
    waiting->active = false;
  }
  bool before_deadline;
  {
    MutexLock lock(&mu_);
    waiting_.remove(waiting);
    before_deadline = now_ < deadline;
    changed_.SignalAll();
  }
  mu->Lock();
  return before_deadline;
}

void FakeClock::SleepUntil(TimePoint deadline) {
  MutexLock lock(&mu_);
  const auto it = sleeping_.insert(deadline);
  changed_.SignalAll();
  while (now_ < deadline) changed_.Wait(&mu_);
  sleeping_.erase(it);
  changed_.SignalAll();
}

size_t FakeClock::Pending() const {
  size_t n = 0;
  for (const auto& w : waiting_) n += w->deadline > now_;
  for (const TimePoint& deadline : sleeping_) n += deadline > now_;
  return n;
}

void FakeClock::Advance(std::chrono::milliseconds by) {
  std::vector<std::shared_ptr<Waiting>> waiting;
  {
    MutexLock lock(&mu_);
    now_ += by;
    waiting.assign(waiting_.begin(), waiting_.end());
    changed_.SignalAll();  // the sleepers
  }
  for (const auto& w : waiting) {
    MutexLock guard(&w->guard);
    if (!w->active) continue;
    // Taking `mu` means its waiter is inside cv->Wait (it held `mu` from its check to there).
    MutexLock lock(w->mu);
    w->cv->SignalAll();
  }
}

bool FakeClock::AwaitWaiters(size_t count, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (Pending() < count) {
    if (!changed_.WaitUntil(&mu_, deadline) && std::chrono::steady_clock::now() >= deadline) {
      return Pending() >= count;
    }
  }
  return true;
}

size_t FakeClock::waiters() const {
  MutexLock lock(&mu_);
  return Pending();
}

}  // namespace imgproc::testing
