// Scale-out benchmark: the same request processed by one API process and 1, 2 and 4 worker
// processes sharing PostgreSQL and Redis, next to the embedded mode (one `serve` process with
// SQLite) as the reference. Reports images/s, the ratio to one worker process, and the CPU
// seconds per image the imgproc processes spent, and on PostgreSQL the statements per image
// (pg_stat_statements, which scripts/services.sh preloads: every statement of the run, the
// upload's and the status polls' included, counted from after the processes started; the five
// most called are listed). Needs the servers of scripts/services.sh:
//
//   eval "$(scripts/services.sh start)"
//   build/release/bench/imgproc_scale_bench --binary build/release/imgproc
//   scripts/services.sh stop
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "fixture_server.h"
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
using imgproc::testing::TempPostgresDatabase;

struct RunResult {
  int images = 0;
  double seconds = 0;
  double cpu_seconds = 0;  // user + system of every imgproc process
  bool ok = false;
};

std::string Csv(FixtureServer& host, int rows, int per_row) {
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  int n = 0;
  for (int r = 1; r <= rows; ++r) {
    csv += std::to_string(r) + ",SKU" + std::to_string(r);
    for (int j = 0; j < per_row; ++j) csv += "," + host.Url("/img/" + std::to_string(n++) + ".jpg");
    csv += "\n";
  }
  return csv;
}

// One request through `api`, with `workers` doing the work (or the API itself when empty).
RunResult Run(ImgprocProcess& api, std::vector<std::unique_ptr<ImgprocProcess>>& workers,
              const std::string& csv, int images) {
  RunResult result;
  std::vector<ImgprocProcess*> all = {&api};
  for (auto& w : workers) all.push_back(w.get());
  double cpu_before = 0;
  for (auto* p : all) cpu_before += std::max(0.0, CpuSeconds(p->pid()));
  const auto start = std::chrono::steady_clock::now();
  auto res = api.Upload(csv);
  if (!res || res->status != 202) return result;
  const std::string id = nlohmann::json::parse(res->body)["request_id"];
  auto status = api.WaitForCompletion(id, std::chrono::seconds(600));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto* p : all) result.cpu_seconds += std::max(0.0, CpuSeconds(p->pid()));
  result.cpu_seconds -= cpu_before;
  result.images = images;
  result.ok = status.is_object() && status["status"] == "completed" &&
              status["progress"]["images_done"] == images;
  return result;
}

void Print(const std::string& name, const RunResult& r, double base_rate) {
  const double rate = r.images / r.seconds;
  std::printf("%-40s %5d images %7.2f s %7.1f images/s  %5.2fx  %6.1f ms CPU/image  %s\n",
              name.c_str(), r.images, r.seconds, rate, base_rate > 0 ? rate / base_rate : 1.0,
              1000 * r.cpu_seconds / r.images, r.ok ? "ok" : "FAILED");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc scale-out benchmark (PostgreSQL + Redis, several worker processes)");
  std::string binary = "build/release/imgproc";
  int rows = 100, per_row = 4, latency_ms = 20, width = 1024, height = 768, threads = 8;
  app.add_option("--binary", binary, "imgproc binary")->capture_default_str();
  app.add_option("--rows", rows, "CSV rows")->capture_default_str();
  app.add_option("--images-per-row", per_row, "image URLs per row")->capture_default_str();
  app.add_option("--latency-ms", latency_ms, "image host latency per request")
      ->capture_default_str();
  app.add_option("--width", width, "image width")->capture_default_str();
  app.add_option("--height", height, "image height")->capture_default_str();
  app.add_option("--workers-per-process", threads, "WORKERS of each worker process")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!imgproc::testing::PostgresAdminUrl() || !imgproc::testing::RedisUrl()) {
    std::fprintf(stderr,
                 "needs IMGPROC_TEST_PG_URL and IMGPROC_TEST_REDIS_URL: run\n"
                 "  eval \"$(scripts/services.sh start)\"\n");
    return 2;
  }
  setenv("IMGPROC_BINARY", binary.c_str(), 1);
  if (!imgproc::pipeline::InitCodec().ok()) return 1;

  std::vector<std::string> images;
  for (int i = 0; i < 8; ++i) {
    images.push_back(
        imgproc::testing::MakeImage(imgproc::testing::TestImage::kJpegRgb, width + i, height + i));
  }
  FixtureServer host;
  host.server().new_task_queue = [] { return new httplib::ThreadPool(64); };
  host.server().Get(R"(/img/(\d+)\.jpg)", [&](const httplib::Request& req, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
    // Eight pictures, but every URL's bytes distinct (a tag after the JPEG's end, which decoders
    // ignore): the image cache, on as by default, finds nothing to reuse, as on a catalogue's
    // first import, and every image is compressed.
    const std::string n = req.matches[1];
    res.set_content(images[std::stoul(n) % images.size()] + "bench-" + n, "image/jpeg");
  });
  host.Start();
  const std::string csv = Csv(host, rows, per_row);
  const int total = rows * per_row;
  std::printf(
      "workload: %d rows x %d images, %dx%d JPEG (%zu KiB), host latency %d ms, %u cores, "
      "%d workers per process\n",
      rows, per_row, width, height, images[0].size() / 1024, latency_ms,
      std::thread::hardware_concurrency(), threads);

  bool all_ok = true;
  {
    TempDir dir("bench-embedded");
    ImgprocProcess serve(
        dir.path(),
        {{"ALLOW_PRIVATE_URLS", "1"}, {"LOG_LEVEL", "warn"}, {"WORKERS", std::to_string(threads)}});
    std::vector<std::unique_ptr<ImgprocProcess>> none;
    if (!serve.Start()) return 1;
    const RunResult r = Run(serve, none, csv, total);
    Print("embedded (serve, SQLite)", r, 0);
    all_ok &= r.ok;
  }
  double base_rate = 0;
  for (int n : {1, 2, 4}) {
    TempPostgresDatabase db;
    if (!db.ok()) {
      std::fprintf(stderr, "%s\n", db.error().c_str());
      return 1;
    }
    if (!imgproc::testing::ServiceCommand("flush-redis")) {
      std::fprintf(stderr, "cannot flush Redis (IMGPROC_TEST_SERVICES)\n");
      return 1;
    }
    TempDir shared("bench-shared");
    std::map<std::string, std::string> env = {{"DATABASE_URL", db.url()},
                                              {"REDIS_URL", *imgproc::testing::RedisUrl()},
                                              {"DATA_DIR", shared.path().string()},
                                              {"ALLOW_PRIVATE_URLS", "1"},
                                              {"LOG_LEVEL", "warn"},
                                              {"WORKERS", std::to_string(threads)}};
    std::vector<std::unique_ptr<TempDir>> dirs;
    dirs.push_back(std::make_unique<TempDir>("bench-api"));
    ImgprocProcess api(dirs.back()->path(), env, {"serve", "--no-worker"});
    if (!api.Start()) {
      std::fprintf(stderr, "API did not start:\n%s\n", api.log().c_str());
      return 1;
    }
    std::vector<std::unique_ptr<ImgprocProcess>> workers;
    env["LOG_LEVEL"] = "info";  // a worker is ready when its log says it runs
    for (int i = 0; i < n; ++i) {
      dirs.push_back(std::make_unique<TempDir>("bench-worker"));
      workers.push_back(std::make_unique<ImgprocProcess>(dirs.back()->path(), env,
                                                         std::vector<std::string>{"worker"}));
      if (!workers.back()->Start()) {
        std::fprintf(stderr, "worker did not start:\n%s\n", workers.back()->log().c_str());
        return 1;
      }
    }
    StatementCounter statements(db.url());
    (void)statements.Reset();  // the processes' start-up (migrations) left out
    const RunResult r = Run(api, workers, csv, total);
    if (n == 1) base_rate = r.images / r.seconds;
    Print("postgresql + redis, " + std::to_string(n) + " worker process" + (n > 1 ? "es" : ""), r,
          base_rate);
    statements.Print(total);
    all_ok &= r.ok;
  }
  return all_ok ? 0 : 1;
}
