// Whole catalogues (issue 22): one request of 10,000 rows x 5 small images from a fast host, and
// a 10-image request sent while it runs against the same request alone, on the embedded default
// (one `serve` process, SQLite) and on PostgreSQL + Redis (an API process and a worker process).
// Reports for the big request images/s, imgproc's CPU per image and the part of it outside the
// codec (the codec's own CPU per image measured in this process on the same images), peak RSS
// and RSS along the run (it must stay flat), and on PostgreSQL the statements per image; for the
// small one its time to completion, alone and beside the big one; then the time to read the big
// request's status 100 products at a time. Needs the servers of
// scripts/services.sh for the PostgreSQL part (skipped without them):
//
//   eval "$(scripts/services.sh start)"
//   build/release/bench/imgproc_catalogue_bench --binary build/release/imgproc
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

#include "fixture_server.h"
#include "floor_server.h"
#include "pg_statements.h"
#include "pipeline/image_codec.h"
#include "process_client.h"
#include "process_stats.h"
#include "services.h"
#include "test_images.h"

namespace {

using imgproc::bench::StatementCounter;
using imgproc::testing::CpuSeconds;
using imgproc::testing::FixtureServer;
using imgproc::testing::ImgprocProcess;
using imgproc::testing::TempDir;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// `rows` rows of `per_row` URLs under /img/<tag>-<n>.jpg: each URL's bytes distinct.
std::string Csv(FixtureServer& host, const std::string& tag, int rows, int per_row) {
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  int n = 0;
  for (int r = 1; r <= rows; ++r) {
    csv += std::to_string(r) + ",SKU" + std::to_string(r);
    for (int j = 0; j < per_row; ++j) {
      csv += "," + host.Url("/img/" + tag + "-" + std::to_string(n++) + ".jpg");
    }
    csv += "\n";
  }
  return csv;
}

// The counts of a request (?limit=0), or null.
nlohmann::json Counts(ImgprocProcess& api, const std::string& id) {
  return api.Status(id, "?limit=0");
}

bool Completed(const nlohmann::json& status) {
  return status.is_object() && status.value("status", "") == "completed";
}

// Uploads `csv` and waits for its completion, polling the counts every 10 ms. Seconds from the
// upload to the completion seen; negative when it failed.
double TimeToCompletion(ImgprocProcess& api, const std::string& csv, int images) {
  const auto start = Clock::now();
  auto res = api.Upload(csv);
  if (!res || res->status != 202) return -1;
  const std::string id = nlohmann::json::parse(res->body)["request_id"];
  while (SecondsSince(start) < 600) {
    auto status = Counts(api, id);
    if (Completed(status)) {
      if (status["progress"]["images_done"] == images) return SecondsSince(start);
      std::printf("not every image done: %s\n", status["progress"].dump().c_str());
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

long RssSumKib(const std::vector<ImgprocProcess*>& all) {
  long sum = 0;
  for (auto* p : all) sum += std::max(0L, imgproc::testing::RssKib(p->pid()));
  return sum;
}

// The big request with the small one sent beside it once `beside_after` of its images are done.
bool RunMode(const std::string& name, ImgprocProcess& api, const std::vector<ImgprocProcess*>& all,
             FixtureServer& host, int rows, int per_row, double codec_ms,
             StatementCounter* statements) {
  const int total = rows * per_row;
  std::printf("\n== %s ==\n", name.c_str());
  const double alone = TimeToCompletion(api, Csv(host, name + "-alone", 2, 5), 10);
  std::printf("10-image request alone: %.3f s\n", alone);

  if (statements != nullptr) (void)statements->Reset();
  double cpu_before = 0;
  for (auto* p : all) cpu_before += std::max(0.0, CpuSeconds(p->pid()));
  const auto start = Clock::now();
  auto res = api.Upload(Csv(host, name + "-big", rows, per_row));
  if (!res || res->status != 202) {
    std::printf("upload failed: %s\n", res ? res->body.c_str() : "no answer");
    return false;
  }
  const double accepted = SecondsSince(start);
  const std::string id = nlohmann::json::parse(res->body)["request_id"];

  // RSS every 10% of the images, and the small request at a tenth.
  std::vector<std::pair<int, long>> rss;  // (images done, KiB)
  double beside = -2;
  std::thread small;
  bool done = false;
  while (!done && SecondsSince(start) < 1800) {
    auto status = Counts(api, id);
    done = Completed(status);
    const int images_done = status.is_object() ? status["progress"].value("images_done", 0) : 0;
    if (rss.empty() || images_done >= static_cast<int>(rss.size()) * total / 10) {
      rss.emplace_back(images_done, RssSumKib(all));
    }
    if (!small.joinable() && images_done >= total / 10) {
      small = std::thread(
          [&] { beside = TimeToCompletion(api, Csv(host, name + "-beside", 2, 5), 10); });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double seconds = SecondsSince(start);
  if (small.joinable()) small.join();
  double cpu = -cpu_before;
  for (auto* p : all) cpu += std::max(0.0, CpuSeconds(p->pid()));
  // The small one's CPU is in it too: 10 images in 50,000.
  const double cpu_ms = 1000 * cpu / total;
  std::printf("big request: %d images in %.1f s (accepted in %.3f s): %.1f images/s%s\n", total,
              seconds, accepted, total / seconds, done ? "" : "  NOT COMPLETED");
  std::printf("imgproc CPU: %.3f ms per image; codec %.3f ms; outside the codec %.3f ms\n", cpu_ms,
              codec_ms, cpu_ms - codec_ms);
  for (auto* p : all) {
    std::printf("peak RSS of pid %d: %.1f MB\n", p->pid(),
                imgproc::testing::PeakRssKib(p->pid()) / 1024.0);
  }
  std::printf("RSS of imgproc along the run (images done: MB):");
  for (const auto& [images, kib] : rss) std::printf(" %d: %.1f", images, kib / 1024.0);
  std::printf("\n");
  std::printf("10-image request sent beside it: %.3f s (alone %.3f s): %+.3f s\n", beside, alone,
              beside - alone);
  if (statements != nullptr) statements->Print(total);

  // The status a page at a time (as the web page reads it): 100 products at offsets across the
  // finished request, one after another on one kept-alive connection. Then the same for the
  // request's counts alone (?limit=0) and pages of one product, which split a page's time into
  // what every read pays and what its 100 products add; and a floor server (floor_server.h)
  // sending one of those pages' bytes back, read the same way: this machine's part of the time.
  bool pages_ok = true;
  const auto time_reads = [&](int port, const char* what,
                              const std::function<std::string(int)>& query) {
    httplib::Client client("127.0.0.1", port);
    client.set_keep_alive(true);
    client.set_read_timeout(30, 0);
    std::vector<double> ms;
    for (int i = 0; i < 200; ++i) {
      const auto t = Clock::now();
      auto page = client.Get("/status/" + id + "/" + query(i));
      ms.push_back(1000 * SecondsSince(t));
      pages_ok &= page && page->status == 200;
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%s (200 reads): median %.2f ms, p99 %.2f ms%s\n", what, ms[ms.size() / 2],
                ms[ms.size() * 99 / 100], pages_ok ? "" : "  FAILED");
    return ms[ms.size() * 99 / 100];
  };
  const auto offset = [&](int i) { return std::to_string((i * 7919) % rows / 100 * 100); };
  const double p99 = time_reads(api.port(), "status pages of 100 products",
                                [&](int i) { return "?offset=" + offset(i) + "&limit=100"; });
  time_reads(api.port(), "status counts only (?limit=0)",
             [](int) { return std::string("?limit=0"); });
  time_reads(api.port(), "status pages of 1 product",
             [&](int i) { return "?offset=" + offset(i) + "&limit=1"; });
  auto page = imgproc::bench::FetchRawResponse(
      api.port(), "/status/" + id + "/?offset=" + offset(1) + "&limit=100", "");
  imgproc::bench::FloorServer floor(page.value_or(""));
  pages_ok &= page.has_value() && floor.Start();
  if (pages_ok) {
    const double floor_p99 = time_reads(floor.port(), "floor: one page's bytes, sent back",
                                        [](int) { return std::string(); });
    std::printf("status page p99: x%.2f of the floor's\n", p99 / floor_p99);
  }
  return done && alone > 0 && beside > 0 && pages_ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc whole-catalogue benchmark: 50,000 small images, a small request beside");
  std::string binary = "build/release/imgproc";
  int rows = 10000, per_row = 5, width = 160, height = 120;
  bool skip_postgres = false;
  app.add_option("--binary", binary, "imgproc binary")->capture_default_str();
  app.add_option("--rows", rows, "rows of the big request")->capture_default_str();
  app.add_option("--images-per-row", per_row, "image URLs per row")->capture_default_str();
  app.add_option("--width", width, "image width")->capture_default_str();
  app.add_option("--height", height, "image height")->capture_default_str();
  app.add_flag("--sqlite-only", skip_postgres, "only the embedded mode");
  CLI11_PARSE(app, argc, argv);
  setenv("IMGPROC_BINARY", binary.c_str(), 1);
  if (!imgproc::pipeline::InitCodec().ok()) return 1;

  std::vector<std::string> images;
  for (int i = 0; i < 8; ++i) {
    images.push_back(
        imgproc::testing::MakeImage(imgproc::testing::TestImage::kJpegRgb, width + i, height + i));
  }
  // The codec's own CPU per image, on these images, in this process.
  double codec_ms = 0;
  {
    const double before = imgproc::testing::SelfCpuSeconds();
    constexpr int kRounds = 2000;
    for (int i = 0; i < kRounds; ++i) {
      if (!imgproc::pipeline::CompressToJpeg(images[i % images.size()], {}).ok()) return 1;
    }
    codec_ms = 1000 * (imgproc::testing::SelfCpuSeconds() - before) / kRounds;
  }

  FixtureServer host;
  host.server().new_task_queue = [] { return new httplib::ThreadPool(64); };
  host.server().Get(
      R"(/img/([\w-]+)\.jpg)", [&](const httplib::Request& req, httplib::Response& res) {
        // Every URL's bytes distinct (a tag after the JPEG's end): nothing to reuse.
        const std::string tag = req.matches[1];
        res.set_content(images[std::hash<std::string>()(tag) % images.size()] + tag, "image/jpeg");
      });
  host.Start();
  std::printf(
      "workload: %d rows x %d images of %dx%d JPEG (%zu bytes), host without latency, "
      "%u cores\n",
      rows, per_row, width, height, images[0].size(), std::thread::hardware_concurrency());

  const std::map<std::string, std::string> common = {
      {"ALLOW_PRIVATE_URLS", "1"}, {"LOG_LEVEL", "warn"}, {"MAX_QUEUED_IMAGES_PER_CLIENT", "0"}};
  bool all_ok = true;
  {
    TempDir dir("bench-catalogue");
    ImgprocProcess serve(dir.path(), common);
    if (!serve.Start()) return 1;
    all_ok &= RunMode("embedded", serve, {&serve}, host, rows, per_row, codec_ms, nullptr);
  }
  if (skip_postgres) return all_ok ? 0 : 1;
  if (!imgproc::testing::PostgresAdminUrl() || !imgproc::testing::RedisUrl()) {
    std::printf("\nPostgreSQL + Redis: skipped (eval \"$(scripts/services.sh start)\")\n");
    return all_ok ? 0 : 1;
  }
  imgproc::testing::TempPostgresDatabase db;
  if (!db.ok() || !imgproc::testing::ServiceCommand("flush-redis")) {
    std::fprintf(stderr, "no database or Redis: %s\n", db.error().c_str());
    return 1;
  }
  TempDir shared("bench-catalogue-shared");
  auto env = common;
  env.insert({{"DATABASE_URL", db.url()},
              {"REDIS_URL", *imgproc::testing::RedisUrl()},
              {"DATA_DIR", shared.path().string()}});
  TempDir api_dir("bench-catalogue-api");
  ImgprocProcess api(api_dir.path(), env, {"serve", "--no-worker"});
  if (!api.Start()) return 1;
  env["LOG_LEVEL"] = "info";  // a worker is ready when its log says it runs
  TempDir worker_dir("bench-catalogue-worker");
  ImgprocProcess worker(worker_dir.path(), env, {"worker"});
  if (!worker.Start()) return 1;
  StatementCounter statements(db.url());
  all_ok &=
      RunMode("postgresql-redis", api, {&api, &worker}, host, rows, per_row, codec_ms, &statements);
  return all_ok ? 0 : 1;
}
