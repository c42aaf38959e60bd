// The webhook Sender on fakes: a SQLite store and the Sender read a fake clock, deliveries are
// answered by a fake HTTP client. Its schedule, giving up, and signing, decided by moving time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "eventually.h"
#include "fake_clock.h"
#include "fake_http_client.h"
#include "report/report.h"
#include "store/store.h"
#include "webhook/webhook.h"

namespace imgproc::webhook {
namespace {

using namespace std::chrono_literals;
using testing::FakeClock;
using testing::FakeHttpClient;

constexpr char kHook[] = "http://receiver.test/hook";

class ScheduleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("imgproc-schedule-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto opened = store::OpenStore("sqlite://" + (dir_ / "imgproc.db").string(), clock_);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    store_ = std::move(*opened);
    // A request without images: completed at once, its webhook due now.
    ASSERT_TRUE(
        store_->CreateRequest({"r1", kHook, std::nullopt, "", 0, {{1, "Shoe", {"kept-as-is.jpg"}}}})
            .ok());
    options_.schedule = {1s, 2s};
    options_.secret = "s3cret";
    options_.concurrency = 1;
  }
  void TearDown() override {
    sender_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Start() {
    sender_ = std::make_unique<Sender>(*store_, *store_, options_, clock_, http_);
    sender_->Start();
  }
  request::WebhookView Webhook() {
    auto view = store_->GetRequest("r1");
    EXPECT_TRUE(view.ok());
    return view.ok() && view->webhook ? *view->webhook : request::WebhookView{};
  }
  // True once `n` attempts are recorded and the Sender is idle until the fake clock moves (its
  // claimer waits for its next look).
  bool AwaitAttempts(int n) {
    return testing::Eventually([&] { return Webhook().attempts >= n; }) && clock_.AwaitWaiters(1);
  }
  bool AwaitIdle() { return clock_.AwaitWaiters(1); }

  std::filesystem::path dir_;
  FakeClock clock_;
  FakeHttpClient http_;
  SenderOptions options_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Sender> sender_;
};

// Each failure is tried again after the schedule's delay (plus at most a tenth of it); when the
// schedule runs out, the delivery has failed and nothing more is sent.
TEST_F(ScheduleTest, FollowsItsScheduleThenFails) {
  http_.Respond(kHook, 500);
  Start();
  ASSERT_TRUE(AwaitAttempts(1));
  EXPECT_EQ(Webhook().state, "retrying");
  clock_.Advance(999ms);
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(http_.count(kHook), 1u);
  clock_.Advance(601ms);  // 1 s + at most 10%, and the claimer's half-second look
  ASSERT_TRUE(AwaitAttempts(2));
  clock_.Advance(1999ms);
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(http_.count(kHook), 2u);
  clock_.Advance(701ms);
  ASSERT_TRUE(AwaitAttempts(3));
  clock_.Advance(24h);
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(http_.count(kHook), 3u);
  const request::WebhookView hook = Webhook();
  EXPECT_EQ(hook.state, "failed");
  EXPECT_EQ(hook.attempts, 3);
  EXPECT_EQ(hook.last_status, 500);
}

// 410 Gone: the receiver asks to be left alone; no retry.
TEST_F(ScheduleTest, GoneStopsAtOnce) {
  http_.Respond(kHook, 410);
  Start();
  ASSERT_TRUE(AwaitAttempts(1));
  clock_.Advance(24h);
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(http_.count(kHook), 1u);
  EXPECT_EQ(Webhook().state, "failed");
}

// The body is the four-key product list, signed the Standard Webhooks way with the clock's time
// and a stable id.
TEST_F(ScheduleTest, SignsTheBodyTheStandardWebhooksWay) {
  http_.Respond(kHook, 204);
  Start();
  ASSERT_TRUE(AwaitAttempts(1));
  const FakeHttpClient::Call call = http_.calls().at(0);
  auto view = store_->GetRequest("r1");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(call.body, report::WebhookJson(*view));
  const int64_t timestamp = clock_.WallMillis() / 1000;
  EXPECT_EQ(call.headers,
            (std::vector<std::string>{
                "webhook-id: msg_r1", "webhook-timestamp: " + std::to_string(timestamp),
                "webhook-signature: " + Sign("s3cret", "msg_r1", timestamp, call.body)}));
  EXPECT_EQ(view->webhook->state, "delivered");
  EXPECT_EQ(view->webhook->last_status, 204);
}

}  // namespace
}  // namespace imgproc::webhook
