#include "common/thread_name.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <string>
#include <thread>

#include "pipeline/cpu_stage.h"

namespace imgproc {
namespace {

std::string CurrentThreadName() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

TEST(ThreadNameTest, NamesTheCallingThreadAndCutsLongNames) {
  std::string short_name, long_name;
  std::thread([&] {
    NameThisThread("imgproc-test");
    short_name = CurrentThreadName();
    NameThisThread("imgproc-a-much-longer-name");  // Linux refuses more than 15 characters
    long_name = CurrentThreadName();
  }).join();
  EXPECT_EQ(short_name, "imgproc-test");
  EXPECT_EQ(long_name, "imgproc-a-much-");
}

TEST(ThreadNameTest, TheCpuStageThreadsSayWhatTheyAre) {
  pipeline::CpuStage stage(1);
  std::string name;
  stage.Run([&] { name = CurrentThreadName(); });
  EXPECT_EQ(name, "imgproc-cpu");
}

}  // namespace
}  // namespace imgproc
