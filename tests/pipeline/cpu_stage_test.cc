#include "pipeline/cpu_stage.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "eventually.h"

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
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
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
  PixelBudget budget(10'000'000);
  const uint64_t first = budget.Reserve();
  EXPECT_EQ(first, 10'000'000u);  // nothing seen yet: a large photo, capped by the budget
  const uint64_t small = budget.Correct(first, 2'000'000);
  EXPECT_EQ(budget.in_flight(), 2'000'000u);
  const uint64_t second = budget.Reserve();  // estimate (3 x 10 MP + 2 MP) / 4 = 8 MP fits
  EXPECT_EQ(second, 8'000'000u);
  EXPECT_EQ(budget.in_flight(), 10'000'000u);

  std::atomic<bool> third_reserved{false};
  std::thread third([&] {
    budget.Release(budget.Reserve());
    third_reserved = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(third_reserved);  // the budget is spent
  budget.Release(second);
  EXPECT_TRUE(imgproc::testing::Eventually(third_reserved));
  third.join();
  budget.Release(small);
  EXPECT_EQ(budget.in_flight(), 0u);
}

TEST(PixelBudgetTest, AdmitsWaitingReservationsInTheirOrder) {
  PixelBudget budget(10'000'000);
  const uint64_t first = budget.Reserve();  // the whole budget
  std::atomic<int> admitted{0};
  std::atomic<int> second_place{0};
  std::atomic<int> third_place{0};
  std::thread second([&] {
    const uint64_t pixels = budget.Reserve();
    second_place = ++admitted;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    budget.Release(pixels);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // second waits first
  std::atomic<bool> third_done{false};
  std::thread third([&] {
    budget.Release(budget.Reserve());
    third_place = ++admitted;
    third_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
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
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(next_reserved);
  budget.Release(huge);
  EXPECT_TRUE(imgproc::testing::Eventually(next_reserved));
  next.join();
}

}  // namespace
}  // namespace imgproc::pipeline
