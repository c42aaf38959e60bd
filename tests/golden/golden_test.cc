// What users see, byte for byte: the status JSON (while processing and once completed), the output
// CSV with and without its Errors column, and the webhook body, for one fixed request with
// passed-through entries, a failed image and a retried one, on every store. The files under
// tests/golden/ are the contract as it stands; a refactoring must leave them unchanged.
// IMGPROC_UPDATE_GOLDEN=1 rewrites them (for a deliberate change of what users see).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "api/handlers.h"
#include "report/report.h"
#include "services.h"
#include "store/store.h"

namespace imgproc::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kId[] = "00000000-0000-4000-8000-00000000c0de";

request::NewProduct Row(int64_t serial, std::string name, std::vector<std::string> urls) {
  return {serial, std::move(name), std::move(urls)};
}

request::ImageOutcome Done(const std::string& url, int64_t in, int64_t out) {
  request::ImageOutcome o;
  o.ok = true;
  o.output_url = url;
  o.input_bytes = in;
  o.output_bytes = out;
  return o;
}

request::ImageOutcome Failed(const std::string& error,
                             std::optional<request::Millis> retry_at = {}) {
  request::ImageOutcome o;
  o.error = error;
  o.retry_at = retry_at;
  return o;
}

// Compares `actual` with the golden file `name`, or rewrites it under IMGPROC_UPDATE_GOLDEN=1.
void ExpectGolden(const std::string& name, const std::string& actual) {
  const fs::path path = fs::path(IMGPROC_SOURCE_DIR) / "tests" / "golden" / name;
  if (const char* update = std::getenv("IMGPROC_UPDATE_GOLDEN"); update && *update == '1') {
    std::ofstream(path, std::ios::binary) << actual;
    return;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "no golden file " << path;
  std::ostringstream expected;
  expected << in.rdbuf();
  EXPECT_EQ(actual, expected.str()) << "differs from " << path;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url;
    if (GetParam() == "postgresql") {
      IMGPROC_NEED_SERVICE(PostgresAdminUrl(), "PostgreSQL (IMGPROC_TEST_PG_URL)");
      pg_ = std::make_unique<TempPostgresDatabase>();
      ASSERT_TRUE(pg_->ok()) << pg_->error();
      url = pg_->url();
    } else {
      dir_ = fs::temp_directory_path() / ("imgproc-golden-" + std::to_string(::getpid()));
      fs::remove_all(dir_);
      url = "sqlite://" + (dir_ / "imgproc.db").string();
    }
    auto opened = store::OpenStore(url);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    store_ = std::move(*opened);
    api_ = std::make_unique<api::Api>(*store_, *store_, api::ApiOptions{}, nullptr);
  }
  void TearDown() override {
    api_.reset();
    store_.reset();
    pg_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string Get(const std::string& path) {
    api::Response r = api_->Handle({"GET", path, {}, {}, {}, {}, {}});
    EXPECT_TRUE(api::ReadWholeBody(r).ok());
    EXPECT_EQ(r.status, 200) << path << ": " << r.content();
    return std::string(r.content());
  }

  // Takes the next due image, which must be `url`, and records `outcome` for it.
  void Record(const std::string& url, const request::ImageOutcome& outcome) {
    auto tasks = store_->ClaimImages("golden", 1, 60'000);
    ASSERT_TRUE(tasks.ok()) << tasks.status().message();
    ASSERT_EQ(tasks->size(), 1u) << "nothing due for " << url;
    ASSERT_EQ((*tasks)[0].url, url);
    auto recorded = store_->RecordImage((*tasks)[0].image_id, "golden", outcome);
    ASSERT_TRUE(recorded.ok() && *recorded) << url;
  }

  fs::path dir_;
  std::unique_ptr<TempPostgresDatabase> pg_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<api::Api> api_;
};

INSTANTIATE_TEST_SUITE_P(Engines, GoldenTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST_P(GoldenTest, StatusOutputCsvAndWebhookBodyAreUnchanged) {
  store::NewRequest request;
  request.request_id = kId;
  request.webhook_url = "http://hook.example/receive";
  request.client = "golden";
  request.products = {
      Row(1, "Alpha", {"http://img.example/a0.jpg", "keep-as-is.png", "http://img.example/a2.jpg"}),
      Row(2, "Beta, \"quoted\"", {"=cmd|' /C calc'!A0", "http://img.example/b1.jpg"}),
      Row(3, "Gamma", {"passthrough"}),
      Row(4, "Delta \xC3\xA9", {"HTTP://IMG.EXAMPLE/D0.JPG", "https://img.example/d1.jpg"}),
  };
  ASSERT_TRUE(store_->CreateRequest(request).ok());
  ASSERT_NO_FATAL_FAILURE(
      Record("http://img.example/a0.jpg", Done("https://out.example/1_0.jpg", 64368, 5389)));
  ASSERT_NO_FATAL_FAILURE(Record("http://img.example/a2.jpg", Failed("download failed: HTTP 404")));
  // A transient failure, due again a millisecond later (after the images stored with the
  // request): shown under "Image Retries" meanwhile.
  const request::Millis retry_at = RealClock().WallMillis() + 1;
  ASSERT_NO_FATAL_FAILURE(
      Record("http://img.example/b1.jpg", Failed("download failed: HTTP 503", retry_at)));
  ASSERT_NO_FATAL_FAILURE(
      Record("HTTP://IMG.EXAMPLE/D0.JPG", Done("https://out.example/4_0.jpg", 265096, 4999)));
  ExpectGolden("status_processing.json", Get(std::string("/status/") + kId + "/"));

  ASSERT_NO_FATAL_FAILURE(
      Record("https://img.example/d1.jpg", Done("https://out.example/4_1.jpg", 6722, 5265)));
  while (RealClock().WallMillis() <= retry_at) {
  }
  ASSERT_NO_FATAL_FAILURE(Record("http://img.example/b1.jpg", Failed("download failed: HTTP 503")));
  ExpectGolden("status_completed.json", Get(std::string("/status/") + kId + "/"));
  ExpectGolden("output.csv", Get(std::string("/api/p/requests/") + kId + "/output.csv"));
  api::Request with_errors{
      "GET", std::string("/api/p/requests/") + kId + "/output.csv", {}, {}, {}, {}, {}};
  with_errors.query["errors"] = "1";
  api::Response errors_csv = api_->Handle(with_errors);
  ASSERT_TRUE(api::ReadWholeBody(errors_csv).ok());
  ExpectGolden("output_errors.csv", errors_csv.body);
  auto view = store_->GetRequest(kId);
  ASSERT_TRUE(view.ok());
  ExpectGolden("webhook.json", report::WebhookJson(*view));
}

}  // namespace
}  // namespace imgproc::testing
