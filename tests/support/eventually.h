// Waiting in a test for what another thread does, when there is no event to wait on: the
// condition is polled, and the wait ends as soon as it holds (the deadline only bounds a failure).
#ifndef IMGPROC_TESTS_SUPPORT_EVENTUALLY_H_
#define IMGPROC_TESTS_SUPPORT_EVENTUALLY_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

namespace imgproc::testing {

// True once `done()` holds; false if it still does not after `timeout`.
inline bool Eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// True once `flag` is set (within 5 s).
inline bool Eventually(const std::atomic<bool>& flag) {
  return Eventually([&] { return flag.load(); });
}

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_EVENTUALLY_H_
