// Scale-out tests: several real imgproc processes (API only, workers only) sharing the real
// PostgreSQL and Redis servers that scripts/services.sh starts, with faults injected in the middle
// of a request: a worker killed, Redis restarted without persistence, PostgreSQL crash-restarted.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <set>
#include <thread>

#include "process_client.h"
#include "services.h"
#include "test_hosts.h"
#include "test_images.h"

namespace imgproc::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class ScaleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    IMGPROC_NEED_SERVICE(PostgresAdminUrl(), "PostgreSQL (IMGPROC_TEST_PG_URL)");
    IMGPROC_NEED_SERVICE(RedisUrl(), "Redis (IMGPROC_TEST_REDIS_URL)");
    db_ = std::make_unique<TempPostgresDatabase>();
    ASSERT_TRUE(db_->ok()) << db_->error();
    // Every test starts from an empty broker (the tests run one at a time: RUN_SERIAL).
    ASSERT_TRUE(ServiceCommand("flush-redis"));
  }

  // The environment every process of the deployment shares.
  std::map<std::string, std::string> Env(bool with_redis) {
    std::map<std::string, std::string> env = {
        {"DATABASE_URL", db_->url()},
        {"DATA_DIR", shared_.path().string()},  // local storage on a disk they all see
        {"ALLOW_PRIVATE_URLS", "1"},
        {"RETRY_BASE_MS", "20"},
        {"WEBHOOK_RETRY_SCHEDULE", "200ms,200ms,500ms,1s,2s"},
        {"LEASE_MS", "3000"},
        {"QUEUE_SWEEP_MS", "200"},
        {"WORKERS", "4"},
        {"CPU_THREADS", "1"},
        // Off unless a test is about it: the others count one file per image (their images
        // share their bytes, which the cache stores once).
        {"IMAGE_CACHE", image_cache_ ? "true" : "false"},
        {"LOG_LEVEL", "info"}};
    if (with_redis) env["REDIS_URL"] = *RedisUrl();
    return env;
  }

  ImgprocProcess& StartApi(bool with_redis) {
    auto env = Env(with_redis);
    const std::string tag = "api" + std::to_string(apis_.size());
    dirs_.push_back(std::make_unique<TempDir>(tag));
    apis_.push_back(std::make_unique<ImgprocProcess>(
        dirs_.back()->path(), env, std::vector<std::string>{"serve", "--no-worker"}));
    EXPECT_TRUE(apis_.back()->Start()) << apis_.back()->log();
    return *apis_.back();
  }

  ImgprocProcess& StartWorker(bool with_redis) {
    auto env = Env(with_redis);
    env["PUBLIC_BASE_URL"] = apis_.front()->BaseUrl();  // media is served by the API
    dirs_.push_back(std::make_unique<TempDir>("worker" + std::to_string(workers_.size())));
    workers_.push_back(std::make_unique<ImgprocProcess>(dirs_.back()->path(), env,
                                                        std::vector<std::string>{"worker"}));
    EXPECT_TRUE(workers_.back()->Start()) << workers_.back()->log();
    return *workers_.back();
  }

  static std::string ImageName(int row, int i) {
    return "r" + std::to_string(row) + "i" + std::to_string(i) + ".jpg";
  }

  // Starts the image host with `rows` x 4 distinct images, each served after `latency_ms`, and
  // returns a CSV of `rows` products listing them.
  std::string StartHostAndMakeCsv(int rows, int latency_ms) {
    const std::string photo = MakeImage(TestImage::kJpegRgb, 96, 64);
    for (int r = 0; r < rows; ++r) {
      for (int i = 0; i < 4; ++i) host_.Add(ImageName(r, i), photo);
    }
    host_.set_latency_ms(latency_ms);
    host_.Start();
    std::string csv = "Serial Number,Product Name,Input Image Urls\n";
    for (int r = 0; r < rows; ++r) {
      csv += std::to_string(r + 1) + ",P" + std::to_string(r) + ",\"";
      for (int i = 0; i < 4; ++i) csv += (i ? "," : "") + host_.Url("/img/" + ImageName(r, i));
      csv += "\"\n";
    }
    return csv;
  }

  std::string Submit(ImgprocProcess& api, const std::string& csv, const std::string& hook) {
    auto res = api.Upload(csv, hook);
    EXPECT_TRUE(res);
    if (!res) return "";
    EXPECT_EQ(res->status, 202) << res->body;
    return json::parse(res->body, nullptr, false).value("request_id", "");
  }

  // The request's images_done, or -1 when the status cannot be read.
  static int DoneCount(ImgprocProcess& api, const std::string& id) {
    json s = api.Status(id);
    return s.is_object() ? s["progress"]["images_done"].get<int>() : -1;
  }

  // Waits until `images_done` reaches `n` (or 60 s pass).
  static void WaitForDone(ImgprocProcess& api, const std::string& id, int n) {
    const json s = api.WaitForStatus(
        id, [n](const json& s) { return s["progress"]["images_done"].get<int>() >= n; });
    if (!s.is_object() || s["progress"]["images_done"].get<int>() < n) {
      ADD_FAILURE() << "images_done never reached " << n;
    }
  }

  // Every image done exactly once: the status says so, every output is a distinct file in the
  // shared media folder, in input order, and one webhook (one webhook-id) reports it.
  void ExpectCompletedOnce(ImgprocProcess& api, const json& status, int rows,
                           WebhookReceiver& hook) {
    ASSERT_EQ(status["status"], "completed") << status.dump(2).substr(0, 2000) << Logs();
    EXPECT_EQ(status["progress"]["images_done"], rows * 4);
    ASSERT_EQ(status["progress"]["images_failed"], 0) << status["products"][0].dump(2) << Logs();
    std::set<std::string> outputs;
    for (int r = 0; r < rows; ++r) {
      const auto& p = status["products"][static_cast<size_t>(r)];
      const std::string out = p["Output Image Urls"].get<std::string>();
      size_t start = 0;
      for (int i = 0; i < 4; ++i) {
        const size_t comma = out.find(',', start);
        const std::string url = out.substr(start, comma - start);
        start = comma + 1;
        const std::string want = "/media/" + status["request_id"].get<std::string>() + "/" +
                                 std::to_string(r + 1) + "_" + std::to_string(i) + ".jpg";
        EXPECT_NE(url.find(want), std::string::npos) << url;
        EXPECT_TRUE(std::filesystem::exists(shared_.path() / want.substr(1))) << want;
        outputs.insert(url);
      }
    }
    EXPECT_EQ(outputs.size(), static_cast<size_t>(rows * 4));
    // Settled after one attempt: a second completion would have made another.
    const json settled = api.WaitForWebhook(status["request_id"].get<std::string>());
    ASSERT_TRUE(settled.is_object());
    EXPECT_EQ(settled["webhook"]["state"], "delivered");
    EXPECT_EQ(settled["webhook"]["attempts"], 1);
    ASSERT_EQ(hook.bodies().size(), 1u);
    EXPECT_EQ(json::parse(hook.bodies()[0]).size(), static_cast<size_t>(rows));
    const auto ids = hook.ids();  // of every attempt
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
  }

  // The tail of every process's log, for failures.
  std::string Logs() const {
    std::string out;
    for (const auto* group : {&apis_, &workers_}) {
      for (const auto& p : *group) {
        const std::string log = p->log();
        out += "\n--- " + p->data_dir().string() + "\n" +
               log.substr(log.size() > 3000 ? log.size() - 3000 : 0);
      }
    }
    return out;
  }

  // How many downloads the host served beyond one per image: work redone after a fault.
  size_t Redone(int rows) const { return host_.Total() - static_cast<size_t>(rows * 4); }

  bool image_cache_ = false;
  std::unique_ptr<TempPostgresDatabase> db_;
  TempDir shared_{"shared"};
  ImageHost host_;
  std::vector<std::unique_ptr<TempDir>> dirs_;
  std::vector<std::unique_ptr<ImgprocProcess>> apis_;
  std::vector<std::unique_ptr<ImgprocProcess>> workers_;
};

// Issue 21's race: three worker processes (four threads each) take 160 URLs that all send the
// same bytes, at once. One of them compresses and stores it; every other image waits for that
// output and reuses it: one object in the storage, one compression (every image done is either
// reused or the one made). A re-import of the same CSV then makes and stores nothing.
TEST_F(ScaleTest, ManyWorkerProcessesStoreTheSameContentOnce) {
  constexpr int kRows = 40;  // 160 URLs, one photo
  image_cache_ = true;
  const std::string csv = StartHostAndMakeCsv(kRows, /*latency_ms=*/20);
  WebhookReceiver hook;
  ImgprocProcess& api = StartApi(/*with_redis=*/true);
  for (int i = 0; i < 3; ++i) StartWorker(/*with_redis=*/true);

  const std::string id = Submit(api, csv, hook.Url());
  json status = api.WaitForCompletion(id, 120s);
  ASSERT_EQ(status["status"], "completed") << Logs();
  EXPECT_EQ(status["progress"]["images_done"], kRows * 4);
  EXPECT_EQ(status["progress"]["images_reused"], kRows * 4 - 1) << "more than one compression";
  const auto objects = shared_.path() / "media" / "objects";
  ASSERT_TRUE(std::filesystem::exists(objects));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(objects), {}), 1);
  std::set<std::string> outputs;
  for (const auto& p : status["products"])
    outputs.insert(p["Output Image Urls"].get<std::string>());
  EXPECT_EQ(outputs.size(), 1u);  // every product: four times the one object

  const size_t downloads = host_.Total();
  const std::string again = Submit(api, csv, "");
  status = api.WaitForCompletion(again, 120s);
  ASSERT_EQ(status["status"], "completed") << Logs();
  EXPECT_EQ(status["progress"]["images_reused"], kRows * 4);             // nothing made or stored
  EXPECT_EQ(host_.Total() - downloads, static_cast<size_t>(kRows * 4));  // the host has no ETag
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(objects), {}), 1);
}

TEST_F(ScaleTest, AKilledWorkersImagesAreTakenOverAndDoneOnce) {
  constexpr int kRows = 60;  // 240 images
  const std::string csv = StartHostAndMakeCsv(kRows, /*latency_ms=*/40);
  WebhookReceiver hook;
  ImgprocProcess& api = StartApi(/*with_redis=*/true);
  for (int i = 0; i < 3; ++i) StartWorker(/*with_redis=*/true);

  const auto start = std::chrono::steady_clock::now();
  const std::string id = Submit(api, csv, hook.Url());
  WaitForDone(api, id, 60);
  workers_[1]->Signal(SIGKILL);
  ASSERT_NE(workers_[1]->Wait(), -1);
  const auto killed = std::chrono::steady_clock::now();
  const int done_at_kill = DoneCount(api, id);

  json status = api.WaitForCompletion(id, 120s);
  const auto end = std::chrono::steady_clock::now();
  ExpectCompletedOnce(api, status, kRows, hook);
  EXPECT_LE(Redone(kRows), 4u * 2) << "at most the killed worker's images in flight are redone";
  std::cout << "[ measured ] 240 images, 3 workers, one SIGKILLed at " << done_at_kill
            << " done: completed "
            << std::chrono::duration_cast<std::chrono::milliseconds>(end - killed).count()
            << " ms after the kill ("
            << std::chrono::duration_cast<std::chrono::milliseconds>(end - start).count()
            << " ms in all), " << Redone(kRows) << " download(s) redone\n";
}

TEST_F(ScaleTest, RedisRestartWithoutPersistenceLosesNothing) {
  constexpr int kRows = 40;  // 160 images
  const std::string csv = StartHostAndMakeCsv(kRows, /*latency_ms=*/40);
  WebhookReceiver hook;
  ImgprocProcess& api = StartApi(/*with_redis=*/true);
  for (int i = 0; i < 2; ++i) StartWorker(/*with_redis=*/true);

  const std::string id = Submit(api, csv, hook.Url());
  WaitForDone(api, id, 30);
  const auto restart = std::chrono::steady_clock::now();
  ASSERT_TRUE(ServiceCommand("restart-redis"));
  const int done_after = DoneCount(api, id);
  json status = api.WaitForCompletion(id, 120s);
  const auto end = std::chrono::steady_clock::now();
  ExpectCompletedOnce(api, status, kRows, hook);
  std::cout << "[ measured ] 160 images, Redis restarted (data lost) with " << done_after
            << " done: completed "
            << std::chrono::duration_cast<std::chrono::milliseconds>(end - restart).count()
            << " ms after the restart began, " << Redone(kRows) << " download(s) redone\n";
  for (auto& w : workers_) EXPECT_TRUE(w->running());
}

TEST_F(ScaleTest, PostgresRestartLosesNothing) {
  constexpr int kRows = 40;  // 160 images
  const std::string csv = StartHostAndMakeCsv(kRows, /*latency_ms=*/40);
  WebhookReceiver hook;
  ImgprocProcess& api = StartApi(/*with_redis=*/false);  // PostgreSQL is the queue too
  for (int i = 0; i < 2; ++i) StartWorker(/*with_redis=*/false);

  const std::string id = Submit(api, csv, hook.Url());
  WaitForDone(api, id, 30);
  const auto restart = std::chrono::steady_clock::now();
  ASSERT_TRUE(ServiceCommand("restart-postgres"));
  json status = api.WaitForCompletion(id, 120s);
  const auto end = std::chrono::steady_clock::now();
  ExpectCompletedOnce(api, status, kRows, hook);
  std::cout << "[ measured ] 160 images, PostgreSQL crash-restarted mid-request: completed "
            << std::chrono::duration_cast<std::chrono::milliseconds>(end - restart).count()
            << " ms after the restart began, " << Redone(kRows) << " download(s) redone\n";
  for (auto& w : workers_) EXPECT_TRUE(w->running());
  EXPECT_TRUE(api.running());
}

TEST_F(ScaleTest, TwoApiProcessesServeTheSameStatus) {
  constexpr int kRows = 20;
  const std::string csv = StartHostAndMakeCsv(kRows, /*latency_ms=*/20);
  WebhookReceiver hook;
  ImgprocProcess& first = StartApi(/*with_redis=*/false);
  ImgprocProcess& second = StartApi(/*with_redis=*/false);
  StartWorker(/*with_redis=*/false);

  const std::string id = Submit(first, csv, hook.Url());
  // While it runs, both answer for it; progress never goes backwards between them.
  int last_done = 0;
  for (int i = 0; i < 3000; ++i) {
    json a = first.Status(id);
    json b = second.Status(id);
    ASSERT_TRUE(a.is_object() && b.is_object());
    EXPECT_EQ(a["request_id"], id);
    EXPECT_EQ(b["request_id"], id);
    EXPECT_GE(b["progress"]["images_done"].get<int>(), a["progress"]["images_done"].get<int>());
    EXPECT_GE(a["progress"]["images_done"].get<int>(), last_done);
    last_done = b["progress"]["images_done"].get<int>();
    if (b["status"] == "completed") break;
    std::this_thread::sleep_for(10ms);
  }
  json a = first.WaitForCompletion(id);
  json b = second.WaitForCompletion(id);
  ExpectCompletedOnce(second, b, kRows, hook);
  a.erase("webhook");  // its delivery state moves on between the two reads
  b.erase("webhook");
  EXPECT_EQ(a, b);
  auto csv_a = first.Get("/api/p/requests/" + id + "/output.csv");
  auto csv_b = second.Get("/api/p/requests/" + id + "/output.csv");
  ASSERT_TRUE(csv_a && csv_b);
  EXPECT_EQ(csv_a->status, 200);
  EXPECT_EQ(csv_a->body, csv_b->body);
  auto unknown = second.Get("/status/00000000-0000-4000-8000-000000000000/");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

}  // namespace
}  // namespace imgproc::testing
