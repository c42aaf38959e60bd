// Time, as a seam (LevelDB's Env does the same): everything that waits for a time or records one
// asks a Clock, so that tests drive a fake one (tests/support/fake_clock.h) instead of sleeping.
#ifndef IMGPROC_COMMON_CLOCK_H_
#define IMGPROC_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

#include "common/mutex.h"

namespace imgproc {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;

  // Monotonic time, for deadlines and durations.
  virtual TimePoint Now() const = 0;
  // Milliseconds since the Unix epoch, for the times kept in the store.
  virtual int64_t WallMillis() const = 0;
  // Waits on `cv` (with `mu` held) until it is signalled or this clock reaches `deadline`; false
  // when the deadline came. May return early: callers re-check their condition.
  virtual bool WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) REQUIRES(mu) = 0;
  // Blocks the caller until this clock reaches `deadline`.
  virtual void SleepUntil(TimePoint deadline) = 0;

  void SleepFor(std::chrono::milliseconds duration) { SleepUntil(Now() + duration); }
};

// The system's clocks.
Clock& RealClock();

}  // namespace imgproc

#endif  // IMGPROC_COMMON_CLOCK_H_
