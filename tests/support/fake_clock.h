// A Clock that moves only when the test says so: waits for a time return when Advance() reaches
// it, so a test decides an outcome by moving time, never by sleeping. AwaitWaiters() tells when
// the code under test has come to wait on the clock (is idle until time moves).
#ifndef IMGPROC_TESTS_SUPPORT_FAKE_CLOCK_H_
#define IMGPROC_TESTS_SUPPORT_FAKE_CLOCK_H_

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <set>

#include "common/clock.h"
#include "common/mutex.h"

namespace imgproc::testing {

class FakeClock final : public Clock {
 public:
  // Starts at a fixed wall time (2026-01-01T00:00:00Z) and an arbitrary monotonic time.
  FakeClock();

  TimePoint Now() const override EXCLUDES(mu_);
  int64_t WallMillis() const override EXCLUDES(mu_);
  bool WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) override REQUIRES(mu);
  void SleepUntil(TimePoint deadline) override EXCLUDES(mu_);

  // Moves time on, waking every wait on this clock (each re-checks its deadline and condition).
  void Advance(std::chrono::milliseconds by) EXCLUDES(mu_);
  // True once at least `count` waits (WaitUntil or SleepUntil) are blocked on this clock, for a
  // time it has not reached (a wait whose time came is on its way out, not waiting); false after
  // `timeout` of real time.
  bool AwaitWaiters(size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(10))
      EXCLUDES(mu_);
  size_t waiters() const EXCLUDES(mu_);

 private:
  // A WaitUntil in progress: Advance() signals `cv` under `mu` while `active`, so that a wait
  // about to block cannot miss it, and never after the wait has returned (its CondVar may be gone).
  struct Waiting {
    Mutex guard;
    bool active GUARDED_BY(guard) = true;
    CondVar* cv;
    Mutex* mu;
    TimePoint deadline;
  };
  size_t Pending() const REQUIRES(mu_);  // the waits for a time not reached

  mutable Mutex mu_;
  CondVar changed_;  // time moved, or the waits changed
  TimePoint now_ GUARDED_BY(mu_);
  int64_t wall_at_start_;
  TimePoint start_;
  std::list<std::shared_ptr<Waiting>> waiting_ GUARDED_BY(mu_);
  std::multiset<TimePoint> sleeping_ GUARDED_BY(mu_);  // SleepUntil deadlines
};

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_FAKE_CLOCK_H_
