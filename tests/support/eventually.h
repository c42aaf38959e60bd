// Waiting in a test for what another thread does.
#ifndef IMGPROC_TESTS_SUPPORT_EVENTUALLY_H_
#define IMGPROC_TESTS_SUPPORT_EVENTUALLY_H_

#include <atomic>
#include <chrono>
#include <thread>

namespace imgproc::testing {

// Polls `flag` for up to 5 s; true once it is set.
inline bool Eventually(const std::atomic<bool>& flag) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!flag && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return flag;
}

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_EVENTUALLY_H_
