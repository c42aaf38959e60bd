// The Redis broker against the real Redis of scripts/services.sh, with an SQLite store as the
// source of truth.
#include "queue/redis_queue.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <thread>

#include "eventually.h"
#include "process_client.h"
#include "services.h"

namespace imgproc::queue {
namespace {

using namespace std::chrono_literals;

TEST(ParseRedisUrlTest, ReadsHostPortPasswordAndDatabase) {
  auto a = ParseRedisUrl("redis://127.0.0.1:6380/3");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 3);
  EXPECT_EQ(a->password, "");

  auto b = ParseRedisUrl("redis://:s3cret@cache.internal");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "cache.internal");
  EXPECT_EQ(b->port, 6379);
  EXPECT_EQ(b->user, "");
  EXPECT_EQ(b->password, "s3cret");
  EXPECT_EQ(b->db, 0);

  auto c = ParseRedisUrl("redis://imgproc:pw@[::1]:7000/0");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 7000);
  EXPECT_EQ(c->user, "imgproc");
  EXPECT_EQ(c->password, "pw");

  for (const char* bad : {"http://x", "redis://h:0", "redis://h:99999", "redis://h:x/1",
                          "redis://h/abc", "redis://", "redis://[::1"}) {
    EXPECT_FALSE(ParseRedisUrl(bad).ok()) << bad;
  }
}

request::NewProduct Row(int64_t serial, std::vector<std::string> urls) {
  return {serial, "P" + std::to_string(serial), std::move(urls)};
}

class RedisQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    IMGPROC_NEED_SERVICE(testing::RedisUrl(), "Redis (IMGPROC_TEST_REDIS_URL)");
    // A stream of its own, so tests running at the same time (ctest -j) do not meet.
    url_ = *testing::RedisUrl();
    stream_ = std::string("imgproc:test:") +
              ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_TRUE(Redis({"DEL", stream_}).has_value());
    auto store = store::OpenStore("sqlite://" + (dir_.path() / "db.sqlite").string());
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(*store);
  }

  std::unique_ptr<RedisQueue> Open(std::string consumer, std::chrono::milliseconds lease = 60s,
                                   int64_t window = 512) {
    RedisQueueOptions o;
    o.url = url_;
    o.lease = lease;
    o.window = window;
    o.sweep = 50ms;
    o.consumer = std::move(consumer);
    o.stream = stream_;
    auto q = RedisQueue::Open(*store_, o);
    EXPECT_TRUE(q.ok()) << q.status().message();
    return q.ok() ? std::move(*q) : nullptr;
  }

  // Runs a command on a connection of the test's own; the integer or string reply, or nullopt.
  std::optional<std::string> Redis(const std::vector<std::string>& args) {
    auto a = ParseRedisUrl(url_);
    redisContext* c = redisConnect(a->host.c_str(), a->port);
    std::optional<std::string> out;
    if (c && !c->err) {
      redisReply* sel = static_cast<redisReply*>(redisCommand(c, "SELECT %d", a->db));
      freeReplyObject(sel);
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const auto& s : args) {
        argv.push_back(s.data());
        lens.push_back(s.size());
      }
      auto* r = static_cast<redisReply*>(
          redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
      if (r && r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
      if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) {
        out = std::string(r->str, r->len);
      }
      freeReplyObject(r);
    }
    if (c) redisFree(c);
    return out;
  }

  // Takes until `n` tasks came or 5 s passed.
  std::vector<store::ImageTask> TakeN(RedisQueue& q, const std::string& owner, size_t n) {
    std::vector<store::ImageTask> out;
    for (int i = 0; i < 50 && out.size() < n; ++i) {
      auto t = q.Take(owner, static_cast<int>(n - out.size()), 100ms);
      EXPECT_TRUE(t.ok()) << t.status().message();
      if (!t.ok()) break;
      out.insert(out.end(), t->begin(), t->end());
    }
    return out;
  }

  static request::ImageOutcome Done(const std::string& url) {
    request::ImageOutcome o;
    o.ok = true;
    o.output_url = url;
    return o;
  }

  testing::TempDir dir_{"redis-queue"};
  std::string url_;
  std::string stream_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(RedisQueueTest, NotifiedImagesAreTakenOnceAndAcknowledged) {
  auto q = Open("c1");
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(store_
                  ->CreateRequest({"r1",
                                   std::nullopt,
                                   std::nullopt,
                                   "",
                                   0,
                                   {Row(1, {"http://a/0", "x", "http://a/2"})}})
                  .ok());
  q->Notify();
  auto tasks = TakeN(*q, "c1/0", 2);
  ASSERT_EQ(tasks.size(), 2u);
  std::set<int> indexes;
  for (const auto& t : tasks) {
    indexes.insert(t.index);
    EXPECT_FALSE(t.queue_ref.empty());
  }
  EXPECT_EQ(indexes, (std::set<int>{0, 2}));
  // Nothing else to take: the store holds both leases.
  EXPECT_TRUE(q->Take("c1/0", 5, 100ms)->empty());
  for (const auto& t : tasks) {
    ASSERT_TRUE(*store_->RecordImage(t.image_id, "c1/0", Done("http://out/" + t.url)));
    q->Done(t);
  }
  EXPECT_EQ(Redis({"XLEN", stream_}).value_or("?"), "0");
  EXPECT_EQ(store_->GetRequest("r1")->status, request::RequestStatus::kCompleted);
}

TEST_F(RedisQueueTest, DuplicateEntriesAreDroppedWithoutWork) {
  auto q = Open("c1");
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(
      store_->CreateRequest({"r1", std::nullopt, std::nullopt, "", 0, {Row(1, {"http://a/0"})}})
          .ok());
  q->Notify();
  auto tasks = TakeN(*q, "c1/0", 1);
  ASSERT_EQ(tasks.size(), 1u);
  // A stale second entry for the same image (say, from a sweep racing a restart).
  Redis({"XADD", stream_, "*", "image", std::to_string(tasks[0].image_id)});
  EXPECT_TRUE(q->Take("c1/1", 1, 100ms)->empty());
  EXPECT_EQ(Redis({"XLEN", stream_}).value_or("?"), "1");  // only the one in flight
}

TEST_F(RedisQueueTest, ADeadConsumersImagesAreTakenOverAfterTheLease) {
  auto dead = Open("dead", 300ms);
  auto alive = Open("alive", 300ms);
  ASSERT_TRUE(dead && alive);
  ASSERT_TRUE(
      store_->CreateRequest({"r1", std::nullopt, std::nullopt, "", 0, {Row(1, {"http://a/0"})}})
          .ok());
  dead->Notify();
  auto lost = TakeN(*dead, "dead/0", 1);
  ASSERT_EQ(lost.size(), 1u);
  dead.reset();  // dies without recording or acknowledging
  // Redis's clock decides when the 300 ms lease has lapsed; TakeN polls until then.
  auto taken = TakeN(*alive, "alive/0", 1);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].image_id, lost[0].image_id);
  EXPECT_EQ(taken[0].attempts, 2);
  ASSERT_TRUE(*store_->RecordImage(taken[0].image_id, "alive/0", Done("http://out/0")));
  alive->Done(taken[0]);
  EXPECT_EQ(store_->GetRequest("r1")->images_done, 1);
}

TEST_F(RedisQueueTest, WorkLostWithRedisDataIsHandedOverAgain) {
  auto q = Open("c1");
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(
      store_
          ->CreateRequest(
              {"r1", std::nullopt, std::nullopt, "", 0, {Row(1, {"http://a/0", "http://a/1"})}})
          .ok());
  q->Notify();
  ASSERT_TRUE(imgproc::testing::Eventually([&] {
    return Redis({"XLEN", stream_}).value_or("0") == "2";
  }));
  ASSERT_EQ(Redis({"XLEN", stream_}).value_or("?"), "2");
  ASSERT_TRUE(Redis({"DEL", stream_}).has_value());  // as a restart without persistence does
  auto tasks = TakeN(*q, "c1/0", 2);
  EXPECT_EQ(tasks.size(), 2u);
}

TEST_F(RedisQueueTest, UnreachableRedisIsATransientError) {
  RedisQueueOptions o;
  o.url = "redis://127.0.0.1:" + std::to_string(testing::FreePort()) + "/0";
  auto q = RedisQueue::Open(*store_, o);
  ASSERT_FALSE(q.ok());
  EXPECT_TRUE(q.status().transient()) << q.status().message();
}

}  // namespace
// Issue 22: the stream holds a window of due images, not all of them, so a request sent beside a
// big one is handed over within a window, in turn with the big one.
TEST_F(RedisQueueTest, ARequestSentBesideABigOneWaitsBehindAWindowAtMost) {
  auto q = Open("c1", 60s, /*window=*/4);
  ASSERT_NE(q, nullptr);
  std::vector<std::string> many;
  for (int i = 0; i < 30; ++i) many.push_back("http://big/" + std::to_string(i));
  ASSERT_TRUE(
      store_->CreateRequest({"r1", std::nullopt, std::nullopt, "", 0, {Row(1, many)}}).ok());
  q->Notify();
  ASSERT_TRUE(imgproc::testing::Eventually([&] {
    return Redis({"XLEN", stream_}).value_or("0") == "4";
  }));
  ASSERT_TRUE(store_
                  ->CreateRequest({"r2",
                                   std::nullopt,
                                   std::nullopt,
                                   "",
                                   0,
                                   {Row(1, {"http://small/0", "http://small/1"})}})
                  .ok());
  q->Notify();
  // The first window is the big request's; the next one takes both lines in turn. Taken one at
  // a time, in the stream's order.
  std::vector<std::string> taken;
  while (taken.size() < 8) {
    auto tasks = q->Take("c1/0", 1, 1s);
    ASSERT_TRUE(tasks.ok()) << tasks.status().message();
    ASSERT_EQ(tasks->size(), 1u);
    const auto& t = tasks->front();
    taken.push_back(t.url);
    ASSERT_TRUE(*store_->RecordImage(t.image_id, "c1/0", Done("http://out/" + t.url)));
    q->Done(t);
    EXPECT_LE(std::stoi(Redis({"XLEN", stream_}).value_or("99")), 4);  // never past the window
  }
  // When the small request came the big one had a window handed over, the small one none: the
  // small one's two are in the next window (how it interleaves depends on when the sweeps run).
  EXPECT_EQ(
      std::set<std::string>(taken.begin(), taken.begin() + 4),
      (std::set<std::string>{"http://big/0", "http://big/1", "http://big/2", "http://big/3"}));
  EXPECT_EQ(std::count(taken.begin() + 4, taken.end(), "http://small/0"), 1);
  EXPECT_EQ(std::count(taken.begin() + 4, taken.end(), "http://small/1"), 1);
}

}  // namespace imgproc::queue
