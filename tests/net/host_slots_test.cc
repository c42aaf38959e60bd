#include "net/host_slots.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "eventually.h"

namespace imgproc::net {
namespace {

TEST(MayConnect, AnyoneBelowTheBoundAPartyBelowItsSharePastItNeverPastTwice) {
  EXPECT_TRUE(MayConnect(0, 32, 0, 1));
  EXPECT_TRUE(MayConnect(31, 32, 31, 1));
  EXPECT_FALSE(MayConnect(32, 32, 32, 1));  // alone, at the bound: waits
  // A second party: its share is 16, whatever the first holds.
  EXPECT_TRUE(MayConnect(32, 32, 0, 2));
  EXPECT_TRUE(MayConnect(47, 32, 15, 2));
  EXPECT_FALSE(MayConnect(48, 32, 16, 2));
  EXPECT_FALSE(MayConnect(40, 32, 32, 2));  // the first one, past its share
  // Many parties: at least one each, but never twice the bound.
  EXPECT_TRUE(MayConnect(40, 32, 0, 100));
  EXPECT_FALSE(MayConnect(40, 32, 1, 100));
  EXPECT_FALSE(MayConnect(64, 32, 0, 100));
}

TEST(HostSlots, AHostFullOfOnePartysTransfersStillServesAnother) {
  HostSlots slots(4);
  std::vector<HostSlots::Slot> big;
  for (int i = 0; i < 4; ++i) big.push_back(slots.Acquire("h:80", "big"));
  EXPECT_EQ(slots.in_use("h:80"), 4);
  EXPECT_EQ(slots.in_use("other:80"), 0);  // each host counts its own

  // The big party's fifth waits; another party's first does not.
  std::atomic<bool> fifth{false};
  std::thread waiter([&] {
    HostSlots::Slot s = slots.Acquire("h:80", "big");
    fifth = true;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return slots.waiting("h:80") == 1; }));
  HostSlots::Slot small = slots.Acquire("h:80", "small");
  ASSERT_TRUE(small);
  EXPECT_EQ(slots.in_use("h:80"), 5);
  EXPECT_FALSE(fifth.load());
  small = HostSlots::Slot();
  big.pop_back();  // below the bound again: the big party's fifth goes
  waiter.join();
  EXPECT_TRUE(fifth.load());
  big.clear();
  EXPECT_EQ(slots.in_use("h:80"), 0);
}

TEST(HostSlots, OfThoseWaitingThePartyHoldingFewestGoesFirst) {
  HostSlots slots(2);
  HostSlots::Slot a1 = slots.Acquire("h:80", "a");
  HostSlots::Slot b1 = slots.Acquire("h:80", "b");
  // Past the bound, each holds its share (1): both wait, a for its second, c for its first.
  std::atomic<int> order{0};
  std::atomic<int> a_turn{0};
  std::atomic<int> c_turn{0};
  std::thread a2([&] {
    HostSlots::Slot s = slots.Acquire("h:80", "a");
    a_turn = ++order;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return slots.waiting("h:80") == 1; }));
  std::thread c1([&] {
    HostSlots::Slot s = slots.Acquire("h:80", "c");
    c_turn = ++order;
    // Held until a2 has had its turn too.
    ASSERT_TRUE(imgproc::testing::Eventually([&] { return a_turn.load() != 0; }));
  });
  // c holds nothing and its share (2 / 3 parties: 1) is free past the bound: it goes first.
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return c_turn.load() == 1; }));
  EXPECT_EQ(a_turn.load(), 0);
  b1 = HostSlots::Slot();
  a1 = HostSlots::Slot();  // below the bound again (c holds 1 of 2): a's second goes
  a2.join();
  c1.join();
  EXPECT_EQ(a_turn.load(), 2);
}

TEST(HostSlots, AWaitIsCancelled) {
  HostSlots slots(1);
  HostSlots::Slot held = slots.Acquire("h:80", "a");
  std::atomic<bool> cancel{false};
  std::atomic<bool> given_up{false};
  std::thread waiter([&] {
    HostSlots::Slot s = slots.Acquire("h:80", "a", &cancel, std::chrono::milliseconds(5));
    given_up = !s;
  });
  ASSERT_TRUE(imgproc::testing::Eventually([&] { return slots.waiting("h:80") == 1; }));
  cancel = true;
  waiter.join();
  EXPECT_TRUE(given_up.load());
  EXPECT_EQ(slots.waiting("h:80"), 0);
  EXPECT_EQ(slots.in_use("h:80"), 1);
}

}  // namespace
}  // namespace imgproc::net
