#include "common/logging.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace imgproc::logging {
namespace {

TEST(JsonLine, HasTimeLevelMessageAndRequestId) {
  const auto j = nlohmann::json::parse(
      JsonLine(1'700'000'000'123, "info", "a \"quoted\"\nline", "0b4c4f1e-6a43"));
  EXPECT_EQ(j["ts"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["msg"], "a \"quoted\"\nline");
  EXPECT_EQ(j["request_id"], "0b4c4f1e-6a43");
}

TEST(JsonLine, LeavesOutAnEmptyRequestIdAndReplacesInvalidUtf8) {
  const auto j = nlohmann::json::parse(JsonLine(0, "warning", "bad \xFF", ""));
  EXPECT_FALSE(j.contains("request_id"));
  EXPECT_EQ(j["msg"], "bad \xEF\xBF\xBD");
  EXPECT_EQ(j["ts"], "1970-01-01T00:00:00.000Z");
}

TEST(ScopedRequestId, SetsAndRestoresTheThreadsRequest) {
  EXPECT_EQ(CurrentRequestId(), "");
  {
    ScopedRequestId outer("a");
    EXPECT_EQ(CurrentRequestId(), "a");
    {
      ScopedRequestId inner("b");
      EXPECT_EQ(CurrentRequestId(), "b");
    }
    EXPECT_EQ(CurrentRequestId(), "a");
  }
  EXPECT_EQ(CurrentRequestId(), "");
}

TEST(Configure, RefusesUnknownLevelsAndFormats) {
  EXPECT_FALSE(Configure("loud", "text").ok());
  EXPECT_FALSE(Configure("info", "xml").ok());
  EXPECT_TRUE(Configure("info", "text").ok());
}

}  // namespace
}  // namespace imgproc::logging
