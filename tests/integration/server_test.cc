// End-to-end tests: the real imgproc binary against an image host, a fake ImgBB and a webhook
// receiver that the tests own, all on 127.0.0.1.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "eventually.h"
#include "fixture_server.h"
#include "process_client.h"
#include "process_stats.h"
#include "raw_http.h"
#include "test_hosts.h"
#include "test_images.h"
#include "webhook/webhook.h"

namespace imgproc::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::map<std::string, std::string> TestEnv(std::map<std::string, std::string> extra = {}) {
  std::map<std::string, std::string> env = {{"ALLOW_PRIVATE_URLS", "1"},
                                            {"RETRY_BASE_MS", "20"},
                                            {"WEBHOOK_RETRY_SCHEDULE", "100ms,100ms,100ms"},
                                            {"WORKERS", "8"},
                                            {"LOG_LEVEL", "debug"}};
  for (auto& [k, v] : extra) env[k] = v;
  return env;
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(std::map<std::string, std::string> env) {
    server_ = std::make_unique<ImgprocProcess>(dir_.path(), std::move(env));
    ASSERT_TRUE(server_->Start()) << server_->log();
  }
  std::string Submit(const std::string& csv, const std::string& webhook = "") {
    auto res = server_->Upload(csv, webhook);
    EXPECT_TRUE(res);
    if (!res) return "";
    EXPECT_EQ(res->status, 202) << res->body;
    return json::parse(res->body, nullptr, false).value("request_id", "");
  }
  // A request of `products` entries without "http", so completed as soon as it is stored.
  std::string SubmitPassThrough(int products) {
    std::string csv = "Serial Number,Product Name,Input Image Urls\n";
    for (int i = 1; i <= products; ++i)
      csv += std::to_string(i) + ",P" + std::to_string(i) + ",x\n";
    const std::string id = Submit(csv);
    EXPECT_EQ(server_->Status(id)["status"], "completed");
    return id;
  }

  // A CSV with one image per row: the host's p0.jpg ... p<n-1>.jpg.
  std::string OneImagePerRow(int n) {
    std::string csv = "Serial Number,Product Name,Input Image Urls\n";
    for (int i = 0; i < n; ++i) {
      csv += std::to_string(i + 1) + ",P" + std::to_string(i) + "," +
             host_.Url("/img/p" + std::to_string(i) + ".jpg") + "\n";
    }
    return csv;
  }

  // Polls the status until its webhook reaches `state` (or 5 s pass); returns the last seen.
  json WaitForWebhook(const std::string& id, const std::string& state) {
    return server_->WaitForStatus(
        id, [&](const json& s) { return s.contains("webhook") && s["webhook"]["state"] == state; },
        std::chrono::seconds(5))["webhook"];
  }

  TempDir dir_{"it"};
  ImageHost host_;
  std::unique_ptr<ImgprocProcess> server_;
};

TEST_F(ServerTest, OriginalExampleEveryFormatCompressedInOrder) {
  // Each image gets its own size, so an output's dimensions say which input it came from.
  struct Input {
    TestImage kind;
    int width, height;
  };
  const std::vector<Input> inputs = {{TestImage::kJpegRgb, 320, 200},
                                     {TestImage::kJpegProgressive, 330, 210},
                                     {TestImage::kJpegCmyk, 340, 220},
                                     {TestImage::kJpegGray, 350, 230},
                                     {TestImage::kJpegExifRotate6, 360, 240},
                                     {TestImage::kPngRgb, 370, 250},
                                     {TestImage::kPngRgba, 380, 260},
                                     {TestImage::kPngPalette, 390, 270},
                                     {TestImage::kPng16, 400, 280},
                                     {TestImage::kGif, 410, 290},
                                     {TestImage::kWebp, 420, 300},
                                     {TestImage::kTiff, 430, 310}};
  for (size_t i = 0; i < inputs.size(); ++i) {
    host_.Add("i" + std::to_string(i),
              MakeImage(inputs[i].kind, inputs[i].width, inputs[i].height));
  }
  host_.Start();
  WebhookReceiver hook;
  StartServer(TestEnv());

  // The original design's form: "S. No." and unquoted URL lists spilling into extra columns.
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  for (int row = 0; row < 3; ++row) {
    csv += std::to_string(row + 1) + ",SKU" + std::to_string(row + 1);
    for (int j = 0; j < 4; ++j) csv += "," + host_.Url("/img/i" + std::to_string(row * 4 + j));
    csv += "\n";
  }
  csv += "4,SKU4,not-a-url.jpg," + host_.Url("/img/i0") + "\n";
  const std::string id = Submit(csv, hook.Url());
  ASSERT_FALSE(id.empty());

  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed") << status.dump(2) << server_->log();
  // i0 is named twice: downloaded, compressed and stored once (the second slot reuses it).
  EXPECT_EQ(
      status["progress"],
      json(
          {{"images_total", 13}, {"images_done", 13}, {"images_failed", 0}, {"images_reused", 1}}));
  ASSERT_EQ(status["products"].size(), 4u);

  for (int row = 0; row < 3; ++row) {
    const json& p = status["products"][row];
    EXPECT_EQ(p["Serial Number"], row + 1);
    EXPECT_EQ(p["Image Errors"], json::array());
    const auto outputs = Split(p["Output Image Urls"].get<std::string>());
    ASSERT_EQ(outputs.size(), 4u);
    for (int j = 0; j < 4; ++j) {
      const Input& in = inputs[static_cast<size_t>(row * 4 + j)];
      SCOPED_TRACE(std::string(TestImageName(in.kind)) + " -> " + outputs[j]);
      // Stored once per content, under its SHA-256 (the image cache's objects).
      EXPECT_EQ(outputs[j].rfind(server_->BaseUrl() + "/media/objects/", 0), 0u);
      EXPECT_EQ(outputs[j].size() - outputs[j].rfind('/'), 1 + 64 + 13u);  // <sha256>_jpeg-q50.jpg
      auto res = server_->Get(outputs[j]);
      ASSERT_TRUE(res);
      ASSERT_EQ(res->status, 200);
      EXPECT_EQ(res->get_header_value("Content-Type"), "image/jpeg");
      auto info = InspectJpeg(res->body);
      ASSERT_TRUE(info.has_value());
      EXPECT_EQ(info->components, 3);
      EXPECT_FALSE(info->progressive);
      EXPECT_FALSE(info->has_exif);
      EXPECT_FALSE(info->has_icc);
      ASSERT_TRUE(info->luma_table.has_value());
      EXPECT_EQ(*info->luma_table, StandardLumaTable(50));
      const bool rotated = in.kind == TestImage::kJpegExifRotate6;
      EXPECT_EQ(info->width, rotated ? in.height : in.width);
      EXPECT_EQ(info->height, rotated ? in.width : in.height);
    }
  }
  // Entries without "http" pass through unchanged, in place.
  const auto last = Split(status["products"][3]["Output Image Urls"].get<std::string>());
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0], "not-a-url.jpg");
  EXPECT_EQ(last[1], Split(status["products"][0]["Output Image Urls"].get<std::string>())[0]);
  EXPECT_EQ(host_.Count("/img/i0"), 1u);
  // A byte range of a stored image is a 206 with just those bytes.
  auto whole = server_->Get(last[1]);
  ASSERT_TRUE(whole);
  httplib::Client media("127.0.0.1", server_->port());
  auto part = media.Get(last[1].substr(server_->BaseUrl().size()), {{"Range", "bytes=2-5"}});
  ASSERT_TRUE(part);
  EXPECT_EQ(part->status, 206);
  EXPECT_EQ(part->body, whole->body.substr(2, 4));

  // The webhook gets the original list of four-key product objects, once: settled after one
  // attempt.
  const json settled = server_->WaitForWebhook(id);
  ASSERT_TRUE(settled.is_object());
  EXPECT_EQ(settled["webhook"]["state"], "delivered");
  EXPECT_EQ(settled["webhook"]["attempts"], 1);
  ASSERT_EQ(hook.bodies().size(), 1u);
  EXPECT_EQ(hook.content_type(0), "application/json");
  json body = json::parse(hook.bodies()[0]);
  ASSERT_TRUE(body.is_array());
  ASSERT_EQ(body.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    json expected = status["products"][i];
    expected.erase("Image Errors");
    expected.erase("Image Retries");
    expected.erase("Image Sizes");
    EXPECT_EQ(body[i], expected);
  }
  // "Image Sizes" (extension): for every done image, the bytes downloaded and stored.
  for (int row = 0; row < 3; ++row) {
    const json& sizes = status["products"][row]["Image Sizes"];
    const auto outputs = Split(status["products"][row]["Output Image Urls"].get<std::string>());
    ASSERT_EQ(sizes.size(), 4u);
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(sizes[j]["index"], j);
      EXPECT_EQ(sizes[j]["input_bytes"], MakeImage(inputs[static_cast<size_t>(row * 4 + j)].kind,
                                                   inputs[static_cast<size_t>(row * 4 + j)].width,
                                                   inputs[static_cast<size_t>(row * 4 + j)].height)
                                             .size());
      auto media = server_->Get(outputs[j]);
      ASSERT_TRUE(media);
      EXPECT_EQ(sizes[j]["output_bytes"], media->body.size());
    }
  }
  const json& pass_through = status["products"][3]["Image Sizes"];
  ASSERT_EQ(pass_through.size(), 1u) << "only the http entry has sizes";
  EXPECT_EQ(pass_through[0]["index"], 1);
  EXPECT_EQ(pass_through[0]["input_bytes"],
            MakeImage(inputs[0].kind, inputs[0].width, inputs[0].height).size());
  // The output CSV has the same content.
  auto out_csv = server_->Get("/api/p/requests/" + id + "/output.csv");
  ASSERT_TRUE(out_csv);
  EXPECT_EQ(out_csv->status, 200);
  EXPECT_NE(out_csv->body.find("4,SKU4,\"not-a-url.jpg," + host_.Url("/img/i0") +
                               "\",\"not-a-url.jpg," + last[1] + "\""),
            std::string::npos)
      << out_csv->body;
  EXPECT_EQ(WaitForWebhook(id, "delivered"),
            json({{"state", "delivered"}, {"attempts", 1}, {"last_status", 200}}));
}

TEST_F(ServerTest, BrokenImagesBecomeErrorsAndTheRestCompletes) {
  const std::string photo = MakeImage(TestImage::kJpegRgb, 300, 200);
  host_.Add("photo.jpg", photo);
  host_.Add("truncated.jpg", photo.substr(0, photo.size() / 2));
  host_.Add("bomb.png", MakeImage(TestImage::kPngRgb, 1200, 1000));  // over MAX_IMAGE_PIXELS
  host_.Start();
  StartServer(TestEnv({{"MAX_IMAGE_PIXELS", "1000000"}}));

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/img/photo.jpg", ""},      {"/img/missing.jpg", "HTTP 404"}, {"/page.html", "not an image"},
      {"/img/truncated.jpg", ""},  // some error; libvips words it
      {"/empty.jpg", "empty"},     {"/img/bomb.png", "too large"},   {"/redirect/3", ""},
      {"/redirect/7", "redirect"},
  };
  std::string csv = "Serial Number,Product Name,Input Image Urls\n1,Broken,\"";
  for (size_t i = 0; i < cases.size(); ++i) csv += (i ? "," : "") + host_.Url(cases[i].first);
  csv += "\"\n2,Fine,\"" + host_.Url("/img/photo.jpg") + "\"\n";
  const std::string id = Submit(csv);
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed") << status.dump(2);
  EXPECT_EQ(status["progress"]["images_failed"], 6);
  EXPECT_EQ(status["progress"]["images_done"], 3);

  const json& broken = status["products"][0];
  const auto outputs = Split(broken["Output Image Urls"].get<std::string>());
  ASSERT_EQ(outputs.size(), cases.size());
  std::map<int, json> errors;
  for (const auto& e : broken["Image Errors"]) errors[e["index"].get<int>()] = e;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].first);
    const bool should_work = cases[i].first == "/img/photo.jpg" || cases[i].first == "/redirect/3";
    if (should_work) {
      EXPECT_FALSE(outputs[i].empty());
      EXPECT_EQ(errors.count(static_cast<int>(i)), 0u);
      continue;
    }
    EXPECT_TRUE(outputs[i].empty());
    ASSERT_EQ(errors.count(static_cast<int>(i)), 1u);
    EXPECT_EQ(errors[static_cast<int>(i)]["url"], host_.Url(cases[i].first));
    const std::string message = errors[static_cast<int>(i)]["error"];
    EXPECT_FALSE(message.empty());
    EXPECT_NE(message.find(cases[i].second), std::string::npos) << message;
    // Permanent failures are not retried.
    EXPECT_EQ(errors[static_cast<int>(i)]["attempts"], 1);
  }
  EXPECT_EQ(status["products"][1]["Image Errors"], json::array());
  EXPECT_FALSE(status["products"][1]["Output Image Urls"].get<std::string>().empty());
}

TEST_F(ServerTest, TransientFailuresAreRetriedAndWebhookRedelivered) {
  host_.Add("photo.jpg", MakeImage(TestImage::kJpegRgb, 200, 100));
  host_.set_flaky_failures(2);
  host_.Start();
  WebhookReceiver hook;
  hook.set_fail_first(2);
  StartServer(TestEnv({{"WEBHOOK_SECRET", kWebhookSecret}}));
  const std::string id =
      Submit("Serial Number,Product Name,Input Image Urls\n1,P," + host_.Url("/flaky.jpg") + "\n",
             hook.Url());
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  EXPECT_EQ(status["progress"]["images_done"], 1);
  EXPECT_EQ(host_.Count("/flaky.jpg"), 3u);
  ASSERT_TRUE(hook.WaitFor(1));
  EXPECT_EQ(hook.attempts(), 3u);
  EXPECT_EQ(WaitForWebhook(id, "delivered"),
            json({{"state", "delivered"}, {"attempts", 3}, {"last_status", 200}}));
  // Signed the Standard Webhooks way, with an id that stays the same across retries.
  EXPECT_EQ(hook.ids(), std::vector<std::string>(3, "msg_" + id));
  EXPECT_EQ(hook.signatures_valid(), std::vector<bool>{true});
}

TEST_F(ServerTest, ImgbbStorageUsesItsApiAndReportsItsErrors) {
  host_.Add("photo.jpg", MakeImage(TestImage::kJpegRgb, 200, 100));
  host_.Start();
  FixtureServer imgbb;
  std::atomic<int> uploads{0}, rate_limited{1};
  imgbb.server().Post("/1/upload", [&](const httplib::Request& req, httplib::Response& res) {
    if (req.get_file_value("key").content != "good-key") {
      res.status = 400;
      res.set_content(R"({"status_code":400,"error":{"message":"Invalid API v1 key.","code":100},)"
                      R"("status_txt":"Bad Request"})",
                      "application/json");
      return;
    }
    if (rate_limited-- > 0) {
      res.status = 400;
      res.set_content(R"({"status_code":400,"error":{"message":"Rate limit reached.","code":100}})",
                      "application/json");
      return;
    }
    const auto& image = req.get_file_value("image");
    if (!InspectJpeg(image.content)) {
      res.status = 400;
      return;
    }
    const int n = ++uploads;
    res.set_content(R"({"data":{"url":"https://i.ibb.co/x/)" + std::to_string(n) +
                        R"(.jpg"},"success":true,"status":200})",
                    "application/json");
  });
  imgbb.Start();

  const std::string csv = "Serial Number,Product Name,Input Image Urls\n1,P,\"" +
                          host_.Url("/img/photo.jpg") + "," + host_.Url("/img/photo.jpg") + "\"\n";
  StartServer(TestEnv({{"STORAGE", "imgbb"},
                       {"IMGBB_API_KEY", "good-key"},
                       {"IMGBB_UPLOAD_URL", imgbb.Url("/1/upload")}}));
  std::string id = Submit(csv);
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  auto outputs = Split(status["products"][0]["Output Image Urls"].get<std::string>());
  ASSERT_EQ(outputs.size(), 2u);
  // The same URL twice in a request: one upload (after one rate-limited try), both slots its URL.
  EXPECT_EQ(outputs,
            (std::vector<std::string>{"https://i.ibb.co/x/1.jpg", "https://i.ibb.co/x/1.jpg"}));
  EXPECT_EQ(imgbb.CountRequests("/1/upload"), 2u);

  // The same CSV again: the image cache reuses the ImgBB URL without uploading (even with a key
  // that no longer works).
  server_->Signal(SIGTERM);
  ASSERT_EQ(server_->Wait(), 0);
  StartServer(TestEnv({{"STORAGE", "imgbb"},
                       {"IMGBB_API_KEY", "bad-key"},
                       {"IMGBB_UPLOAD_URL", imgbb.Url("/1/upload")}}));
  id = Submit(csv);
  status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  EXPECT_EQ(status["products"][0]["Output Image Urls"],
            "https://i.ibb.co/x/1.jpg,https://i.ibb.co/x/1.jpg");
  EXPECT_EQ(imgbb.CountRequests("/1/upload"), 2u);

  // A wrong key is a clear, permanent error for each image (made anew: no cache).
  server_->Signal(SIGTERM);
  ASSERT_EQ(server_->Wait(), 0);
  StartServer(TestEnv({{"STORAGE", "imgbb"},
                       {"IMGBB_API_KEY", "bad-key"},
                       {"IMGBB_UPLOAD_URL", imgbb.Url("/1/upload")},
                       {"IMAGE_CACHE", "false"}}));
  id = Submit(csv);
  status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  EXPECT_EQ(status["products"][0]["Output Image Urls"], ",");
  ASSERT_EQ(status["products"][0]["Image Errors"].size(), 2u);  // the URL's error on both slots
  EXPECT_NE(status["products"][0]["Image Errors"][0]["error"].get<std::string>().find(
                "Invalid API v1 key."),
            std::string::npos);
}

TEST_F(ServerTest, ImgbbTooManyRequestsHonoursRetryAfter) {
  host_.Add("photo.jpg", MakeImage(TestImage::kJpegRgb, 200, 100));
  host_.Start();
  FixtureServer imgbb;
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> attempts;
  imgbb.server().Post("/1/upload", [&](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    attempts.push_back(std::chrono::steady_clock::now());
    if (attempts.size() == 1) {
      res.status = 429;
      res.set_header("Retry-After", "1");
      return;
    }
    res.set_content(R"({"data":{"url":"https://i.ibb.co/x/1.jpg"},"success":true})",
                    "application/json");
  });
  imgbb.Start();
  StartServer(TestEnv({{"STORAGE", "imgbb"},
                       {"IMGBB_API_KEY", "k"},
                       {"IMGBB_UPLOAD_URL", imgbb.Url("/1/upload")}}));
  const std::string id = Submit("Serial Number,Product Name,Input Image Urls\n1,P," +
                                host_.Url("/img/photo.jpg") + "\n");
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  EXPECT_EQ(status["products"][0]["Output Image Urls"], "https://i.ibb.co/x/1.jpg");
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(attempts.size(), 2u);
  // RETRY_BASE_MS is 20 ms here: only Retry-After explains a wait of a second.
  EXPECT_GE(attempts[1] - attempts[0], 900ms);
}

TEST_F(ServerTest, PrivateAddressesAreRefusedByDefault) {
  host_.Add("photo.jpg", MakeImage(TestImage::kJpegRgb, 200, 100));
  host_.Start();
  WebhookReceiver hook;
  StartServer({{"RETRY_BASE_MS", "20"}, {"WEBHOOK_RETRY_SCHEDULE", "50ms"}});
  const std::string id =
      Submit("Serial Number,Product Name,Input Image Urls\n1,P,\"" + host_.Url("/img/photo.jpg") +
                 ",http://localhost:" + std::to_string(FreePort()) + "/x.jpg\"\n",
             hook.Url());
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  ASSERT_EQ(status["products"][0]["Image Errors"].size(), 2u);
  for (const auto& e : status["products"][0]["Image Errors"]) {
    EXPECT_NE(e["error"].get<std::string>().find("not a public address"), std::string::npos)
        << e.dump();
  }
  EXPECT_EQ(host_.Total(), 0u);
  EXPECT_EQ(WaitForWebhook(id, "failed")["state"], "failed");
  EXPECT_EQ(hook.attempts(), 0u);
}

TEST_F(ServerTest, HostListsRestrictDownloads) {
  host_.Add("photo.jpg", MakeImage(TestImage::kJpegRgb, 200, 100));
  host_.Start();
  StartServer(TestEnv({{"FETCH_DENY_HOSTS", " LocalHost ,evil.example"}}));
  const std::string localhost_url =
      "http://localhost:" + std::to_string(host_.port()) + "/img/photo.jpg";
  const std::string id = Submit("Serial Number,Product Name,Input Image Urls\n1,P,\"" +
                                host_.Url("/img/photo.jpg") + "," + localhost_url + "\"\n");
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  EXPECT_EQ(status["progress"]["images_done"], 1);
  ASSERT_EQ(status["products"][0]["Image Errors"].size(), 1u);
  EXPECT_EQ(status["products"][0]["Image Errors"][0]["error"],
            "download failed: destination not allowed: localhost is denied");
  EXPECT_EQ(host_.Count("/img/photo.jpg"), 1u);
}

TEST_F(ServerTest, ApiKeysOverHttp) {
  host_.Start();
  std::ofstream(dir_.path() / "keys.txt") << "# team keys\nkey-from-file\n";
  StartServer(
      TestEnv({{"API_KEYS", "key-a"}, {"API_KEYS_FILE", (dir_.path() / "keys.txt").string()}}));
  httplib::Client client("127.0.0.1", server_->port());
  const httplib::MultipartFormDataItems csv = {
      {"csv_file", "Serial Number,Product Name,Input Image Urls\n1,P,local.jpg\n", "p.csv", ""}};
  auto anonymous = client.Post("/api/p/upload/", csv);
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(anonymous->get_header_value("WWW-Authenticate"), "Bearer");

  auto created = client.Post("/api/p/upload/", {{"Authorization", "Bearer key-from-file"}}, csv);
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 202) << created->body;
  const std::string id = json::parse(created->body)["request_id"];
  auto mine = client.Get("/status/" + id + "/", {{"authorization", "Bearer key-from-file"}});
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine->status, 200);
  auto theirs = client.Get("/status/" + id + "/", {{"Authorization", "Bearer key-a"}});
  ASSERT_TRUE(theirs);
  EXPECT_EQ(theirs->status, 404);
  EXPECT_EQ(client.Get("/healthz")->status, 200);
}

// httplib would answer "br" with quality-11 brotli (seconds of CPU for a large status); imgproc
// offers gzip only, from memory once a request is finished.
TEST_F(ServerTest, ResponsesAreGzipEncodedNeverBrotli) {
  StartServer(TestEnv({}));
  const std::string id = SubmitPassThrough(200);
  httplib::Client client("127.0.0.1", server_->port());
  client.set_decompress(false);
  const std::string path = "/status/" + id + "/";
  auto plain = client.Get(path, {{"Accept-Encoding", "identity"}});
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->has_header("Content-Encoding"));
  EXPECT_EQ(json::parse(plain->body)["products"].size(), 200u);
  for (const char* offered : {"br", "br, gzip, deflate"}) {
    for (const std::string& target : {path, std::string("/"), std::string("/api/p/requests/")}) {
      auto res = client.Get(target, {{"Accept-Encoding", offered}});
      ASSERT_TRUE(res);
      EXPECT_EQ(res->status, 200);
      const bool gzip = std::string(offered).find("gzip") != std::string::npos;
      EXPECT_EQ(res->get_header_value("Content-Encoding"), gzip ? "gzip" : "")
          << offered << " " << target;
    }
  }
  // What a decompressing client makes of the gzip body is the plain one.
  httplib::Client decompressing("127.0.0.1", server_->port());
  auto decoded = decompressing.Get(path, {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->body, plain->body);
}

TEST_F(ServerTest, TheOutputCsvIsSentInChunksPlainOrGzipEncoded) {
  StartServer(TestEnv({}));
  const std::string id = SubmitPassThrough(1200);  // three pages of 500 products
  const std::string path = "/api/p/requests/" + id + "/output.csv";
  httplib::Client client("127.0.0.1", server_->port());
  auto plain = client.Get(path, {{"Accept-Encoding", "identity"}});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 200);
  EXPECT_EQ(plain->get_header_value("Transfer-Encoding"), "chunked");
  EXPECT_FALSE(plain->has_header("Content-Length"));
  EXPECT_EQ(plain->get_header_value("Content-Type"), "text/csv; charset=utf-8");
  EXPECT_EQ(std::count(plain->body.begin(), plain->body.end(), '\n'), 1201);
  EXPECT_NE(plain->body.find("\r\n1200,P1200,x,x\r\n"), std::string::npos);
  httplib::Client decompressing("127.0.0.1", server_->port());
  auto gzip = decompressing.Get(path, {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(gzip);
  EXPECT_EQ(gzip->get_header_value("Content-Encoding"), "gzip");
  EXPECT_EQ(gzip->body, plain->body);  // decoded by the client
  // HTTP/1.0 takes no chunks: the whole file, with its length.
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n"));
  const std::string raw = ReadAll(fd);
  close(fd);
  EXPECT_NE(raw.find("Content-Length: " + std::to_string(plain->body.size())), std::string::npos);
  EXPECT_EQ(raw.substr(raw.find("\r\n\r\n") + 4), plain->body);
  // And the connection still serves what follows on it.
  auto after = client.Get("/status/" + id + "/?limit=0");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

TEST_F(ServerTest, AGigabyteDownloadIsCutAtTheLimit) {
  host_.Start();
  StartServer(TestEnv({{"MAX_DOWNLOAD_BYTES", "5000000"}}));
  const std::string id =
      Submit("Serial Number,Product Name,Input Image Urls\n1,P," + host_.Url("/huge.jpg") + "\n");
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  ASSERT_EQ(status["products"][0]["Image Errors"].size(), 1u);
  EXPECT_EQ(status["products"][0]["Image Errors"][0]["error"],
            "download failed: response larger than 5000000 bytes");
  EXPECT_LT(host_.huge_sent(), 64u << 20);            // cut off early, not at 1 GiB
  EXPECT_LT(PeakRssKib(server_->pid()), 256 * 1024);  // and nothing like it in memory
}

// A running request cancelled over HTTP: answered `cancelled` at once, no new download starts,
// what was done stays, and the webhook reports it once.
TEST_F(ServerTest, CancelStopsARunningRequestAndItsDownloads) {
  const std::string photo = MakeImage(TestImage::kJpegRgb, 200, 100);
  constexpr int kImages = 30;
  for (int i = 0; i < kImages; ++i) host_.Add("p" + std::to_string(i) + ".jpg", photo);
  host_.set_latency_ms(100);
  host_.Start();
  WebhookReceiver hook;
  StartServer(TestEnv({{"WORKERS", "2"}}));
  const std::string id = Submit(OneImagePerRow(kImages), hook.Url());
  ASSERT_TRUE(
      server_
          ->WaitForStatus(
              id, [](const json& s) { return s["progress"]["images_done"].get<int>() >= 2; })
          .is_object());
  httplib::Client client("127.0.0.1", server_->port());
  auto answer = client.Post("/api/p/requests/" + id + "/cancel", "", "application/json");
  const size_t downloads_at_answer = host_.Total();
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->status, 200) << answer->body;
  const json cancelled = json::parse(answer->body);
  EXPECT_EQ(cancelled["status"], "cancelled");
  const int done = cancelled["progress"]["images_done"].get<int>();
  EXPECT_GE(done, 2);
  EXPECT_EQ(done + cancelled["progress"]["images_failed"].get<int>(), kImages);

  const json settled = server_->WaitForWebhook(id);
  ASSERT_TRUE(settled.is_object());
  EXPECT_EQ(settled["webhook"]["attempts"], 1);
  ASSERT_EQ(hook.bodies().size(), 1u);
  EXPECT_EQ(json::parse(hook.bodies()[0]).size(), static_cast<size_t>(kImages));
  EXPECT_EQ(settled["progress"], cancelled["progress"]);  // nothing recorded after the answer
  // A worker that checked its lease just before the cancel committed may still start one
  // download; without the cancel all 30 would have been fetched.
  EXPECT_LE(host_.Total(), downloads_at_answer + 2);
  EXPECT_EQ(client.Post("/api/p/requests/" + id + "/cancel", "", "application/json")->status, 200);
}

// SIGTERM: stop accepting, let images in flight finish, exit 0; a restart completes the rest.
TEST_F(ServerTest, SigtermShutsDownGracefullyAndLosesNothing) {
  const std::string photo = MakeImage(TestImage::kJpegRgb, 200, 100);
  for (int i = 0; i < 20; ++i) host_.Add("p" + std::to_string(i) + ".jpg", photo);
  host_.set_latency_ms(100);
  host_.Start();
  StartServer(TestEnv({{"WORKERS", "2"}}));
  const std::string id = Submit(OneImagePerRow(20));
  ASSERT_TRUE(Eventually([&] { return host_.Total() >= 2; }));  // both workers downloading
  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(), 0) << server_->log();
  ASSERT_TRUE(server_->Start()) << server_->log();
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  EXPECT_EQ(status["progress"]["images_done"], 20);
  size_t fetches = 0;
  for (int i = 0; i < 20; ++i) fetches += host_.Count("/img/p" + std::to_string(i) + ".jpg");
  EXPECT_EQ(fetches, 20u);  // in-flight images were finished, not abandoned and redone
}

// SIGTERM with downloads that outlast the grace period: they are cancelled and handed back, the
// process still exits 0, and the next run does them (nothing failed, nothing lost).
TEST_F(ServerTest, SigtermHandsBackWhatOutlastsTheGracePeriod) {
  const std::string photo = MakeImage(TestImage::kJpegRgb, 200, 100);
  for (int i = 0; i < 3; ++i) host_.Add("p" + std::to_string(i) + ".jpg", photo);
  host_.set_latency_ms(6000);
  host_.Start();
  StartServer(TestEnv({{"SHUTDOWN_GRACE_MS", "200"}}));
  const std::string id = Submit(OneImagePerRow(3));
  ASSERT_TRUE(Eventually([&] { return host_.Total() == 3; }));  // all three downloads in flight
  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(std::chrono::seconds(4)), 0) << server_->log();  // not 6 s downloads

  host_.set_latency_ms(0);
  ASSERT_TRUE(server_->Start()) << server_->log();
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed");
  EXPECT_EQ(status["progress"]["images_done"], 3);
  EXPECT_EQ(status["progress"]["images_failed"], 0);
}

// A client that sends its request headers a byte at a time holds one HTTP thread; the others
// keep serving everyone else.
TEST_F(ServerTest, SlowClientsDoNotStarveOthers) {
  host_.Start();
  // More slow clients than ready threads: the pool must grow past them.
  StartServer(TestEnv({{"HTTP_THREADS", "4"}, {"MAX_CONNECTIONS", "64"}}));
  constexpr int kSlowClients = 8;
  std::vector<int> slow;
  for (int i = 0; i < kSlowClients; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string start = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    ASSERT_EQ(send(fd, start.data(), start.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(start.size()));
    slow.push_back(fd);
  }
  std::atomic<bool> done{false};
  std::thread drip([&] {
    for (int i = 0; i < 300 && !done; ++i) {  // at most 30 s
      for (int fd : slow) send(fd, "a", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(100ms);
    }
  });
  httplib::Client client("127.0.0.1", server_->port());
  client.set_read_timeout(5, 0);
  int served = 0;
  for (int i = 0; i < 50; ++i) {
    auto res = client.Get("/healthz");
    served += res && res->status == 200;
  }
  // The slow connections are still open: nothing was served by closing them.
  bool still_open = true;
  for (int fd : slow) still_open = still_open && send(fd, "a", 1, MSG_NOSIGNAL) == 1;
  done = true;
  drip.join();
  for (int fd : slow) close(fd);
  EXPECT_EQ(served, 50);
  EXPECT_TRUE(still_open);
}

TEST_F(ServerTest, EndlessHeadersAreRefusedWithoutMemoryGrowth) {
  host_.Start();
  StartServer(TestEnv({{"MAX_HEADER_BYTES", "16384"}}));
  const long rss_before = PeakRssKib(server_->pid());
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  // Header lines each under cpp-httplib's 8 KiB line limit, 60 MB of them: a head without end.
  const std::string start = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(send(fd, start.data(), start.size(), MSG_NOSIGNAL), static_cast<ssize_t>(start.size()));
  const std::string line = "X-A: " + std::string(1000, 'a') + "\r\n";
  size_t sent = start.size();
  for (int i = 0; i < 60'000; ++i) {
    if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
      break;
    sent += line.size();
  }
  const std::string answer = ReadAll(fd);
  close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 431 ", 0), 0u) << answer.substr(0, 200);
  EXPECT_NE(answer.find(R"("error")"), std::string::npos) << answer;
  EXPECT_LT(sent, 60'000'000u) << "the server read the whole 60 MB";
  EXPECT_LT(PeakRssKib(server_->pid()) - rss_before, 16 * 1024) << "KiB of peak memory grown";
  // A normal request with headers under the limit is still served.
  httplib::Client client("127.0.0.1", server_->port());
  auto res = client.Get("/healthz", {{"X-Long", std::string(8000, 'b')}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

// SIGTERM with a client keeping its connection open between requests: that connection is closed
// at once, not waited out to the keep-alive timeout (2 s).
TEST_F(ServerTest, SigtermClosesIdleKeptAliveConnectionsAtOnce) {
  StartServer(TestEnv({}));
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  const std::string get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, get.data(), get.size(), MSG_NOSIGNAL), static_cast<ssize_t>(get.size()));
  std::string buffered;
  const RawResponse r = ReadResponse(fd, buffered);
  ASSERT_EQ(r.head.rfind("HTTP/1.1 200 ", 0), 0u) << r.head;

  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(std::chrono::seconds(1)), 0) << server_->log();
  EXPECT_EQ(ReadAll(fd), "");  // closed by the server, without a word
  close(fd);
}

// A finished status is sent from memory (a shared body, not a copy): complete responses one after
// another on a keep-alive connection, for GET and HEAD. Byte ranges of it are not served (the
// whole status is, as HTTP allows), however odd.
TEST_F(ServerTest, FinishedStatusFromMemoryIsWholeOnAKeptAliveConnection) {
  StartServer(TestEnv({}));
  const std::string id = SubmitPassThrough(300);
  const std::string path = "/status/" + id + "/";
  httplib::Client client("127.0.0.1", server_->port());
  const auto reference = client.Get(path);  // also keeps the finished body in memory
  ASSERT_TRUE(reference);
  ASSERT_GT(reference->body.size(), 30'000u);

  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  const std::string get = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string head = "HEAD " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  const auto range = [&](const std::string& bytes) {
    return "GET " + path + " HTTP/1.1\r\nHost: x\r\nRange: bytes=" + bytes + "\r\n\r\n";
  };
  // Pipelined, in one send.
  const std::string requests =
      get + get + head + range("10-19") + range("999999-") + range("0-99999999") + get;
  ASSERT_EQ(send(fd, requests.data(), requests.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(requests.size()));
  std::string buffered;
  const std::string length = "Content-Length: " + std::to_string(reference->body.size()) + "\r\n";
  for (int i = 0; i < 2; ++i) {
    const RawResponse r = ReadResponse(fd, buffered);
    EXPECT_EQ(r.head.rfind("HTTP/1.1 200 ", 0), 0u) << r.head;
    EXPECT_NE(r.head.find(length), std::string::npos) << r.head;
    EXPECT_EQ(r.body, reference->body);
  }
  const RawResponse h = ReadResponse(fd, buffered, /*head_only=*/true);
  EXPECT_EQ(h.head.rfind("HTTP/1.1 200 ", 0), 0u) << h.head;
  EXPECT_NE(h.head.find(length), std::string::npos) << h.head;
  for (int i = 0; i < 3; ++i) {
    const RawResponse whole = ReadResponse(fd, buffered);
    EXPECT_EQ(whole.head.rfind("HTTP/1.1 200 ", 0), 0u) << whole.head;
    EXPECT_EQ(whole.body, reference->body);
  }
  const RawResponse last = ReadResponse(fd, buffered);
  EXPECT_EQ(last.body, reference->body);
  close(fd);
}

// httplib reads the body of a POST, PUT, PATCH or DELETE only. Left unread, a GET's body would be
// taken for the next request on the connection (request smuggling, behind a proxy that forwards
// it): such a request is refused and its connection closed, with a length or chunked.
TEST_F(ServerTest, AGetWithABodyIsRefusedAndItsConnectionClosed) {
  StartServer(TestEnv({}));
  const std::string smuggled = "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string with_length =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(smuggled.size()) +
      "\r\n\r\n" + smuggled;
  const std::string chunked =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
      std::to_string(smuggled.size()) + "\r\n" + smuggled + "\r\n0\r\n\r\n";
  for (const std::string& request : {with_length, chunked}) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0);
    const std::string requests = request + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send(fd, requests.data(), requests.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(requests.size()));
    const std::string answer = ReadAll(fd);  // until the server closes
    close(fd);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << answer;
    EXPECT_NE(answer.find("Connection: close\r\n"), std::string::npos) << answer;
    EXPECT_NE(answer.find(R"({"error":"GET requests cannot have a body"})"), std::string::npos)
        << answer;
    EXPECT_EQ(answer.find("HTTP/1.1", 1), std::string::npos) << "more than one answer: " << answer;
  }
  // An empty body is no body: the connection goes on.
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  const std::string requests =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
      "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, requests.data(), requests.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(requests.size()));
  std::string buffered;
  for (int i = 0; i < 3; ++i) {
    const RawResponse r = ReadResponse(fd, buffered, /*head_only=*/i == 1);
    EXPECT_EQ(r.head.rfind("HTTP/1.1 200 ", 0), 0u) << "response " << i << ": " << r.head;
  }
  close(fd);
}

// A client that asks before sending its body (curl does for large uploads) gets its 100 Continue
// at once, not after a timeout: nothing written is held back while the server waits to read.
TEST_F(ServerTest, ExpectContinueIsAnsweredBeforeTheBodyIsRead) {
  StartServer(TestEnv({}));
  const std::string csv = "Serial Number,Product Name,Input Image Urls\n1,P1,x\n";
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=\"csv_file\"; "
      "filename=\"p.csv\"\r\nContent-Type: text/csv\r\n\r\n" +
      csv + "\r\n--b--\r\n";
  const std::string head =
      "POST /api/p/upload/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1) << "no 100 Continue within 2 s";
  std::string buffered;
  const RawResponse go_on = ReadResponse(fd, buffered);
  EXPECT_EQ(go_on.head.rfind("HTTP/1.1 100 Continue", 0), 0u) << go_on.head;
  ASSERT_EQ(send(fd, body.data(), body.size(), MSG_NOSIGNAL), static_cast<ssize_t>(body.size()));
  const RawResponse accepted = ReadResponse(fd, buffered);
  close(fd);
  EXPECT_EQ(accepted.head.rfind("HTTP/1.1 202 ", 0), 0u) << accepted.head << accepted.body;
}

TEST_F(ServerTest, DrippedHeadersGet408AtTheDeadline) {
  host_.Start();
  StartServer(TestEnv({{"HEADER_TIMEOUT_MS", "1000"}}));
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  const std::string start = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  ASSERT_EQ(send(fd, start.data(), start.size(), MSG_NOSIGNAL), static_cast<ssize_t>(start.size()));
  // A byte every 100 ms keeps every single read alive; at most 10 s of it.
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    for (int i = 0; i < 100 && !stop; ++i) {
      if (send(fd, "a", 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(100ms);
    }
  });
  const std::string answer = ReadAll(fd);
  stop = true;
  drip.join();
  close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 408 ", 0), 0u) << answer.substr(0, 200);
  EXPECT_NE(answer.find("Request header not received in time"), std::string::npos) << answer;
}

TEST_F(ServerTest, HttpErrorsAreJson) {
  host_.Start();
  StartServer(TestEnv({{"MAX_CSV_BYTES", "2000"}}));
  httplib::Client client("127.0.0.1", server_->port());

  auto not_multipart = client.Post("/api/p/upload/", "a=b", "application/x-www-form-urlencoded");
  ASSERT_TRUE(not_multipart);
  EXPECT_EQ(not_multipart->status, 400);
  EXPECT_EQ(json::parse(not_multipart->body), json({{"error", "No CSV file provided"}}));

  auto wrong_part = client.Post(
      "/api/p/upload/", httplib::MultipartFormDataItems{{"file", "x", "x.csv", "text/csv"}});
  ASSERT_TRUE(wrong_part);
  EXPECT_EQ(json::parse(wrong_part->body), json({{"error", "No CSV file provided"}}));

  // Too large for the CSV limit but within the body limit: the API's own 413.
  auto big_csv =
      server_->Upload("Serial Number,Product Name,Input Image Urls\n" + std::string(3000, 'x'));
  ASSERT_TRUE(big_csv);
  EXPECT_EQ(big_csv->status, 413);
  EXPECT_TRUE(json::parse(big_csv->body)["error"].is_string());

  // Larger than the whole body limit: refused by the transport, still as JSON.
  auto huge = client.Post("/api/p/upload/", std::string(200'000, 'x'), "text/csv");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  EXPECT_TRUE(json::parse(huge->body, nullptr, false)["error"].is_string()) << huge->body;

  auto invalid = server_->Upload("Serial Number,Product Name\n1,a\n");
  ASSERT_TRUE(invalid);
  EXPECT_EQ(invalid->status, 400);
  json body = json::parse(invalid->body);
  EXPECT_EQ(body["error"], "Invalid CSV format");
  EXPECT_EQ(body["details"][0]["column"], "Input Image Urls");

  for (const char* path : {"/status/00000000-0000-4000-8000-000000000000/", "/status/x/",
                           "/media/../imgproc.db", "/media/%2e%2e/imgproc.db", "/nope"}) {
    auto res = client.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_TRUE(json::parse(res->body, nullptr, false)["error"].is_string()) << path;
  }
  // Every refusal is counted, the transport's 413 too.
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  for (const char* line : {"imgproc_uploads_rejected_total{reason=\"too_large\"} 2\n",
                           "imgproc_uploads_rejected_total{reason=\"no_file\"} 2\n",
                           "imgproc_uploads_rejected_total{reason=\"invalid_csv\"} 1\n",
                           "imgproc_uploads_accepted_total 0\n"}) {
    EXPECT_NE(metrics->body.find(line), std::string::npos) << line << metrics->body;
  }
  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(), 0);
}

// Tiny images teach the pixel budget a tiny estimate, so the large ones after them all start
// downloading at once; each is held at its header until its real size fits. The first of them
// sends its header before the others (20 against 50 ms) and the rest 300 ms later, so those held
// behind it past half their timeout (200 of 400 ms) are dropped and downloaded again. Nothing
// fails meanwhile.
TEST_F(ServerTest, LargeImagesAfterSmallOnesAreHeldAtTheirHeaderUntilTheyFit) {
  constexpr int kTiny = 16;
  constexpr int kLarge = 12;
  const auto name = [&](int i) { return (i < kTiny ? "t" : "l") + std::to_string(i) + ".jpg"; };
  const std::string tiny = MakeImage(TestImage::kJpegRgb, 32, 32);
  const std::string large = MakeImage(TestImage::kJpegRgb, 1200, 900);
  for (int i = 0; i < kTiny + kLarge; ++i) host_.Add(name(i), i < kTiny ? tiny : large);
  host_.set_latency_ms(50);
  host_.Start();
  std::string csv = "Serial Number,Product Name,Input Image Urls\n";
  for (int i = 0; i < kTiny + kLarge; ++i) {
    csv += std::to_string(i + 1) + ",P," + host_.Url((i == kTiny ? "/slow/" : "/img/") + name(i)) +
           "\n";
  }
  // One 1.08 MP image fits at a time.
  // Without the image cache: every large image is its own download and compression here (their
  // bytes are the same, which the cache would store once).
  StartServer(TestEnv({{"PIXEL_BUDGET", "1200000"},
                       {"IMAGE_CACHE", "false"},
                       {"CPU_THREADS", "1"},
                       {"FETCH_TIMEOUT_MS", "400"},
                       {"LOG_LEVEL", "info"}}));
  const std::string id = Submit(csv);
  ASSERT_FALSE(id.empty());
  const json status = server_->WaitForCompletion(id, 60s);
  ASSERT_EQ(status["status"], "completed") << server_->log();
  EXPECT_EQ(status["progress"]["images_done"], kTiny + kLarge) << status.dump();
  EXPECT_EQ(status["progress"]["images_failed"], 0);
  for (const auto& p : status["products"]) {
    auto res = server_->Get(p["Output Image Urls"].get<std::string>());
    ASSERT_TRUE(res);
    const auto info = InspectJpeg(res->body);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->width, p["Serial Number"].get<int>() <= kTiny ? 32 : 1200);
  }

  httplib::Client client("127.0.0.1", server_->port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  const auto counter = [&](const std::string& outcome) {
    const std::string key = "imgproc_downloads_held_total{outcome=\"" + outcome + "\"} ";
    const size_t at = metrics->body.find(key);
    return at == std::string::npos ? -1 : std::stoi(metrics->body.substr(at + key.size()));
  };
  EXPECT_GE(counter("resumed"), 1) << metrics->body;
  EXPECT_GE(counter("abandoned"), 1) << metrics->body;
  // An abandoned download is made again: more requests than images, for the large ones only.
  for (int i = 0; i < kTiny; ++i) EXPECT_EQ(host_.Count("/img/" + name(i)), 1u);
  size_t large_requests = 0;
  for (int i = kTiny; i < kTiny + kLarge; ++i) {
    large_requests += host_.Count("/img/" + name(i)) + host_.Count("/slow/" + name(i));
  }
  EXPECT_EQ(large_requests, static_cast<size_t>(kLarge + counter("abandoned")));
}

// Refused for its size as soon as its header is in: the rest is never fetched.
TEST_F(ServerTest, AnImageOverThePixelLimitIsRefusedAtItsHeader) {
  const std::string large = MakeImage(TestImage::kJpegRgb, 1200, 900);
  host_.Add("large.jpg", large);
  host_.Start();
  StartServer(TestEnv({{"MAX_IMAGE_PIXELS", "500000"}}));
  const std::string id = Submit("Serial Number,Product Name,Input Image Urls\n1,P," +
                                host_.Url("/slow/large.jpg") + "\n");
  ASSERT_FALSE(id.empty());
  const json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed") << server_->log();
  EXPECT_EQ(status["products"][0]["Image Errors"][0]["error"],
            "image too large: 1200x900 pixels (limit 500000)");
  EXPECT_EQ(status["products"][0]["Image Errors"][0]["attempts"], 1);  // final, not retried
  EXPECT_EQ(host_.Count("/slow/large.jpg"), 1u);
  EXPECT_LT(host_.slow_sent(), large.size());
}

TEST_F(ServerTest, MetricsReadinessAndJsonLogsOverHttp) {
  host_.Add("p0.jpg", MakeImage(TestImage::kJpegRgb, 200, 100));
  host_.Add("p1.jpg", MakeImage(TestImage::kPngRgb, 210, 110));
  host_.Start();
  StartServer(TestEnv({{"LOG_FORMAT", "json"}, {"LOG_LEVEL", "info"}}));
  // p2.jpg is not on the host: a 404, failed for good.
  const std::string id = Submit(OneImagePerRow(3));
  ASSERT_FALSE(id.empty());
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed") << server_->log();

  httplib::Client client("127.0.0.1", server_->port());
  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(json::parse(ready->body), json({{"status", "ready"}}));

  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const int64_t in_bytes = static_cast<int64_t>(MakeImage(TestImage::kJpegRgb, 200, 100).size() +
                                                MakeImage(TestImage::kPngRgb, 210, 110).size());
  int64_t out_bytes = 0;
  for (const auto& p : status["products"]) {
    for (const auto& z : p["Image Sizes"]) out_bytes += z["output_bytes"].get<int64_t>();
  }
  for (const std::string& line : {
           std::string("imgproc_uploads_accepted_total 1\n"),
           std::string("imgproc_images_total{outcome=\"done\"} 2\n"),
           std::string("imgproc_images_total{outcome=\"failed\"} 1\n"),
           std::string("imgproc_images_total{outcome=\"retried\"} 0\n"),
           "imgproc_image_bytes_in_total " + std::to_string(in_bytes) + "\n",
           "imgproc_image_bytes_out_total " + std::to_string(out_bytes) + "\n",
           std::string("imgproc_stage_duration_seconds_count{stage=\"download\"} 3\n"),
           std::string("imgproc_stage_duration_seconds_count{stage=\"compress\"} 2\n"),
           std::string("imgproc_stage_duration_seconds_count{stage=\"upload\"} 2\n"),
           std::string("imgproc_queue_depth 0\n"),
       }) {
    EXPECT_NE(metrics->body.find(line), std::string::npos) << line << metrics->body;
  }

  // LOG_FORMAT=json: every line is a JSON object; lines about the request carry its id.
  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(), 0);
  std::istringstream log(server_->log());
  int lines = 0;
  int about_request = 0;
  bool accepted = false;
  bool failure = false;
  for (std::string line; std::getline(log, line);) {
    if (line.empty()) continue;
    ++lines;
    json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    ASSERT_TRUE(j["ts"].is_string() && j["level"].is_string() && j["msg"].is_string()) << line;
    if (j.value("request_id", "") != id) continue;
    ++about_request;
    const std::string msg = j["msg"];
    accepted = accepted || msg.find("accepted 3 products") != std::string::npos;
    failure = failure || msg.find("HTTP 404") != std::string::npos;
  }
  EXPECT_GT(lines, 2);
  EXPECT_TRUE(accepted) << server_->log();
  EXPECT_TRUE(failure) << server_->log();
  EXPECT_GE(about_request, 2);
}

// Reads which images the database records as finished, straight from the SQLite file.
std::set<std::string> FinishedImages(const std::filesystem::path& db_path) {
  std::set<std::string> done;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "SELECT url FROM images WHERE state = 'done'", -1, &stmt, nullptr);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      done.insert(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return done;
}

// A cancel is durable once answered: the service killed right after the answer comes back with
// the request cancelled as the answer showed it, and starts none of its images again.
TEST_F(ServerTest, ACancelSurvivesKillDashNineRightAfterItsAnswer) {
  const std::string photo = MakeImage(TestImage::kJpegRgb, 200, 100);
  for (int i = 0; i < 30; ++i) host_.Add("p" + std::to_string(i) + ".jpg", photo);
  host_.set_latency_ms(100);
  host_.Start();
  StartServer(TestEnv({{"WORKERS", "2"}}));
  const std::string id = Submit(OneImagePerRow(30));
  server_->WaitForStatus(
      id, [](const json& s) { return s["progress"]["images_done"].get<int>() >= 2; }, 10s);
  httplib::Client client("127.0.0.1", server_->port());
  auto answer = client.Post("/api/p/requests/" + id + "/cancel", "", "application/json");
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->status, 200);
  const json cancelled = json::parse(answer->body);
  server_->Signal(SIGKILL);
  ASSERT_NE(server_->Wait(), -1);
  const size_t downloads = host_.Total();

  ASSERT_TRUE(server_->Start()) << server_->log();
  // A request after it is done once the restarted workers have looked at the queue.
  const std::string later = Submit(OneImagePerRow(1));
  ASSERT_EQ(server_->WaitForCompletion(later)["status"], "completed");
  const json status = server_->Status(id);
  EXPECT_EQ(status["status"], "cancelled");
  EXPECT_EQ(status["progress"], cancelled["progress"]);
  EXPECT_EQ(host_.Total(), downloads + 1);  // only the later request's image
}

// A retry is durable once answered: killed right after it, the service comes back and completes
// the request's failed images (here those its cancel left undone).
TEST_F(ServerTest, ARetrySurvivesKillDashNineRightAfterItsAnswer) {
  const std::string photo = MakeImage(TestImage::kJpegRgb, 200, 100);
  for (int i = 0; i < 20; ++i) host_.Add("p" + std::to_string(i) + ".jpg", photo);
  host_.set_latency_ms(50);
  host_.Start();
  WebhookReceiver hook;
  StartServer(TestEnv({{"WORKERS", "2"}, {"WEBHOOK_SECRET", kWebhookSecret}}));
  const std::string id = Submit(OneImagePerRow(20), hook.Url());
  server_->WaitForStatus(
      id, [](const json& s) { return s["progress"]["images_done"].get<int>() >= 2; }, 10s);
  httplib::Client client("127.0.0.1", server_->port());
  ASSERT_EQ(client.Post("/api/p/requests/" + id + "/cancel", "", "application/json")->status, 200);
  auto answer = client.Post("/api/p/requests/" + id + "/retry", "", "application/json");
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->status, 200) << answer->body;
  EXPECT_EQ(json::parse(answer->body)["status"], "processing");
  server_->Signal(SIGKILL);
  ASSERT_NE(server_->Wait(), -1);

  ASSERT_TRUE(server_->Start()) << server_->log();
  const json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed") << status.dump(2);
  EXPECT_EQ(status["progress"]["images_done"], 20);
  EXPECT_EQ(status["progress"]["images_failed"], 0);
  for (const auto& p : status["products"]) EXPECT_NE(p["Output Image Urls"], "");
  // The completion of the retried round is delivered with a webhook-id of its own (the cancel's,
  // "msg_<id>", went out only if it was sent before the retry).
  const auto delivered = [&] {
    const auto ids = hook.ids();
    return std::find(ids.begin(), ids.end(), "msg_" + id + "_1") != ids.end();
  };
  ASSERT_TRUE(Eventually(delivered, 10s));
  for (const std::string& seen : hook.ids()) {
    EXPECT_TRUE(seen == "msg_" + id || seen == "msg_" + id + "_1") << seen;
  }
}

TEST_F(ServerTest, KillDashNineLosesNothing) {
  constexpr int kImages = 40;
  const std::string photo = MakeImage(TestImage::kJpegRgb, 200, 100);
  for (int i = 0; i < kImages; ++i) host_.Add("p" + std::to_string(i) + ".jpg", photo);
  host_.set_latency_ms(100);
  host_.Start();
  WebhookReceiver hook;
  StartServer(TestEnv({{"WORKERS", "4"}}));

  const std::string id = Submit(OneImagePerRow(kImages), hook.Url());
  // Wait until some, not all, images are done, then kill without warning.
  server_->WaitForStatus(
      id, [](const json& s) { return s["progress"]["images_done"].get<int>() >= 8; }, 4s);
  server_->Signal(SIGKILL);
  ASSERT_NE(server_->Wait(), -1);
  const auto finished = FinishedImages(dir_.path() / "imgproc.db");
  ASSERT_GE(finished.size(), 8u);
  ASSERT_LT(finished.size(), static_cast<size_t>(kImages));
  std::map<std::string, size_t> fetched_before;
  for (int i = 0; i < kImages; ++i) {
    const std::string path = "/img/p" + std::to_string(i) + ".jpg";
    fetched_before[path] = host_.Count(path);
  }

  ASSERT_TRUE(server_->Start()) << server_->log();
  json status = server_->WaitForCompletion(id);
  ASSERT_EQ(status["status"], "completed") << status.dump(2);
  EXPECT_EQ(status["progress"]["images_done"], kImages);
  for (int i = 0; i < kImages; ++i) {
    const std::string path = "/img/p" + std::to_string(i) + ".jpg";
    const auto& p = status["products"][static_cast<size_t>(i)];
    // The same photo at every URL: one object, before the kill and after.
    EXPECT_EQ(p["Output Image Urls"], status["products"][0]["Output Image Urls"]);
    if (finished.count(host_.Url(path))) {
      EXPECT_EQ(host_.Count(path), fetched_before[path]) << path << " was done, yet redone";
    } else {
      EXPECT_EQ(host_.Count(path), fetched_before[path] + 1) << path << " not done exactly once";
    }
  }
  const json settled = server_->WaitForWebhook(id);  // after one attempt, not one per run
  ASSERT_TRUE(settled.is_object());
  EXPECT_EQ(settled["webhook"]["attempts"], 1);
  ASSERT_EQ(hook.bodies().size(), 1u);
  EXPECT_EQ(json::parse(hook.bodies()[0]).size(), static_cast<size_t>(kImages));
}

}  // namespace
}  // namespace imgproc::testing
