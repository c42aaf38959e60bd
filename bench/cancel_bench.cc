// Cancel benchmark (issue 21): a running request of 4,000 images is cancelled over HTTP.
//
// Reports, in one run: how long the cancel took to answer, how long after the answer the status
// read `cancelled` (the answer itself is the cancelled status, so this is the first poll), and
// how many downloads the image host saw start after the answer (the target is none: queued
// images fail in the cancel's transaction and workers check their lease before each stage; a
// worker that checked just before the commit may still start one). Everything runs on
// 127.0.0.1 and every loop is bounded.
//
//   build/release/bench/imgproc_cancel_bench --binary build/release/imgproc [--images 4000]
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "fixture_server.h"
#include "pipeline/image_codec.h"
#include "process_client.h"
#include "test_images.h"

namespace {

using Clock = std::chrono::steady_clock;
using imgproc::testing::FixtureServer;
using imgproc::testing::ImgprocProcess;
using imgproc::testing::TempDir;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc cancel benchmark");
  std::string binary = "build/release/imgproc";
  int images = 4000, latency_ms = 20, done_before_cancel = 100;
  app.add_option("--binary", binary, "imgproc binary")->capture_default_str();
  app.add_option("--images", images, "images in the request")->capture_default_str();
  app.add_option("--latency-ms", latency_ms, "image host latency per request")
      ->capture_default_str();
  app.add_option("--done-before-cancel", done_before_cancel, "images done when it is cancelled")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!imgproc::pipeline::InitCodec().ok()) return 1;

  const std::string photo =
      imgproc::testing::MakeImage(imgproc::testing::TestImage::kJpegRgb, 640, 480);
  std::mutex mu;
  std::vector<Clock::time_point> starts;  // when each download reached the host
  FixtureServer host;
  // More threads than imgproc has downloads (WORKERS=64), so each is seen when it arrives.
  host.server().new_task_queue = [] { return new httplib::ThreadPool(128); };
  host.server().Get(R"(/img/(\d+)\.jpg)", [&](const httplib::Request&, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mu);
      starts.push_back(Clock::now());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
    res.set_content(photo, "image/jpeg");
  });
  host.Start();

  setenv("IMGPROC_BINARY", binary.c_str(), 1);
  TempDir dir("bench-cancel");
  ImgprocProcess server(dir.path(), {{"ALLOW_PRIVATE_URLS", "1"}, {"LOG_LEVEL", "warn"}});
  if (!server.Start()) {
    std::fprintf(stderr, "imgproc did not start:\n%s\n", server.log().c_str());
    return 1;
  }
  std::string csv = "Serial Number,Product Name,Input Image Urls\n";
  for (int i = 0; i < images; i += 4) {
    csv += std::to_string(i / 4 + 1) + ",P,\"";
    for (int j = i; j < i + 4 && j < images; ++j) {
      csv += (j > i ? "," : "") + host.Url("/img/" + std::to_string(j) + ".jpg");
    }
    csv += "\"\n";
  }
  auto res = server.Upload(csv);
  if (!res || res->status != 202) return 1;
  const std::string id = nlohmann::json::parse(res->body)["request_id"];
  server.WaitForStatus(id, [&](const nlohmann::json& s) {
    return s["progress"]["images_done"].get<int>() >= done_before_cancel;
  });

  httplib::Client client("127.0.0.1", server.port());
  const auto asked = Clock::now();
  auto answer = client.Post("/api/p/requests/" + id + "/cancel", "", "application/json");
  const auto answered = Clock::now();
  if (!answer || answer->status != 200) return 1;
  const auto status = server.WaitForStatus(
      id, [](const nlohmann::json& s) { return s["status"] == "cancelled"; },
      std::chrono::seconds(10));
  const auto terminal = Clock::now();
  // Anything still in flight at the answer has had its latency to reach the host by now.
  std::this_thread::sleep_for(std::chrono::milliseconds(std::max(200, 5 * latency_ms)));
  size_t total = 0, after = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    total = starts.size();
    for (const auto t : starts) after += t > answered;
  }
  const bool ok = status.is_object() && status["status"] == "cancelled";
  std::printf("request of %d images, cancelled after %d done (%d failed as cancelled)\n", images,
              status["progress"]["images_done"].get<int>(),
              status["progress"]["images_failed"].get<int>());
  std::printf("cancel answered in            %8.1f ms\n", Ms(answered - asked));
  std::printf("status cancelled after answer %8.1f ms (target < 1000)\n", Ms(terminal - answered));
  std::printf("downloads started after answer %7zu of %zu (target 0)\n", after, total);
  server.Signal(SIGTERM);
  server.Wait();
  return ok ? 0 : 1;
}
