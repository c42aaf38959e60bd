// End-to-end benchmark: the real imgproc binary processing a CSV against a local image host.
//
// Reports, in one run, wall time, images/s and peak memory (VmHWM) for
//   - the sequential baseline (WORKERS=1, CPU_THREADS=1: roughly the original design's loop),
//   - the default configuration (concurrent downloads/uploads, compression on every core),
//   - the default configuration on a 5x larger request (memory must stay flat),
// and the ratios between them. Everything runs on 127.0.0.1 and every loop is bounded.
//
//   build/release/bench/imgproc_bench --binary build/release/imgproc [--rows 100] [--latency-ms 20]
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "fixture_server.h"
#include "pipeline/image_codec.h"
#include "process_client.h"
#include "process_stats.h"
#include "test_images.h"

namespace {

using imgproc::testing::FixtureServer;
using imgproc::testing::ImgprocProcess;
using imgproc::testing::PeakRssKib;
using imgproc::testing::TempDir;

struct RunResult {
  int images = 0;
  double seconds = 0;
  long peak_rss_kib = 0;
  bool ok = false;
};

RunResult Run(const std::string& binary, FixtureServer& host, int rows, int per_row,
              std::map<std::string, std::string> env) {
  setenv("IMGPROC_BINARY", binary.c_str(), 1);
  TempDir dir("bench");
  env["ALLOW_PRIVATE_URLS"] = "1";
  env["LOG_LEVEL"] = "warn";
  ImgprocProcess server(dir.path(), env);
  RunResult result;
  if (!server.Start()) {
    std::fprintf(stderr, "imgproc did not start:\n%s\n", server.log().c_str());
    return result;
  }
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  int n = 0;
  for (int r = 1; r <= rows; ++r) {
    csv += std::to_string(r) + ",SKU" + std::to_string(r);
    for (int j = 0; j < per_row; ++j) csv += "," + host.Url("/img/" + std::to_string(n++) + ".jpg");
    csv += "\n";
  }
  const auto start = std::chrono::steady_clock::now();
  auto res = server.Upload(csv);
  if (!res || res->status != 202) return result;
  const std::string id = nlohmann::json::parse(res->body)["request_id"];
  auto status = server.WaitForCompletion(id, std::chrono::seconds(600));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.images = n;
  result.ok = status.is_object() && status["status"] == "completed" &&
              status["progress"]["images_done"] == n;
  result.peak_rss_kib = PeakRssKib(server.pid());
  server.Signal(SIGTERM);
  server.Wait();
  return result;
}

void Print(const char* name, const RunResult& r) {
  std::printf("%-28s %6d images %8.2f s %8.1f images/s  peak RSS %7.1f MiB  %s\n", name, r.images,
              r.seconds, r.images / r.seconds, r.peak_rss_kib / 1024.0, r.ok ? "ok" : "FAILED");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc end-to-end benchmark");
  std::string binary = "build/release/imgproc";
  int rows = 100, per_row = 4, latency_ms = 20, width = 1024, height = 768;
  app.add_option("--binary", binary, "imgproc binary")->capture_default_str();
  app.add_option("--rows", rows, "CSV rows")->capture_default_str();
  app.add_option("--images-per-row", per_row, "image URLs per row")->capture_default_str();
  app.add_option("--latency-ms", latency_ms, "image host latency per request")
      ->capture_default_str();
  app.add_option("--width", width, "image width")->capture_default_str();
  app.add_option("--height", height, "image height")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (!imgproc::pipeline::InitCodec().ok()) return 1;
  // Eight distinct photo-like JPEGs, served under as many URLs as the CSV needs.
  std::vector<std::string> images;
  for (int i = 0; i < 8; ++i) {
    images.push_back(
        imgproc::testing::MakeImage(imgproc::testing::TestImage::kJpegRgb, width + i, height + i));
  }
  FixtureServer host;
  host.server().new_task_queue = [] { return new httplib::ThreadPool(32); };
  host.server().Get(R"(/img/(\d+)\.jpg)", [&](const httplib::Request& req, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
    res.set_content(images[std::stoul(req.matches[1]) % images.size()], "image/jpeg");
  });
  host.Start();

  std::printf("workload: %d rows x %d images, %dx%d JPEG (%zu KiB), host latency %d ms, %u cores\n",
              rows, per_row, width, height, images[0].size() / 1024, latency_ms,
              std::thread::hardware_concurrency());
  const RunResult sequential =
      Run(binary, host, rows, per_row, {{"WORKERS", "1"}, {"CPU_THREADS", "1"}});
  Print("sequential (1 worker)", sequential);
  const RunResult concurrent = Run(binary, host, rows, per_row, {});
  Print("default settings", concurrent);
  const RunResult large = Run(binary, host, rows * 5, per_row, {});
  Print("default, 5x the rows", large);
  std::printf("speed-up default / sequential: %.2fx\n",
              (concurrent.images / concurrent.seconds) / (sequential.images / sequential.seconds));
  std::printf("peak memory 5x rows / 1x rows: %.2fx\n",
              static_cast<double>(large.peak_rss_kib) / concurrent.peak_rss_kib);
  return sequential.ok && concurrent.ok && large.ok ? 0 : 1;
}
