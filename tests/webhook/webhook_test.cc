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

TEST(WebhookPayload, IsTheOriginalListOfFourKeyObjects) {
  store::RequestView view;
  view.products = {
      {1, "SKU1", "http://a/1.jpg,keep", "http://o/1.jpg,keep", {{0, "http://a/1.jpg", "x", 1}}},
      {2, "SKU2", "http://a/2.jpg", "", {}}};
  const auto body = nlohmann::json::parse(Payload(view));
  EXPECT_EQ(body, nlohmann::json::parse(R"([
    {"Serial Number": 1, "Product Name": "SKU1", "Input Image Urls": "http://a/1.jpg,keep",
     "Output Image Urls": "http://o/1.jpg,keep"},
    {"Serial Number": 2, "Product Name": "SKU2", "Input Image Urls": "http://a/2.jpg",
     "Output Image Urls": ""}])"));
}

TEST(WebhookBackoff, DoublesWithBoundedJitterAndACap) {
  using std::chrono::milliseconds;
  for (int attempt = 1; attempt <= 6; ++attempt) {
    const int64_t expected = 100LL << (attempt - 1);
    for (int i = 0; i < 50; ++i) {
      const auto d = Backoff(attempt, milliseconds(100)).count();
      EXPECT_GE(d, expected);
      EXPECT_LE(d, expected + expected / 4);
    }
  }
  EXPECT_LE(Backoff(60, milliseconds(5000)).count(), 3'600'000 + 900'000);
}

}  // namespace
}  // namespace imgproc::webhook
