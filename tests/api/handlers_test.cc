#include "api/handlers.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "eventually.h"
#include "forwarding_store.h"
#include "storage/local_storage.h"
#include "store/store.h"

namespace imgproc::api {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kOriginalCsv[] =
    "S. No.,Product Name,Input Image Urls\n"
    "1,SKU1,https://example.com/img1.jpg,https://example.com/img2.jpg\n"
    "2,SKU2,https://example.com/img3.jpg,https://example.com/img4.jpg\n";

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("imgproc-api-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    auto s = store::OpenStore("sqlite://" + (dir_ / "db.sqlite").string());
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(*s);
    ApiOptions options;
    options.csv_limits.max_bytes = 4096;
    options.media = [media = dir_ / "media"](std::string_view relative) {
      return storage::ResolveMediaPath(media, relative);
    };
    options.metrics = &metrics_;
    fs::create_directories(dir_ / "media");
    api_ = std::make_unique<Api>(*store_, *store_, options, [this] { ++created_; });
  }
  void TearDown() override { fs::remove_all(dir_); }

  Response Upload(const std::string& csv, std::optional<std::string> webhook = std::nullopt) {
    Request r{"POST", "/api/p/upload/", {}, {}, {}, {}, {}};
    r.form["csv_file"] = {"products.csv", "text/csv", csv};
    if (webhook) r.form["webhook_url"] = {"", "", *webhook};
    return api_->Handle(r);
  }
  // A streamed body (Response::stream) is read to its end into `body`, as the transport sends it.
  Response Get(const std::string& path, std::map<std::string, std::string> query = {}) {
    Response r = api_->Handle({"GET", path, std::move(query), {}, {}, {}, {}});
    EXPECT_TRUE(ReadWholeBody(r).ok());
    return r;
  }
  static json Body(const Response& r) { return json::parse(r.content()); }

  fs::path dir_;
  metrics::ServiceMetrics metrics_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Api> api_;
  int created_ = 0;
};

TEST_F(ApiTest, UploadWithoutCsvFileIs400) {
  Response r = api_->Handle({"POST", "/api/p/upload/", {}, {}, {}, {}, {}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(Body(r), json({{"error", "No CSV file provided"}}));
  EXPECT_EQ(created_, 0);
}

TEST_F(ApiTest, InvalidCsvIs400WithDetails) {
  Response r = Upload("Serial Number,Product Name,Input Image Urls\nx,SKU,http://a/1.jpg\n");
  EXPECT_EQ(r.status, 400);
  json body = Body(r);
  EXPECT_EQ(body["error"], "Invalid CSV format");
  ASSERT_TRUE(body["details"].is_array());
  ASSERT_FALSE(body["details"].empty());
  EXPECT_EQ(body["details"][0]["row"], 2);
  EXPECT_EQ(body["details"][0]["column"], "Serial Number");
  EXPECT_NE(body["details"][0]["message"].get<std::string>().find("'x'"), std::string::npos);
}

TEST_F(ApiTest, WrongHeadersAreInvalidCsv) {
  Response r = Upload("id,name\n1,a\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"], "Invalid CSV format");
}

TEST_F(ApiTest, TooLargeCsvIs413) {
  Response r = Upload(std::string(5000, 'a'));
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(Body(r)["error"].is_string());
}

TEST_F(ApiTest, InvalidWebhookUrlIs400) {
  for (const char* bad : {"ftp://x/", "not a url", "http://", "javascript:alert(1)"}) {
    Response r = Upload(kOriginalCsv, bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(Body(r), json({{"error", "Invalid webhook_url"}})) << bad;
  }
}

TEST_F(ApiTest, AcceptedUploadReturnsUuidAndStatusShowsOriginalShape) {
  Response r = Upload(kOriginalCsv, "https://hooks.example.com/done");
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = Body(r)["request_id"];
  EXPECT_TRUE(request::IsUuid(id));
  EXPECT_EQ(id[14], '4');  // version 4
  EXPECT_EQ(Body(r).size(), 1u);
  EXPECT_EQ(created_, 1);

  Response s = Get("/status/" + id + "/");
  ASSERT_EQ(s.status, 200);
  json body = Body(s);
  EXPECT_EQ(body["request_id"], id);
  EXPECT_EQ(body["status"], "pending");
  EXPECT_EQ(
      body["progress"],
      json({{"images_total", 4}, {"images_done", 0}, {"images_failed", 0}, {"images_reused", 0}}));
  ASSERT_EQ(body["products"].size(), 2u);
  json p = body["products"][0];
  EXPECT_EQ(p["Serial Number"], 1);
  EXPECT_EQ(p["Product Name"], "SKU1");
  EXPECT_EQ(p["Input Image Urls"], "https://example.com/img1.jpg,https://example.com/img2.jpg");
  EXPECT_TRUE(p["Output Image Urls"].is_null());
  EXPECT_EQ(p["Image Errors"], json::array());
  EXPECT_EQ(p["Image Retries"], json::array());
  // Without the trailing slash too.
  EXPECT_EQ(Get("/status/" + id).status, 200);
}

// Entries without "http" pass through, so such a request is completed as soon as it is stored.
constexpr const char* kFinishedCsv =
    "Serial Number,Product Name,Input Image Urls\n1,SKU1,not-a-url\n2,SKU2,also-not\n";

TEST_F(ApiTest, CancelStopsARunningRequestOnceAndRefusesACompletedOne) {
  const std::string id = Body(Upload(kOriginalCsv, "https://hooks.example.com/done"))["request_id"];
  const std::string path = "/api/p/requests/" + id + "/cancel";
  EXPECT_EQ(Get(path).status, 405);  // a POST only
  const Response cancelled = api_->Handle({"POST", path, {}, {}, {}, {}, {}});
  ASSERT_EQ(cancelled.status, 200) << cancelled.content();
  const json body = Body(cancelled);
  EXPECT_EQ(body["status"], "cancelled");
  EXPECT_EQ(body["progress"]["images_failed"], 4);
  EXPECT_EQ(body["products"][0]["Output Image Urls"], ",");
  EXPECT_EQ(body["products"][0]["Image Errors"][0]["error"], "cancelled");
  EXPECT_EQ(body["webhook"]["state"], "pending");
  EXPECT_EQ(Body(Get("/status/" + id + "/")), body);
  // Again (with a slash at the end too): the same answer, nothing more happens.
  const Response again = api_->Handle({"POST", path + "/", {}, {}, {}, {}, {}});
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(Body(again), body);
  EXPECT_NE(api_->Handle({"GET", "/metrics", {}, {}, {}, {}, {}})
                .content()
                .find("imgproc_requests_cancelled_total 1\n"),
            std::string::npos);

  const std::string done = Body(Upload(kFinishedCsv))["request_id"];
  const Response refused =
      api_->Handle({"POST", "/api/p/requests/" + done + "/cancel", {}, {}, {}, {}, {}});
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(Body(refused), json({{"error", "Request already completed: nothing to cancel"}}));
  EXPECT_EQ(api_->Handle({"POST",
                          "/api/p/requests/00000000-0000-4000-8000-000000000000/cancel",
                          {},
                          {},
                          {},
                          {},
                          {}})
                .status,
            404);
}

TEST_F(ApiTest, RetryRedoesTheFailedImagesOfAFinishedRequestOnly) {
  const std::string id = Body(Upload(kOriginalCsv, "https://hooks.example.com/done"))["request_id"];
  const std::string path = "/api/p/requests/" + id + "/retry";
  EXPECT_EQ(Get(path).status, 405);  // a POST only
  const Response running = api_->Handle({"POST", path, {}, {}, {}, {}, {}});
  EXPECT_EQ(running.status, 409);
  EXPECT_EQ(Body(running),
            json({{"error", "Request still running: retry it once it has finished"}}));
  ASSERT_EQ(api_->Handle({"POST", "/api/p/requests/" + id + "/cancel", {}, {}, {}, {}, {}}).status,
            200);
  // Its finished status is kept in memory now: the retry must not be hidden behind it.
  ASSERT_EQ(Body(Get("/status/" + id + "/"))["status"], "cancelled");
  created_ = 0;
  const Response retried = api_->Handle({"POST", path + "/", {}, {}, {}, {}, {}});
  ASSERT_EQ(retried.status, 200) << retried.content();
  const json body = Body(retried);
  EXPECT_EQ(body["status"], "processing");
  EXPECT_EQ(body["progress"]["images_failed"], 0);
  EXPECT_EQ(body["products"][0]["Output Image Urls"], nullptr);
  EXPECT_FALSE(body.contains("webhook"));  // sent again once it completes
  EXPECT_EQ(Body(Get("/status/" + id + "/")), body);
  EXPECT_EQ(created_, 1);  // the queue was woken
  EXPECT_NE(api_->Handle({"GET", "/metrics", {}, {}, {}, {}, {}})
                .content()
                .find("imgproc_requests_retried_total 1\n"),
            std::string::npos);

  const std::string done = Body(Upload(kFinishedCsv))["request_id"];
  const Response nothing =
      api_->Handle({"POST", "/api/p/requests/" + done + "/retry", {}, {}, {}, {}, {}});
  EXPECT_EQ(nothing.status, 409);
  EXPECT_EQ(Body(nothing), json({{"error", "Request has no failed images: nothing to retry"}}));
  EXPECT_EQ(api_->Handle({"POST",
                          "/api/p/requests/00000000-0000-4000-8000-000000000000/retry",
                          {},
                          {},
                          {},
                          {},
                          {}})
                .status,
            404);
}

TEST_F(ApiTest, RefreshIsAYesOrNo) {
  for (const char* yes : {"true", "1"}) {
    Request r{"POST", "/api/p/upload/", {}, {}, {}, {}, {}};
    r.form["csv_file"] = {"p.csv", "text/csv", kOriginalCsv};
    r.form["refresh"] = {"", "", yes};
    EXPECT_EQ(api_->Handle(r).status, 202) << yes;
  }
  Request bad{"POST", "/api/p/upload/", {}, {}, {}, {}, {}};
  bad.form["csv_file"] = {"p.csv", "text/csv", kOriginalCsv};
  bad.form["refresh"] = {"", "", "maybe"};
  const Response refused = api_->Handle(bad);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(Body(refused), json({{"error", "Invalid refresh: use true or false"}}));
}

TEST_F(ApiTest, FinishedStatusStaysTheSameWhenServedAgain) {
  const std::string id = Body(Upload(kFinishedCsv))["request_id"];
  const Response first = Get("/status/" + id + "/");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(Body(first)["status"], "completed");
  for (int i = 0; i < 3; ++i) {
    const Response again = Get("/status/" + id + "/");
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(again.content_type, first.content_type);
    EXPECT_EQ(again.content(), first.content());
    EXPECT_NE(again.shared_body, nullptr);  // from memory
  }
}

// A completed request whose webhook is still to be delivered keeps changing: never stale.
TEST_F(ApiTest, StatusFollowsTheWebhookUntilItSettles) {
  const std::string id = Body(Upload(kFinishedCsv, "https://hooks.example.com/done"))["request_id"];
  EXPECT_EQ(Body(Get("/status/" + id + "/"))["webhook"]["state"], "pending");
  auto jobs = store_->ClaimWebhooks(10, 60'000);
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  ASSERT_TRUE(store_->RecordWebhook(id, 0, false, 500, RealClock().WallMillis() + 60'000).ok());
  EXPECT_EQ(Body(Get("/status/" + id + "/"))["webhook"]["state"], "retrying");
  ASSERT_TRUE(store_->RecordWebhook(id, 0, true, 200, std::nullopt).ok());
  EXPECT_EQ(Body(Get("/status/" + id + "/"))["webhook"]["state"], "delivered");
  EXPECT_EQ(Body(Get("/status/" + id + "/"))["webhook"]["attempts"], 2);
}

// Decodes gzip (RFC 1952); empty on failure.
std::string Gunzip(const std::string& data) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return {};
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  out.resize(z.total_out);
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : std::string();
}

TEST_F(ApiTest, FinishedStatusIsGzipEncodedForClientsThatAcceptIt) {
  const std::string id = Body(Upload(kFinishedCsv))["request_id"];
  const std::string path = "/status/" + id + "/";
  const Response plain = Get(path);  // also keeps the finished body
  ASSERT_EQ(plain.status, 200);
  EXPECT_FALSE(plain.headers.contains("Content-Encoding"));
  Request gzip_request{"GET", path, {}, {}, {{"accept-encoding", "br, gzip;q=0.8"}}, {}, {}};
  const Response gzipped = api_->Handle(gzip_request);
  ASSERT_EQ(gzipped.status, 200);
  EXPECT_EQ(gzipped.headers.at("Content-Encoding"), "gzip");
  EXPECT_EQ(gzipped.headers.at("Vary"), "Accept-Encoding");
  EXPECT_EQ(Gunzip(std::string(gzipped.content())), plain.content());
  Request refused{"GET", path, {}, {}, {{"accept-encoding", "gzip;q=0, br"}}, {}, {}};
  EXPECT_EQ(api_->Handle(refused).content(), plain.content());
  // The first poll of another finished request asks for gzip: the build that keeps it serves it.
  const std::string other = Body(Upload(kFinishedCsv))["request_id"];
  Request first_gzip{"GET", "/status/" + other + "/", {}, {}, {{"accept-encoding", "gzip"}}, {},
                     {}};
  const Response first = api_->Handle(first_gzip);
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.headers.at("Content-Encoding"), "gzip");
  EXPECT_EQ(Gunzip(std::string(first.content())), Get("/status/" + other + "/").content());
}

// A real store whose GetRequest counts its calls and, while held, waits to be released.
class HeldStore final : public testing::ForwardingStore {
 public:
  explicit HeldStore(store::Store& inner) : ForwardingStore(inner) {}

  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = true;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = false;
    }
    released_.notify_all();
  }
  int reads() {
    std::lock_guard<std::mutex> lock(mu_);
    return reads_;
  }

  Result<request::RequestView> GetRequestPage(const std::string& request_id,
                                              const request::ProductRange& range) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++reads_;
      released_.wait(lock, [this] { return !held_; });
    }
    return ForwardingStore::GetRequestPage(request_id, range);
  }

 private:
  std::mutex mu_;
  std::condition_variable released_;
  bool held_ = false;
  int reads_ = 0;
};

// An unfinished request's status is read afresh for each poll, but polls that arrive together
// share one read: 50 clients on a large request would otherwise each read and serialise it.
TEST_F(ApiTest, PollsOfAnUnfinishedRequestArrivingTogetherShareOneRead) {
  const std::string id = Body(Upload(kOriginalCsv))["request_id"];
  HeldStore held(*store_);
  Api api(held, held, ApiOptions{}, [] {});
  const Request poll{"GET", "/status/" + id + "/", {}, {}, {}, {}, {}};
  const Request gzip_poll{"GET", "/status/" + id + "/", {}, {}, {{"accept-encoding", "gzip"}}, {},
                          {}};
  held.Hold();
  constexpr int kPollers = 8;  // the odd ones accept gzip
  std::vector<Response> responses(kPollers);
  std::vector<std::thread> pollers;
  for (int i = 0; i < kPollers; ++i) {
    pollers.emplace_back([&, i] { responses[i] = api.Handle(i % 2 == 1 ? gzip_poll : poll); });
  }
  // All of them inside Handle: one reading, the others waiting on its build.
  ASSERT_TRUE(testing::Eventually([&] { return api.sharing_builds() == kPollers - 1; }));
  held.Release();
  for (auto& t : pollers) t.join();
  EXPECT_EQ(held.reads(), 1);
  const json plain = Body(responses[0]);
  EXPECT_EQ(plain["request_id"], id);
  EXPECT_EQ(plain["status"], "pending");
  for (int i = 0; i < kPollers; ++i) {
    const Response& r = responses[i];
    ASSERT_EQ(r.status, 200);
    if (i % 2 == 1) {  // compressed once, for all of them
      EXPECT_EQ(r.headers.at("Content-Encoding"), "gzip");
      EXPECT_EQ(r.content().data(), responses[1].content().data());
      EXPECT_EQ(Gunzip(std::string(r.content())), responses[0].content());
    } else {
      EXPECT_FALSE(r.headers.contains("Content-Encoding"));
      EXPECT_EQ(r.content(), responses[0].content());
    }
  }
  // Once the shared read is over, the next poll reads again: nothing unfinished is kept.
  EXPECT_EQ(api.Handle(poll).status, 200);
  EXPECT_EQ(held.reads(), 2);
}

TEST(AcceptsGzip, ReadsTheAcceptEncodingList) {
  const auto accepts = [](const char* value) {
    return AcceptsGzip({"GET", "/", {}, {}, {{"accept-encoding", value}}, {}, {}});
  };
  EXPECT_TRUE(accepts("gzip"));
  EXPECT_TRUE(accepts("br, GZIP;q=0.5"));
  EXPECT_TRUE(accepts("*"));
  EXPECT_FALSE(accepts("br"));
  EXPECT_FALSE(accepts("gzip;q=0"));
  EXPECT_FALSE(accepts("identity, xgzip"));
  EXPECT_FALSE(AcceptsGzip({"GET", "/", {}, {}, {}, {}, {}}));
}

TEST(StatusCacheTest, KeepsTheMostRecentlyUsedWithinItsBudget) {
  StatusCache cache(4000);  // entries of up to 1000 bytes (a quarter)
  const std::string body(900, 'x');
  cache.Put("a", {std::nullopt, 0, body, {}});
  cache.Put("b", {std::string("owner"), 0, body, {}});
  cache.Put("c", {std::nullopt, 0, body, {}});
  ASSERT_NE(cache.Find("a"), nullptr);  // now the most recently used
  cache.Put("d", {std::nullopt, 0, body, {}});
  cache.Put("e", {std::nullopt, 0, body, {}});  // over 4000 bytes: the least recently used (b) goes
  EXPECT_EQ(cache.Find("b"), nullptr);
  ASSERT_NE(cache.Find("a"), nullptr);
  EXPECT_EQ(cache.Find("a")->body, body);
  EXPECT_EQ(Gunzip(cache.Find("a")->gzip_body), body);
  EXPECT_NE(cache.Find("e"), nullptr);
  cache.Put("huge", {std::nullopt, 0, std::string(2000, 'y'), {}});  // over a quarter: not kept
  EXPECT_EQ(cache.Find("huge"), nullptr);
  EXPECT_NE(cache.Find("e"), nullptr);
}

TEST_F(ApiTest, UnknownOrMalformedIdIs404) {
  for (const char* path : {"/status/550e8400-e29b-41d4-a716-446655440000/", "/status/abc/",
                           "/status/../../etc/passwd/", "/status/'%20OR%201=1/"}) {
    Response r = Get(path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(Body(r), json({{"error", "Request ID not found"}})) << path;
  }
}

TEST_F(ApiTest, OutputCsvHasTheFourColumnsAndEscapesCells) {
  Response r = Upload(
      "Serial Number,Product Name,Input Image Urls\n"
      "1,\"=HYPERLINK(\"\"x\"\")\",local-only.jpg\n");
  ASSERT_EQ(r.status, 202);
  const std::string id = Body(r)["request_id"];
  Response csv = Get("/api/p/requests/" + id + "/output.csv");
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.content_type, "text/csv; charset=utf-8");
  EXPECT_EQ(csv.body,
            "Serial Number,Product Name,Input Image Urls,Output Image Urls\r\n"
            "1,\"'=HYPERLINK(\"\"x\"\")\",local-only.jpg,local-only.jpg\r\n");
  Response with_errors = Get("/api/p/requests/" + id + "/output.csv", {{"errors", "1"}});
  EXPECT_EQ(with_errors.body.substr(0, with_errors.body.find("\r\n")),
            "Serial Number,Product Name,Input Image Urls,Output Image Urls,Errors");
  EXPECT_EQ(Get("/api/p/requests/not-a-uuid/output.csv").status, 404);
}

TEST_F(ApiTest, MediaServesOnlyFilesInsideTheMediaFolder) {
  fs::create_directories(dir_ / "media" / "req");
  std::ofstream(dir_ / "media" / "req" / "1_0.jpg") << "JPEG";
  std::ofstream(dir_ / "db-secret") << "secret";
  Response ok = Get("/media/req/1_0.jpg");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.content_type, "image/jpeg");
  EXPECT_EQ(ok.body, "JPEG");
  for (const char* bad : {"/media/../db-secret", "/media/req/../../db-secret", "/media/",
                          "/media/req/", "/media/req/2_0.jpg"}) {
    EXPECT_EQ(Get(bad).status, 404) << bad;
  }
}

TEST_F(ApiTest, OutputCsvWithErrorsNamesEachFailedImage) {
  Response r = Upload(
      "Serial Number,Product Name,Input Image Urls\n"
      "1,SKU1,\"http://a/0.jpg,keep,http://a/2.jpg\"\n"
      "2,SKU2,http://a/3.jpg\n");
  ASSERT_EQ(r.status, 202);
  const std::string id = Body(r)["request_id"];
  auto tasks = store_->ClaimImages("w", 10, 60'000);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 3u);
  for (const auto& t : *tasks) {
    request::ImageOutcome o;
    if (t.url == "http://a/3.jpg") {
      o.ok = true;
      o.output_url = "http://out/3.jpg";
    } else {
      o.error = "download failed: HTTP 404";
    }
    ASSERT_TRUE(*store_->RecordImage(t.image_id, "w", o));
  }
  Response csv = Get("/api/p/requests/" + id + "/output.csv", {{"errors", "1"}});
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.body,
            "Serial Number,Product Name,Input Image Urls,Output Image Urls,Errors\r\n"
            "1,SKU1,\"http://a/0.jpg,keep,http://a/2.jpg\",\",keep,\","
            "#0 http://a/0.jpg: download failed: HTTP 404; #2 http://a/2.jpg: download failed: "
            "HTTP 404\r\n"
            "2,SKU2,http://a/3.jpg,http://out/3.jpg,\r\n");
  // Without ?errors=1 (or with errors=0) the four original columns only.
  for (const char* value : {"0", "no"}) {
    Response plain = Get("/api/p/requests/" + id + "/output.csv", {{"errors", value}});
    EXPECT_EQ(plain.body.substr(0, plain.body.find("\r\n")),
              "Serial Number,Product Name,Input Image Urls,Output Image Urls");
  }
}

TEST_F(ApiTest, StatusHasImageSizesOfDoneImages) {
  Response r = Upload("Serial Number,Product Name,Input Image Urls\n1,SKU1,http://a/0.jpg\n");
  const std::string id = Body(r)["request_id"];
  EXPECT_EQ(Body(Get("/status/" + id + "/"))["products"][0]["Image Sizes"], json::array());
  auto tasks = store_->ClaimImages("w", 10, 60'000);
  ASSERT_EQ(tasks->size(), 1u);
  request::ImageOutcome o;
  o.ok = true;
  o.output_url = "http://out/0.jpg";
  o.input_bytes = 1234;
  o.output_bytes = 321;
  ASSERT_TRUE(*store_->RecordImage((*tasks)[0].image_id, "w", o));
  json p = Body(Get("/status/" + id + "/"))["products"][0];
  EXPECT_EQ(
      p["Image Sizes"],
      json::parse(R"([{"index": 0, "input_bytes": 1234, "output_bytes": 321, "reused": false}])"));
  // The original four keys come first, unchanged.
  std::vector<std::string> keys;
  for (auto it = p.begin(); it != p.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys.size(), 7u);
}

TEST_F(ApiTest, ListsRecentRequestsNewestFirst) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Body(Upload(kOriginalCsv))["request_id"]);
  Response all = Get("/api/p/requests/");
  ASSERT_EQ(all.status, 200);
  json list = Body(all)["requests"];
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["status"], "pending");
  EXPECT_EQ(
      list[0]["progress"],
      json({{"images_total", 4}, {"images_done", 0}, {"images_failed", 0}, {"images_reused", 0}}));
  EXPECT_EQ(list[0]["created_at"].get<std::string>().size(), 24u);  // 2026-01-31T12:00:00.000Z
  std::set<std::string> listed;
  for (const auto& r : list) listed.insert(r["request_id"].get<std::string>());
  EXPECT_EQ(listed, std::set<std::string>(ids.begin(), ids.end()));
  EXPECT_EQ(Body(Get("/api/p/requests", {{"limit", "2"}}))["requests"].size(), 2u);
  for (const char* bad : {"0", "101", "-1", "x", ""}) {
    Response r = Get("/api/p/requests/", {{"limit", bad}});
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_TRUE(Body(r)["error"].is_string());
  }
}

TEST_F(ApiTest, StatusPagesReadASliceOfTheProductsAndTheirTotal) {
  std::string csv = "Serial Number,Product Name,Input Image Urls\n";
  for (int i = 1; i <= 5; ++i) {
    csv += std::to_string(i) + ",SKU" + std::to_string(i) + ",https://example.com/" +
           std::to_string(i) + ".jpg\n";
  }
  const std::string id = Body(Upload(csv))["request_id"];
  auto tasks = store_->ClaimImages("w", 10, 60'000);
  ASSERT_EQ(tasks->size(), 5u);
  for (const auto& t : *tasks) {
    request::ImageOutcome o;
    o.ok = t.serial_no != 3;
    o.output_url = "http://out/" + std::to_string(t.serial_no);
    o.error = "HTTP 404";
    ASSERT_TRUE(*store_->RecordImage(t.image_id, "w", o));
  }

  json page = Body(Get("/status/" + id + "/", {{"offset", "1"}, {"limit", "2"}}));
  EXPECT_EQ(page["status"], "completed");
  EXPECT_EQ(page["progress"]["images_total"], 5);
  EXPECT_EQ(page["page"], json({{"offset", 1}, {"limit", 2}, {"total", 5}}));
  ASSERT_EQ(page["products"].size(), 2u);
  EXPECT_EQ(page["products"][0]["Serial Number"], 2);
  EXPECT_EQ(page["products"][0]["Output Image Urls"], "http://out/2");
  EXPECT_EQ(page["products"][0]["Image Errors"], json::array());
  EXPECT_EQ(page["products"][1]["Serial Number"], 3);  // its image error comes with it
  ASSERT_EQ(page["products"][1]["Image Errors"].size(), 1u);
  EXPECT_EQ(page["products"][1]["Image Errors"][0]["error"], "HTTP 404");

  json rest = Body(Get("/status/" + id + "/", {{"offset", "3"}}));
  EXPECT_EQ(rest["page"], json({{"offset", 3}, {"limit", nullptr}, {"total", 5}}));
  ASSERT_EQ(rest["products"].size(), 2u);
  EXPECT_EQ(rest["products"][1]["Serial Number"], 5);
  json counts = Body(Get("/status/" + id + "/", {{"limit", "0"}}));
  EXPECT_EQ(counts["products"], json::array());
  EXPECT_EQ(counts["page"]["total"], 5);
  EXPECT_EQ(Body(Get("/status/" + id + "/", {{"offset", "9"}}))["products"], json::array());

  // The whole list, as before, has no page.
  json whole = Body(Get("/status/" + id + "/"));
  EXPECT_EQ(whole["products"].size(), 5u);
  EXPECT_FALSE(whole.contains("page"));
  for (const auto& [name, bad] : std::vector<std::pair<std::string, std::string>>{
           {"offset", "-1"}, {"limit", "x"}, {"limit", ""}, {"offset", "99999999999"}}) {
    Response r = Get("/status/" + id + "/", {{name, bad}});
    EXPECT_EQ(r.status, 400) << name << "=" << bad;
    EXPECT_NE(Body(r)["error"].get<std::string>().find(name), std::string::npos);
  }
  EXPECT_EQ(Get("/status/00000000-0000-4000-8000-000000000000/", {{"limit", "1"}}).status, 404);
}

TEST_F(ApiTest, TheOutputCsvOfABigRequestIsStreamedAPageAtATime) {
  std::vector<request::NewProduct> products;
  for (int i = 1; i <= 1201; ++i) {
    products.push_back({i, "SKU" + std::to_string(i), {"keep-" + std::to_string(i)}});
  }
  const std::string id = "6f1f0a52-3e62-4b6a-9a3c-3b0c2d1e0a01";
  ASSERT_TRUE(
      store_->CreateRequest({id, std::nullopt, std::nullopt, "", 0, std::move(products)}).ok());
  Response streamed =
      api_->Handle({"GET", "/api/p/requests/" + id + "/output.csv", {}, {}, {}, {}, {}});
  ASSERT_EQ(streamed.status, 200);
  ASSERT_TRUE(streamed.stream);  // made as it is sent, not held whole
  EXPECT_TRUE(streamed.body.empty());
  std::vector<std::string> pieces;
  for (int i = 0; i < 10; ++i) {
    auto piece = streamed.stream();
    ASSERT_TRUE(piece.ok());
    if (piece->empty()) break;
    pieces.push_back(*piece);
  }
  ASSERT_EQ(pieces.size(), 3u);             // 500 + 500 + 201 products, the header with the first
  EXPECT_TRUE(streamed.stream()->empty());  // and the end stays the end
  std::string whole;
  for (const auto& p : pieces) whole += p;
  std::vector<std::string> lines;
  for (size_t at = 0, end; (end = whole.find("\r\n", at)) != std::string::npos; at = end + 2) {
    lines.push_back(whole.substr(at, end - at));
  }
  ASSERT_EQ(lines.size(), 1202u);
  EXPECT_EQ(lines[0], "Serial Number,Product Name,Input Image Urls,Output Image Urls");
  EXPECT_EQ(lines[1], "1,SKU1,keep-1,keep-1");
  EXPECT_EQ(lines[500], "500,SKU500,keep-500,keep-500");
  EXPECT_EQ(lines[501], "501,SKU501,keep-501,keep-501");
  EXPECT_EQ(lines[1201], "1201,SKU1201,keep-1201,keep-1201");
  // Read whole through the same path, it is the same file.
  EXPECT_EQ(Get("/api/p/requests/" + id + "/output.csv").body, whole);
}

TEST_F(ApiTest, ReadyWhileTheStoreAnswers) {
  Response ok = Get("/readyz");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(Body(ok), json({{"status", "ready"}}));
  // Break the store behind its back: its trivial query fails.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "db.sqlite").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE requests", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  Response down = Get("/readyz");
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(down.content_type, "application/json");
  EXPECT_TRUE(Body(down)["error"].is_string());
  EXPECT_EQ(Get("/healthz").status, 200);  // alive, just not ready
}

TEST_F(ApiTest, ReadyOnlyWhileTheBrokerAnswers) {
  bool broker_up = true;
  ApiOptions options;
  options.broker_ready = [&] {
    return broker_up ? Status::Ok() : Transient("redis: cannot connect");
  };
  Api api(*store_, *store_, options, [] {});
  Request ready{"GET", "/readyz", {}, {}, {}, {}, {}};
  EXPECT_EQ(api.Handle(ready).status, 200);
  broker_up = false;
  Response down = api.Handle(ready);
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(Body(down)["error"], "Broker unavailable");
}

TEST_F(ApiTest, ReadyOnlyWhileTheStorageAnswers) {
  bool bucket_there = true;
  ApiOptions options;
  options.storage_ready = [&] {
    return bucket_there ? Status::Ok() : Permanent("bucket check failed: S3 NoSuchBucket");
  };
  Api api(*store_, *store_, options, [] {});
  Request ready{"GET", "/readyz", {}, {}, {}, {}, {}};
  EXPECT_EQ(api.Handle(ready).status, 200);
  bucket_there = false;
  Response down = api.Handle(ready);
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(Body(down)["error"], "Storage unavailable");
}

TEST_F(ApiTest, MetricsCountUploadsInPrometheusText) {
  ASSERT_EQ(Upload(kOriginalCsv).status, 202);
  ASSERT_EQ(Upload("id,name\n1,a\n").status, 400);
  ASSERT_EQ(api_->Handle({"POST", "/api/p/upload/", {}, {}, {}, {}, {}}).status, 400);
  ASSERT_EQ(Upload(kOriginalCsv, "ftp://x").status, 400);
  api_->CountTransportRejection("/api/p/upload/", 413);
  api_->CountTransportRejection("/status/x/", 413);  // not an upload
  Response m = Get("/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
  for (const char* line : {"imgproc_uploads_accepted_total 1\n",
                           "imgproc_uploads_rejected_total{reason=\"invalid_csv\"} 1\n",
                           "imgproc_uploads_rejected_total{reason=\"no_file\"} 1\n",
                           "imgproc_uploads_rejected_total{reason=\"invalid_webhook_url\"} 1\n",
                           "imgproc_uploads_rejected_total{reason=\"too_large\"} 1\n"}) {
    EXPECT_NE(m.body.find(line), std::string::npos) << line << m.body;
  }
}

TEST_F(ApiTest, ServesTheWebPageAndTheOpenApiDocument) {
  Response page = Get("/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<html"), std::string::npos);
  EXPECT_NE(page.headers["Content-Security-Policy"].find("script-src 'self'"), std::string::npos);
  for (const char* path : {"/static/app.js", "/static/style.css"}) {
    Response r = Get(path);
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_FALSE(r.body.empty()) << path;
  }
  Response doc = Get("/openapi.json");
  ASSERT_EQ(doc.status, 200);
  EXPECT_EQ(doc.content_type, "application/json");
  json spec = Body(doc);
  EXPECT_EQ(spec["openapi"], "3.1.0");
  for (const char* path :
       {"/api/p/upload/", "/status/{request_id}/", "/api/p/requests/{request_id}/output.csv",
        "/api/p/requests/", "/media/{request_id}/{name}", "/healthz", "/readyz", "/metrics",
        "/openapi.json", "/"}) {
    EXPECT_TRUE(spec["paths"].contains(path)) << path;
  }
  EXPECT_EQ(api_->Handle({"POST", "/", {}, {}, {}, {}, {}}).status, 405);
}

TEST_F(ApiTest, UnknownRoutesAndMethodsAreJsonErrors) {
  EXPECT_EQ(Get("/nope").status, 404);
  Response r = api_->Handle({"DELETE", "/api/p/upload/", {}, {}, {}, {}, {}});
  EXPECT_EQ(r.status, 405);
  EXPECT_TRUE(Body(r)["error"].is_string());
  EXPECT_EQ(Get("/api/p/upload/").status, 405);
  EXPECT_EQ(Get("/healthz").status, 200);
}

class ApiKeysTest : public ApiTest {
 protected:
  void SetUp() override {
    ApiTest::SetUp();
    ApiOptions options;
    options.media = [media = dir_ / "media"](std::string_view relative) {
      return storage::ResolveMediaPath(media, relative);
    };
    options.api_key_digests = {KeyDigest("key-a"), KeyDigest("key-b")};
    api_ = std::make_unique<Api>(*store_, *store_, options, nullptr);
  }
  Response As(const std::string& key, Request r) {
    if (!key.empty()) r.headers["authorization"] = "Bearer " + key;
    return api_->Handle(r);
  }
  Request UploadRequest() {
    Request r{"POST", "/api/p/upload/", {}, {}, {}, {}, {}};
    r.form["csv_file"] = {"p.csv", "text/csv", kOriginalCsv};
    return r;
  }
};

TEST_F(ApiKeysTest, EveryEndpointButHealthNeedsAKey) {
  for (const std::string& key : {std::string(), std::string("wrong")}) {
    Response r = As(key, UploadRequest());
    EXPECT_EQ(r.status, 401) << key;
    EXPECT_EQ(r.headers["WWW-Authenticate"], "Bearer");
    EXPECT_TRUE(Body(r)["error"].is_string());
    for (const char* path : {"/status/550e8400-e29b-41d4-a716-446655440000/", "/api/p/requests/",
                             "/api/p/requests/550e8400-e29b-41d4-a716-446655440000/output.csv",
                             "/media/550e8400-e29b-41d4-a716-446655440000/1_0.jpg"}) {
      EXPECT_EQ(As(key, {"GET", path, {}, {}, {}, {}, {}}).status, 401) << path;
    }
  }
  Request basic = UploadRequest();
  basic.headers["authorization"] = "Basic a2V5LWE6";
  EXPECT_EQ(api_->Handle(basic).status, 401);
  for (const char* open : {"/healthz", "/readyz", "/metrics", "/openapi.json", "/"}) {
    EXPECT_EQ(api_->Handle({"GET", open, {}, {}, {}, {}, {}}).status, 200) << open;
  }
}

TEST_F(ApiKeysTest, AnotherKeysRequestIsNotFound) {
  Response created = As("key-a", UploadRequest());
  ASSERT_EQ(created.status, 202);
  const std::string id = Body(created)["request_id"];
  fs::create_directories(dir_ / "media" / id);
  std::ofstream(dir_ / "media" / id / "1_0.jpg") << "JPEG";
  for (const std::string& path : {"/status/" + id + "/", "/api/p/requests/" + id + "/output.csv",
                                  "/media/" + id + "/1_0.jpg"}) {
    EXPECT_EQ(As("key-a", {"GET", path, {}, {}, {}, {}, {}}).status, 200) << path;
    Response other = As("key-b", {"GET", path, {}, {}, {}, {}, {}});
    EXPECT_EQ(other.status, 404) << path;
  }
  EXPECT_EQ(Body(As("key-b", {"GET", "/status/" + id + "/", {}, {}, {}, {}, {}})),
            json({{"error", "Request ID not found"}}));
  // The list shows each key its own requests only.
  json mine = Body(As("key-a", {"GET", "/api/p/requests/", {}, {}, {}, {}, {}}))["requests"];
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0]["request_id"], id);
  EXPECT_EQ(Body(As("key-b", {"GET", "/api/p/requests/", {}, {}, {}, {}, {}}))["requests"],
            json::array());
  // Also once a finished request's status is kept in memory.
  Request finished{"POST", "/api/p/upload/", {}, {}, {}, {}, {}};
  finished.form["csv_file"] = {"products.csv", "text/csv", kFinishedCsv};
  const std::string done_id = Body(As("key-a", finished))["request_id"];
  const std::string done_path = "/status/" + done_id + "/";
  EXPECT_EQ(Body(As("key-a", {"GET", done_path, {}, {}, {}, {}, {}}))["status"], "completed");
  EXPECT_EQ(Body(As("key-a", {"GET", done_path, {}, {}, {}, {}, {}}))["status"], "completed");
  EXPECT_EQ(As("key-b", {"GET", done_path, {}, {}, {}, {}, {}}).status, 404);
}

TEST_F(ApiKeysTest, OnlyTheOwnerMayCancel) {
  Response created = As("key-a", UploadRequest());
  ASSERT_EQ(created.status, 202);
  const std::string path =
      "/api/p/requests/" + Body(created)["request_id"].get<std::string>() + "/cancel";
  EXPECT_EQ(As("", {"POST", path, {}, {}, {}, {}, {}}).status, 401);
  EXPECT_EQ(As("key-b", {"POST", path, {}, {}, {}, {}, {}}).status, 404);
  const Response mine = As("key-a", {"POST", path, {}, {}, {}, {}, {}});
  EXPECT_EQ(mine.status, 200);
  EXPECT_EQ(Body(mine)["status"], "cancelled");
}

// Finding 11 of issue 19: the scheme of an Authorization header is case-insensitive (RFC 7235);
// "bearer" was refused.
TEST_F(ApiKeysTest, OnlyTheOwnerMayRetry) {
  Response created = As("key-a", UploadRequest());
  const std::string id = Body(created)["request_id"];
  ASSERT_EQ(As("key-a", {"POST", "/api/p/requests/" + id + "/cancel", {}, {}, {}, {}, {}}).status,
            200);
  const std::string path = "/api/p/requests/" + id + "/retry";
  EXPECT_EQ(As("", {"POST", path, {}, {}, {}, {}, {}}).status, 401);
  EXPECT_EQ(As("key-b", {"POST", path, {}, {}, {}, {}, {}}).status, 404);
  EXPECT_EQ(As("key-a", {"POST", path, {}, {}, {}, {}, {}}).status, 200);
}

// The image cache's objects are named by the SHA-256 of their input and shared by every request
// that sent those bytes: any valid key may read them, no key may not.
TEST_F(ApiKeysTest, TheCachesObjectsAreReadWithAnyValidKey) {
  fs::create_directories(dir_ / "media" / "objects");
  std::ofstream(dir_ / "media" / "objects" / "ab12_jpeg-q50.jpg") << "JPEG";
  const std::string path = "/media/objects/ab12_jpeg-q50.jpg";
  EXPECT_EQ(As("key-a", {"GET", path, {}, {}, {}, {}, {}}).status, 200);
  EXPECT_EQ(As("key-b", {"GET", path, {}, {}, {}, {}, {}}).status, 200);
  EXPECT_EQ(As("", {"GET", path, {}, {}, {}, {}, {}}).status, 401);
  EXPECT_EQ(As("key-a", {"GET", "/media/objects/none.jpg", {}, {}, {}, {}, {}}).status, 404);
}

TEST_F(ApiKeysTest, TheBearerSchemeIsCaseInsensitive) {
  for (const char* header : {"bearer key-a", "BEARER key-a", "Bearer   key-a", "bEaReR key-b"}) {
    Request r = UploadRequest();
    r.headers["authorization"] = header;
    EXPECT_EQ(api_->Handle(r).status, 202) << header;
  }
  for (const char* header : {"Bearerkey-a", "Bearer", "Bearer ", "Token key-a", "Bearers key-a"}) {
    Request r = UploadRequest();
    r.headers["authorization"] = header;
    EXPECT_EQ(api_->Handle(r).status, 401) << header;
  }
}

// Finding 1 of issue 19: with API keys on, an upload without a valid key is answered from its
// head (Admit), so the transport never reads its body; a caller with a key gets it read.
TEST_F(ApiKeysTest, AdmitRefusesAnUploadWithoutAKeyBeforeItsBody) {
  Request head{"POST", "/api/p/upload/", {}, {}, {}, {}, {}};
  auto refused = api_->Admit(head);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 401);
  head.headers["authorization"] = "Bearer key-a";
  EXPECT_FALSE(api_->Admit(head).has_value());
  // Routes that take no body are answered from the head too.
  EXPECT_EQ(api_->Admit({"POST", "/healthz", {}, {}, {}, {}, {}})->status, 405);
  EXPECT_EQ(api_->Admit({"POST", "/nope", {}, {}, {}, {}, {}})->status, 404);
}

// Finding 3 of issue 19: uploads past MAX_QUEUED_IMAGES_PER_CLIENT get a clear 429, per address
// when API keys are off.
TEST_F(ApiTest, UploadsPastTheClientsQueuedImagesAre429) {
  ApiOptions options;
  options.csv_limits.max_bytes = 4096;
  options.max_client_images = 6;
  options.metrics = &metrics_;
  api_ = std::make_unique<Api>(*store_, *store_, options, nullptr);
  const auto upload = [&](const std::string& address) {
    Request r{"POST", "/api/p/upload/", {}, {}, {}, address, {}};
    r.form["csv_file"] = {"products.csv", "text/csv", kOriginalCsv};  // 4 images
    return api_->Handle(r);
  };
  EXPECT_EQ(upload("10.0.0.1").status, 202);
  const Response over = upload("10.0.0.1");
  EXPECT_EQ(over.status, 429);
  EXPECT_NE(Body(over)["error"].get<std::string>().find("MAX_QUEUED_IMAGES_PER_CLIENT"),
            std::string::npos);
  EXPECT_EQ(over.headers.at("Retry-After"), "60");
  EXPECT_EQ(upload("10.0.0.2").status, 202);
  EXPECT_NE(metrics_.Render().find("imgproc_uploads_rejected_total{reason=\"too_many_queued\"} 1"),
            std::string::npos);
}

TEST(KeyDigest, IsHexSha256) {
  EXPECT_EQ(KeyDigest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(JsonError, InvalidUtf8IsReplacedNotThrown) {
  Response r = JsonError(400, "bad \xFF\xFE text");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"], "bad \xEF\xBF\xBD\xEF\xBF\xBD text");
}

TEST(RequestIds, AreUniqueUuids) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = request::NewRequestId();
    EXPECT_TRUE(request::IsUuid(id)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_FALSE(request::IsUuid("550e8400-e29b-41d4-a716-44665544000"));
  EXPECT_FALSE(request::IsUuid("550e8400xe29b-41d4-a716-446655440000"));
  EXPECT_FALSE(request::IsUuid("550e8400-e29b-41d4-a716-44665544000g"));
}

}  // namespace
}  // namespace imgproc::api
