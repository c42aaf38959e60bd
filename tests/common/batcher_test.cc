#include "common/batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace imgproc {
namespace {

// A batch function that doubles its inputs and records the batches it was given; the first batch
// waits until the test opens it.
class Doubler {
 public:
  Result<std::vector<int>> operator()(const std::vector<int>& in) {
    std::unique_lock<std::mutex> lock(mu_);
    batches_.push_back(in);
    opened_.wait(lock, [&] { return open_; });
    if (fail_) return Transient("store away");
    std::vector<int> out;
    for (int v : in) out.push_back(2 * v);
    if (short_) out.pop_back();
    return out;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    opened_.notify_all();
  }
  std::vector<std::vector<int>> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  bool fail_ = false;
  bool short_ = false;

 private:
  std::mutex mu_;
  std::condition_variable opened_;
  bool open_ = false;
  std::vector<std::vector<int>> batches_;
};

TEST(Batcher, ALoneCallIsABatchOfOne) {
  Doubler doubler;
  doubler.Open();
  Batcher<int, int> batcher([&](const std::vector<int>& in) { return doubler(in); });
  EXPECT_EQ(*batcher.Call(21), 42);
  EXPECT_EQ(doubler.batches(), (std::vector<std::vector<int>>{{21}}));
}

TEST(Batcher, CallsMadeWhileABatchRunsAreTheNextBatchAndEachGetsItsAnswer) {
  Doubler doubler;
  Batcher<int, int> batcher([&](const std::vector<int>& in) { return doubler(in); });
  std::vector<int> answers(4, 0);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { answers[0] = *batcher.Call(1); });
  while (doubler.batches().empty()) std::this_thread::yield();  // the first batch runs, held
  for (int i = 1; i < 4; ++i) {
    threads.emplace_back([&, i] { answers[i] = *batcher.Call(10 * i); });
  }
  while (batcher.InLine() < 4) std::this_thread::yield();  // three wait behind it
  doubler.Open();
  for (auto& t : threads) t.join();
  EXPECT_EQ(answers, (std::vector<int>{2, 20, 40, 60}));
  auto batches = doubler.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0], std::vector<int>{1});
  std::sort(batches[1].begin(), batches[1].end());
  EXPECT_EQ(batches[1], (std::vector<int>{10, 20, 30}));
  EXPECT_EQ(batcher.InLine(), 0u);
}

TEST(Batcher, AFailedBatchFailsEveryCallInIt) {
  Doubler doubler;
  doubler.fail_ = true;
  doubler.Open();
  Batcher<int, int> batcher([&](const std::vector<int>& in) { return doubler(in); });
  auto answer = batcher.Call(1);
  ASSERT_FALSE(answer.ok());
  EXPECT_TRUE(answer.status().transient());
  doubler.fail_ = false;
  doubler.short_ = true;  // one answer short: no call gets another's answer
  answer = batcher.Call(2);
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.status().message().find("answered 0 of 1"), std::string::npos);
}

}  // namespace
}  // namespace imgproc
