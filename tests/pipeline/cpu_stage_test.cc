#include "pipeline/cpu_stage.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "eventually.h"
#include "fake_clock.h"

namespace imgproc::pipeline {
namespace {

TEST(CpuStageTest, RunsEveryJobOnItsOwnThreadsOnly) {
  constexpr int kStageThreads = 2;
  constexpr int kCallers = 8;
  CpuStage stage(kStageThreads);
  std::mutex mu;
  std::set<std::thread::id> stage_threads;
  int running = 0;
  int peak = 0;
  std::atomic<int> ran{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        stage.Run([&] {
          {
            std::lock_guard<std::mutex> lock(mu);
            stage_threads.insert(std::this_thread::get_id());
            peak = std::max(peak, ++running);
          }
          std::this_thread::yield();  // a chance for the other stage thread to overlap
          {
            std::lock_guard<std::mutex> lock(mu);
            --running;
          }
          ++ran;
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(ran.load(), kCallers * 5);  // Run() returned only after each job had run
  EXPECT_LE(peak, kStageThreads);
  EXPECT_LE(stage_threads.size(), static_cast<size_t>(kStageThreads));
  for (auto& t : callers) EXPECT_EQ(stage_threads.count(t.get_id()), 0u);
}

TEST(PixelBudgetTest, WaitsWhileSpentAndAdaptsItsEstimate) {
  PixelBudget budget(3'000'000);
  const uint64_t first = budget.Reserve();
  EXPECT_EQ(first, 3'000'000u);  // nothing seen yet: a photo of a few megapixels
  const uint64_t small = budget.Correct(first, 600'000);
  EXPECT_EQ(budget.in_flight(), 600'000u);
  const uint64_t second = budget.Reserve();  // estimate (3 x 3 MP + 0.6 MP) / 4 = 2.4 MP fits
  EXPECT_EQ(second, 2'400'000u);
  EXPECT_EQ(budget.in_flight(), 3'000'000u);

  std::atomic<bool> third_reserved{false};
  std::thread third([&] {
    budget.Release(budget.Reserve());
    third_reserved = true;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return budget.waiters() == 1; }));
  EXPECT_FALSE(third_reserved);  // the budget is spent
  budget.Release(second);
  EXPECT_TRUE(imgproc::testing::Eventually(third_reserved));
  third.join();
  budget.Release(small);
  EXPECT_EQ(budget.in_flight(), 0u);
}

TEST(PixelBudgetTest, AdmitsWaitingReservationsInTheirOrder) {
  PixelBudget budget(3'000'000);
  const uint64_t first = budget.Reserve();  // the whole budget
  std::atomic<int> admitted{0};
  std::atomic<int> second_place{0};
  std::atomic<int> third_place{0};
  std::thread second([&] {
    const uint64_t pixels = budget.Reserve();
    second_place = ++admitted;
    budget.Release(pixels);
  });
  // The second waits first.
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return budget.waiters() == 1; }));
  std::atomic<bool> third_done{false};
  std::thread third([&] {
    budget.Release(budget.Reserve());
    third_place = ++admitted;
    third_done = true;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return budget.waiters() == 2; }));
  EXPECT_EQ(admitted, 0);
  budget.Release(first);  // room for one of them
  EXPECT_TRUE(imgproc::testing::Eventually(third_done));
  second.join();
  third.join();
  EXPECT_EQ(second_place, 1);
  EXPECT_EQ(third_place, 2);
  EXPECT_EQ(budget.in_flight(), 0u);
}

TEST(PixelBudgetTest, LetsAnImageLargerThanTheBudgetThroughAlone) {
  PixelBudget budget(1'000'000);
  const uint64_t huge = budget.Correct(budget.Reserve(), 50'000'000);
  EXPECT_EQ(budget.in_flight(), 50'000'000u);
  std::atomic<bool> next_reserved{false};
  std::thread next([&] {
    budget.Release(budget.Reserve());
    next_reserved = true;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return budget.waiters() == 1; }));
  EXPECT_FALSE(next_reserved);
  budget.Release(huge);
  EXPECT_TRUE(imgproc::testing::Eventually(next_reserved));
  next.join();
}

TEST(PixelBudgetTest, ResizesAtOnceOnlyWhatFits) {
  PixelBudget budget(10'000'000);
  uint64_t a = budget.Reserve();  // 3 MP each
  uint64_t b = budget.Reserve();
  EXPECT_TRUE(budget.TryResize(a, 1'000'000));  // smaller: always
  EXPECT_EQ(a, 1'000'000u);
  EXPECT_EQ(budget.in_flight(), 4'000'000u);
  EXPECT_TRUE(budget.TryResize(b, 9'000'000));  // 1 + 9 fits exactly
  EXPECT_EQ(budget.in_flight(), 10'000'000u);
  uint64_t c = 1;                                // as if reserved before the others grew
  EXPECT_FALSE(budget.TryResize(c, 2'000'000));  // no room: left as it was
  EXPECT_EQ(c, 1u);
  budget.Release(a);
  budget.Release(b);
  EXPECT_EQ(budget.in_flight(), 0u);
}

TEST(PixelBudgetTest, DownloadsWaitingToResizeComeBeforeNewOnes) {
  PixelBudget budget(10'000'000);
  uint64_t held = budget.Reserve();  // 3 MP each
  uint64_t growing = budget.Reserve();
  ASSERT_TRUE(budget.TryResize(held, 5'000'000));
  ASSERT_FALSE(budget.TryResize(growing, 6'000'000));  // 5 + 6 MP would not fit
  std::atomic<int> order{0};
  std::atomic<int> resized_place{0};
  std::atomic<int> new_place{0};
  std::thread resizer([&] {
    EXPECT_TRUE(budget.Resize(growing, 6'000'000, Clock::TimePoint::max()));
    resized_place = ++order;
    budget.Release(growing);
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return budget.waiters() == 1; }));
  EXPECT_EQ(budget.in_flight(), 5'000'000u);  // it gave its 3 MP up while it waits
  std::thread newcomer([&] {
    // Its estimate (4.1 MP) would fit beside the 5 MP, but it waits its turn; and then for the
    // resized one to finish, as 6 + 4.1 MP do not fit.
    budget.Release(budget.Reserve());
    new_place = ++order;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return budget.waiters() == 2; }));
  EXPECT_EQ(order, 0);
  budget.Release(held);
  resizer.join();
  newcomer.join();
  EXPECT_EQ(resized_place, 1);
  EXPECT_EQ(new_place, 2);
  EXPECT_EQ(budget.in_flight(), 0u);
}

TEST(PixelBudgetTest, GivesUpResizingAtTheDeadlineAndLetsOthersOn) {
  imgproc::testing::FakeClock clock;
  PixelBudget budget(10'000'000, clock);
  uint64_t held = budget.Reserve();
  uint64_t growing = budget.Reserve();
  ASSERT_TRUE(budget.TryResize(held, 5'000'000));
  std::atomic<bool> gave_up{false};
  std::thread resizer([&] {
    EXPECT_FALSE(budget.Resize(growing, 6'000'000, clock.Now() + std::chrono::milliseconds(200)));
    gave_up = true;
  });
  ASSERT_TRUE(clock.AwaitWaiters(1));  // waiting for room, until its deadline
  std::atomic<bool> newcomer_in{false};
  std::thread newcomer([&] {
    budget.Release(budget.Reserve());  // 3.5 MP: fits beside the 5 once no one waits to resize
    newcomer_in = true;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return budget.waiters() == 2; }));
  clock.Advance(std::chrono::milliseconds(199));
  EXPECT_TRUE(clock.AwaitWaiters(1));  // still waiting: its deadline has not come
  EXPECT_FALSE(gave_up);
  EXPECT_FALSE(newcomer_in);
  clock.Advance(std::chrono::milliseconds(1));
  resizer.join();
  EXPECT_EQ(growing, 0u);
  EXPECT_TRUE(imgproc::testing::Eventually(newcomer_in));  // without `held` released
  newcomer.join();
  budget.Release(held);
  EXPECT_EQ(budget.in_flight(), 0u);
}

}  // namespace
}  // namespace imgproc::pipeline
