#include "webhook/webhook.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace imgproc::webhook {
namespace {

TEST(WebhookSign, MatchesTheStandardWebhooksReferenceVector) {
  // From the Standard Webhooks specification's test suite.
  EXPECT_EQ(Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                 1614265330, R"({"test": 2432232314})"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(WebhookSign, DependsOnEveryPart) {
  const std::string base = Sign("secret", "id", 1, "body");
  EXPECT_NE(base, Sign("secret2", "id", 1, "body"));
  EXPECT_NE(base, Sign("secret", "id2", 1, "body"));
  EXPECT_NE(base, Sign("secret", "id", 2, "body"));
  EXPECT_NE(base, Sign("secret", "id", 1, "body2"));
  EXPECT_EQ(base.rfind("v1,", 0), 0u);
}

TEST(WebhookRetrySchedule, ParsesDurations) {
  using std::chrono::milliseconds;
  auto schedule = ParseRetrySchedule("5s,5m,30m,2h,250ms");
  ASSERT_TRUE(schedule.ok()) << schedule.status().message();
  EXPECT_EQ(*schedule,
            (RetrySchedule{milliseconds(5'000), milliseconds(300'000), milliseconds(1'800'000),
                           milliseconds(7'200'000), milliseconds(250)}));
  EXPECT_TRUE(ParseRetrySchedule("")->empty());
  for (const char* bad : {"5", "s", "5x", "5s,", "-5s", "5 s", "1.5h", "9999999h"}) {
    EXPECT_FALSE(ParseRetrySchedule(bad).ok()) << bad;
  }
}

TEST(WebhookRetrySchedule, DefaultSpansAboutThreeDays) {
  auto schedule = ParseRetrySchedule("5s,5m,30m,2h,5h,10h,14h,20h,20h");
  ASSERT_TRUE(schedule.ok());
  std::chrono::milliseconds total{};
  for (auto d : *schedule) total += d;
  EXPECT_GT(total, std::chrono::hours(70));
  EXPECT_LT(total, std::chrono::hours(80));
}

}  // namespace
}  // namespace imgproc::webhook
