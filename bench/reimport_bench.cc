// Re-import benchmark (the image cache): the same catalogue CSV imported twice, side by side.
//
// Reports, in one run, against the real imgproc binary and a local image host:
//   1. a CSV of 100 rows x 4 URLs (400 distinct photo-like images of 1.1-1.9 MP: by default 4:2:0
//      baseline JPEGs, imgproc's cheapest input, so the ratios are conservative) from a host that
//      sends ETag and Last-Modified and answers conditional requests with 304: the first import
//      against the re-import of the same CSV, for wall time (upload to status `completed`),
//      imgproc's CPU time (utime + stime from /proc/<pid>/stat, sampled before and after each
//      import, 10 ms ticks), the compressions, uploads and downloads it made (deltas of /metrics'
//      imgproc_stage_duration_seconds_count), the images it reused (imgproc_images_reused_total,
//      status images_reused), and what the host saw (GETs, conditional GETs, 304s, full bodies
//      sent). Targets: re-import >= 20x less wall and CPU, 0 compressions, 0 uploads, only
//      conditional requests at the host;
//   2. the same CSV from a host that sends neither validator (the re-import downloads every image
//      again and finds the same bytes: 0 compressions, 0 uploads);
//   3. a CSV of 400 rows naming only 8 distinct URLs (one each): the host's downloads, the
//      compressions, the uploads and the files in DATA_DIR/media/objects (target 8 of each);
//   4. what the cache costs when nothing can be reused: case 2's first import against the same
//      import with IMAGE_CACHE=false.
// Each case has an imgproc of its own (default settings plus ALLOW_PRIVATE_URLS=1 and
// LOG_LEVEL=warn, as the other benches: the image cache is on) with a fresh DATA_DIR, so no case
// warms another's cache; the images are generated once (libvips, 2 threads; most of the run) and
// served by every case. The status's counts are polled every 20 ms (ImgprocProcess::
// WaitForCompletion, ?limit=0; polls of the whole 400-product status were 18 % of a re-import's
// CPU, perf); those polls are part of imgproc's CPU in both imports. The host keeps connections
// alive and answers at once unless --latency-ms is given. Targets are printed as met or missed,
// never asserted: the exit code is 0 when every import completed, 1 otherwise. Everything runs on
// 127.0.0.1 and every wait is bounded (an import by --timeout-s). Prints a table per case, then one
// JSON line of every figure.
//
//   build/release/bench/imgproc_reimport_bench --binary build/release/imgproc [--rows 100]
//       [--per-row 4] [--distinct 8] [--kind jpeg_rgb|jpeg_444|jpeg_progressive|png_rgb|...]
//       [--latency-ms 0] [--pause-s 0: before each re-import, wait so a profiler can attach]
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fixture_server.h"
#include "pipeline/image_codec.h"
#include "process_client.h"
#include "process_stats.h"
#include "test_images.h"

namespace {

using Clock = std::chrono::steady_clock;
using imgproc::testing::CpuSeconds;
using imgproc::testing::FixtureServer;
using imgproc::testing::ImgprocProcess;
using imgproc::testing::TempDir;
using nlohmann::json;

constexpr char kLastModified[] = "Tue, 04 Mar 2025 10:00:00 GMT";

// What the image host saw on one route, counted as each request arrives.
struct HostCounters {
  std::atomic<long> gets{0};
  std::atomic<long> conditional{0};   // with If-None-Match or If-Modified-Since
  std::atomic<long> not_modified{0};  // answered 304
  std::atomic<long> bodies{0};        // answered 200 with the image
  std::atomic<long> body_bytes{0};
};

struct HostSnapshot {
  long gets = 0, conditional = 0, not_modified = 0, bodies = 0, body_bytes = 0;
  HostSnapshot operator-(const HostSnapshot& o) const {
    return {gets - o.gets, conditional - o.conditional, not_modified - o.not_modified,
            bodies - o.bodies, body_bytes - o.body_bytes};
  }
};

HostSnapshot Snapshot(const HostCounters& c) {
  return {c.gets.load(), c.conditional.load(), c.not_modified.load(), c.bodies.load(),
          c.body_bytes.load()};
}

// The counters of /metrics this benchmark reads.
struct Metrics {
  long compress = 0, upload = 0, download = 0, reused_304 = 0, reused_same = 0;
  bool ok = false;
  Metrics operator-(const Metrics& o) const {
    return {compress - o.compress,     upload - o.upload,           download - o.download,
            reused_304 - o.reused_304, reused_same - o.reused_same, ok && o.ok};
  }
};

// The value of the sample named exactly `name` (with its labels) in Prometheus text; -1 if absent.
long Sample(const std::string& text, const std::string& name) {
  size_t at = 0;
  for (int line = 0; line < 100000 && at < text.size(); ++line) {
    const size_t end = std::min(text.find('\n', at), text.size());
    if (text.compare(at, name.size(), name) == 0 && at + name.size() < end &&
        text[at + name.size()] == ' ') {
      return static_cast<long>(
          std::stod(text.substr(at + name.size() + 1, end - at - name.size())));
    }
    at = end + 1;
  }
  return -1;
}

Metrics ReadMetrics(ImgprocProcess& server) {
  Metrics m;
  auto res = server.Get("/metrics");
  if (!res || res->status != 200) return m;
  const std::string& t = res->body;
  m.compress = Sample(t, R"(imgproc_stage_duration_seconds_count{stage="compress"})");
  m.upload = Sample(t, R"(imgproc_stage_duration_seconds_count{stage="upload"})");
  m.download = Sample(t, R"(imgproc_stage_duration_seconds_count{stage="download"})");
  m.reused_304 = Sample(t, R"(imgproc_images_reused_total{how="not_modified"})");
  m.reused_same = Sample(t, R"(imgproc_images_reused_total{how="same_content"})");
  // Every one is registered when imgproc starts, so a missing one is a broken reading, not a 0.
  m.ok = m.compress >= 0 && m.upload >= 0 && m.download >= 0 && m.reused_304 >= 0 &&
         m.reused_same >= 0;
  if (!m.ok) std::fprintf(stderr, "/metrics lacks a sample this benchmark reads\n");
  return m;
}

// Regular files under `dir` (recursively); 0 when it does not exist.
long CountFiles(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return 0;
  long n = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    n += it->is_regular_file(ec);
  }
  return n;
}

struct Import {
  bool ok = false;  // completed in time, every image done
  double wall_s = 0;
  double upload_s = 0;  // until the upload's 202 (part of wall_s)
  double cpu_s = 0;
  Metrics metrics;  // deltas
  HostSnapshot host;
  int images_total = 0, images_done = 0, images_failed = 0, images_reused = 0;
  long object_files = 0;             // in DATA_DIR/media/objects after the import
  long media_files = 0;              // in DATA_DIR/media after the import
  std::vector<std::string> outputs;  // each product's Output Image Urls
  std::string status;
};

Import RunImport(ImgprocProcess& server, const std::string& csv, const HostCounters& counters,
                 std::chrono::seconds timeout) {
  Import r;
  const Metrics metrics_before = ReadMetrics(server);
  const HostSnapshot host_before = Snapshot(counters);
  const double cpu_before = CpuSeconds(server.pid());
  const auto start = Clock::now();
  auto res = server.Upload(csv);
  r.upload_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!res || res->status != 202) {
    std::fprintf(stderr, "upload failed: %s\n", res ? res->body.c_str() : "no answer");
    return r;
  }
  const std::string id = json::parse(res->body)["request_id"];
  const json status = server.WaitForCompletion(id, timeout);
  r.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_after = CpuSeconds(server.pid());
  r.cpu_s = cpu_before >= 0 && cpu_after >= 0 ? cpu_after - cpu_before : -1;
  r.metrics = ReadMetrics(server) - metrics_before;
  r.host = Snapshot(counters) - host_before;
  r.object_files = CountFiles(server.data_dir() / "media" / "objects");
  r.media_files = CountFiles(server.data_dir() / "media");
  if (!status.is_object()) return r;
  r.status = status.value("status", "");
  const json progress = status.value("progress", json::object());
  r.images_total = progress.value("images_total", 0);
  r.images_done = progress.value("images_done", 0);
  r.images_failed = progress.value("images_failed", 0);
  r.images_reused = progress.value("images_reused", 0);
  for (const auto& p : status.value("products", json::array())) {
    const auto urls = p.find("Output Image Urls");  // null until the product is finished
    r.outputs.push_back(urls != p.end() && urls->is_string() ? urls->get<std::string>() : "");
  }
  r.ok = r.status == "completed" && r.images_done == r.images_total && r.images_failed == 0 &&
         r.metrics.ok;
  return r;
}

json ToJson(const Import& r) {
  return {{"ok", r.ok},
          {"status", r.status},
          {"wall_s", r.wall_s},
          {"upload_s", r.upload_s},
          {"cpu_s", r.cpu_s},
          {"compressions", r.metrics.compress},
          {"uploads", r.metrics.upload},
          {"downloads", r.metrics.download},
          {"reused_not_modified", r.metrics.reused_304},
          {"reused_same_content", r.metrics.reused_same},
          {"images_total", r.images_total},
          {"images_done", r.images_done},
          {"images_failed", r.images_failed},
          {"images_reused", r.images_reused},
          {"host_gets", r.host.gets},
          {"host_conditional", r.host.conditional},
          {"host_304", r.host.not_modified},
          {"host_bodies", r.host.bodies},
          {"host_body_bytes", r.host.body_bytes},
          {"object_files", r.object_files},
          {"media_files", r.media_files}};
}

// first / again, with CPU ticks (10 ms) as the floor of the denominator.
double Ratio(double first, double again) { return first / std::max(again, 0.01); }

std::unique_ptr<ImgprocProcess> StartImgproc(const TempDir& dir, bool image_cache = true) {
  auto server = std::make_unique<ImgprocProcess>(
      dir.path(),
      std::map<std::string, std::string>{{"ALLOW_PRIVATE_URLS", "1"},
                                         {"LOG_LEVEL", "warn"},
                                         {"IMAGE_CACHE", image_cache ? "true" : "false"}});
  if (!server->Start()) {
    std::fprintf(stderr, "imgproc did not start:\n%s\n", server->log().c_str());
    return nullptr;
  }
  return server;
}

void Stop(ImgprocProcess& server) {
  server.Signal(SIGTERM);
  if (server.Wait(std::chrono::seconds(30)) < 0) server.Signal(SIGKILL);
}

// "<count> rows x <per_row> URLs" of the host's `prefix` route, images 0, 1, 2, ...
std::string DistinctCsv(const FixtureServer& host, const std::string& prefix, int rows,
                        int per_row) {
  std::string csv = "Serial Number,Product Name,Input Image Urls\n";
  int n = 0;
  for (int r = 1; r <= rows; ++r) {
    csv += std::to_string(r) + ",SKU" + std::to_string(r) + ",\"";
    for (int j = 0; j < per_row; ++j) {
      csv += (j > 0 ? "," : "") + host.Url(prefix + std::to_string(n++) + ".jpg");
    }
    csv += "\"\n";
  }
  return csv;
}

void Pause(const ImgprocProcess& server, int seconds) {
  if (seconds <= 0) return;
  std::printf("re-import in %d s: imgproc pid %d\n", seconds, static_cast<int>(server.pid()));
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(std::min(seconds, 600)));
}

const char* Met(bool met) { return met ? "met" : "MISSED"; }

void Row(const char* name, const Import& r) {
  std::printf(
      "  %-12s %8.3f %7.3f %8.3f %6ld %6ld %6ld %7ld %7ld %6ld %6ld %5ld %6ld %7ld  %s (%d/%d "
      "done, %d failed, %d reused)\n",
      name, r.wall_s, r.upload_s, r.cpu_s, r.metrics.compress, r.metrics.upload, r.metrics.download,
      r.metrics.reused_304, r.metrics.reused_same, r.host.gets, r.host.conditional,
      r.host.not_modified, r.host.bodies, r.object_files, r.ok ? "ok" : "NOT COMPLETED",
      r.images_done, r.images_total, r.images_failed, r.images_reused);
}

void Header() {
  std::printf("  %-12s %8s %7s %8s %6s %6s %6s %7s %7s %6s %6s %5s %6s %7s\n", "", "wall s",
              "202 s", "cpu s", "compr", "upload", "dl", "re-304", "re-same", "GETs", "cond", "304",
              "bodies", "objects");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc re-import (image cache) benchmark");
  std::string binary = "build/release/imgproc";
  std::string kind_name = "jpeg_rgb";
  int rows = 100, per_row = 4, latency_ms = 0, distinct_small = 8, timeout_s = 120, pause_s = 0;
  app.add_option("--binary", binary, "imgproc binary")->capture_default_str();
  app.add_option("--rows", rows, "CSV rows of cases 1 and 2 (and of case 3, x per-row)")
      ->capture_default_str();
  app.add_option("--per-row", per_row, "distinct image URLs per row (cases 1 and 2)")
      ->capture_default_str();
  app.add_option("--distinct", distinct_small, "distinct URLs of case 3")->capture_default_str();
  app.add_option("--latency-ms", latency_ms, "image host latency per request")
      ->capture_default_str();
  app.add_option("--timeout-s", timeout_s, "longest wait for one import")->capture_default_str();
  app.add_option("--kind", kind_name,
                 "test image kind (tests/support/test_images.h): jpeg_rgb is a 4:2:0 baseline JPEG "
                 "(imgproc's DCT fast path, its cheapest input); jpeg_444, jpeg_progressive, "
                 "png_rgb, ... are decoded and encoded")
      ->capture_default_str();
  app.add_option("--pause-s", pause_s,
                 "before each re-import, print imgproc's pid and wait this long (to attach a "
                 "profiler: perf record -g -p <pid>)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!imgproc::pipeline::InitCodec().ok()) return 1;
  const int images = rows * per_row;
  const auto kind =
      std::find_if(imgproc::testing::kAllTestImages.begin(), imgproc::testing::kAllTestImages.end(),
                   [&](auto k) { return kind_name == imgproc::testing::TestImageName(k); });
  if (kind == imgproc::testing::kAllTestImages.end()) {
    std::fprintf(stderr, "unknown --kind %s\n", kind_name.c_str());
    return 2;
  }
  const auto timeout = std::chrono::seconds(timeout_s);

  // Distinct photo-like images of 1.1-1.9 MP (each size its own image), made on 2 threads. The
  // default, a 4:2:0 baseline JPEG, is imgproc's cheapest input (the DCT fast path): the first
  // import is as cheap as it gets, so the ratios are conservative.
  const auto generating = Clock::now();
  std::vector<std::string> photos(static_cast<size_t>(images));
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < images; i += 2) {
          const int k = i % 400;
          photos[static_cast<size_t>(i)] =
              imgproc::testing::MakeImage(*kind, 1200 + k, 900 + 3 * k / 4 + i / 400);
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  size_t photo_bytes = 0;
  for (const auto& p : photos) photo_bytes += p.size();
  const double generate_s = std::chrono::duration<double>(Clock::now() - generating).count();

  // One host, three routes with counters of their own:
  //   /etag/<i>.jpg   ETag + Last-Modified, 304 for a matching If-None-Match / If-Modified-Since
  //   /plain/<i>.jpg  no validators, always 200 with the body
  //   /dup/<i>.jpg    like /etag/ (case 3)
  HostCounters etag_counts, plain_counts, dup_counts;
  const std::string content_type = "image/" + kind_name.substr(0, kind_name.find('_'));
  FixtureServer host;
  host.server().new_task_queue = [] { return new httplib::ThreadPool(128); };
  host.server().set_keep_alive_max_count(1000);  // as real hosts do; imgproc reuses connections
  auto serve = [&](HostCounters& counts, bool validators) {
    return [&counts, validators, &photos, &content_type, latency_ms](const httplib::Request& req,
                                                                     httplib::Response& res) {
      counts.gets++;
      const size_t i = std::stoul(req.matches[1]) % photos.size();
      const std::string etag = "\"photo-" + std::to_string(i) + "-v1\"";
      const bool has_inm = req.has_header("If-None-Match");
      const bool has_ims = req.has_header("If-Modified-Since");
      if (has_inm || has_ims) counts.conditional++;
      if (latency_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
      if (validators) {
        res.set_header("ETag", etag);
        res.set_header("Last-Modified", kLastModified);
        // RFC 9110 13.2.2: If-None-Match when present, else If-Modified-Since (never modified since
        // kLastModified, so any date the host sent back is not older than it).
        const bool unchanged =
            has_inm ? req.get_header_value("If-None-Match").find(etag) != std::string::npos
                    : has_ims && req.get_header_value("If-Modified-Since") == kLastModified;
        if (unchanged) {
          counts.not_modified++;
          res.status = 304;
          return;
        }
      }
      counts.bodies++;
      counts.body_bytes += static_cast<long>(photos[i].size());
      res.set_content(photos[i], content_type);
    };
  };
  host.server().Get(R"(/etag/(\d+)\.jpg)", serve(etag_counts, true));
  host.server().Get(R"(/plain/(\d+)\.jpg)", serve(plain_counts, false));
  host.server().Get(R"(/dup/(\d+)\.jpg)", serve(dup_counts, true));
  host.Start();
  setenv("IMGPROC_BINARY", binary.c_str(), 1);

  std::printf(
      "workload: %d rows x %d distinct URLs = %d images (%s, 1.1-1.9 MP, %.1f MiB in all, "
      "generated in %.1f s), host latency %d ms, keep-alive, %u cores\n",
      rows, per_row, images, kind_name.c_str(), static_cast<double>(photo_bytes) / (1 << 20),
      generate_s, latency_ms, std::thread::hardware_concurrency());
  std::printf(
      "imgproc: default settings + ALLOW_PRIVATE_URLS=1 LOG_LEVEL=warn (IMAGE_CACHE on), one "
      "process and fresh DATA_DIR per case\n\n");
  std::printf(
      "columns: wall (upload to `completed`), of which until the upload's 202, imgproc CPU; "
      "imgproc's compressions, uploads (stored objects) and downloads, images reused after a 304 "
      "and for the same bytes (/metrics deltas); the host's GETs, conditional GETs, 304s and full "
      "bodies; files in DATA_DIR/media/objects after the import\n\n");
  bool all_ok = true;
  json out;

  // ---- Case 1: ETag + Last-Modified, 304 on a conditional request
  // --------------------------------
  Import first1, again1;
  {
    TempDir dir("bench-reimport-etag");
    auto server = StartImgproc(dir);
    if (!server) return 1;
    const std::string csv = DistinctCsv(host, "/etag/", rows, per_row);
    first1 = RunImport(*server, csv, etag_counts, timeout);
    Pause(*server, pause_s);
    again1 = RunImport(*server, csv, etag_counts, timeout);
    Stop(*server);
  }
  const bool same_outputs1 = first1.outputs == again1.outputs && !first1.outputs.empty();
  const double wall1 = Ratio(first1.wall_s, again1.wall_s);
  const double cpu1 = Ratio(first1.cpu_s, again1.cpu_s);
  const bool t1_wall = wall1 >= 20, t1_cpu = cpu1 >= 20;
  const bool t1_work = again1.metrics.compress == 0 && again1.metrics.upload == 0;
  const bool t1_cond = again1.host.gets > 0 && again1.host.conditional == again1.host.gets &&
                       again1.host.bodies == 0;
  std::printf("1. %d distinct URLs, host sends ETag + Last-Modified and answers 304\n", images);
  Header();
  Row("first import", first1);
  Row("re-import", again1);
  std::printf(
      "  re-import: %.1fx less wall (target >= 20x: %s), %.1fx less CPU (target >= 20x: %s)\n",
      wall1, Met(t1_wall), cpu1, Met(t1_cpu));
  std::printf(
      "  re-import: %ld compressions, %ld uploads (target 0, 0: %s); host: %ld of %ld GETs "
      "conditional, %ld 304s, %ld bodies (target: only conditional: %s)\n",
      again1.metrics.compress, again1.metrics.upload, Met(t1_work), again1.host.conditional,
      again1.host.gets, again1.host.not_modified, again1.host.bodies, Met(t1_cond));
  std::printf("  output URLs of the re-import %s the first import's\n\n",
              same_outputs1 ? "are" : "are NOT");
  all_ok = all_ok && first1.ok && again1.ok;
  out["etag"] = {{"first", ToJson(first1)},
                 {"reimport", ToJson(again1)},
                 {"wall_ratio", wall1},
                 {"cpu_ratio", cpu1},
                 {"same_output_urls", same_outputs1},
                 {"target_wall_20x", t1_wall},
                 {"target_cpu_20x", t1_cpu},
                 {"target_no_work", t1_work},
                 {"target_only_conditional", t1_cond}};

  // ---- Case 2: no validators: the re-import downloads everything and finds the same bytes -------
  Import first2, again2;
  {
    TempDir dir("bench-reimport-plain");
    auto server = StartImgproc(dir);
    if (!server) return 1;
    const std::string csv = DistinctCsv(host, "/plain/", rows, per_row);
    first2 = RunImport(*server, csv, plain_counts, timeout);
    Pause(*server, pause_s);
    again2 = RunImport(*server, csv, plain_counts, timeout);
    Stop(*server);
  }
  const bool same_outputs2 = first2.outputs == again2.outputs && !first2.outputs.empty();
  const double wall2 = Ratio(first2.wall_s, again2.wall_s);
  const double cpu2 = Ratio(first2.cpu_s, again2.cpu_s);
  const bool t2_work = again2.metrics.compress == 0 && again2.metrics.upload == 0;
  std::printf("2. the same, host sends no validator (the re-import downloads every image again)\n");
  Header();
  Row("first import", first2);
  Row("re-import", again2);
  std::printf(
      "  re-import: %.1fx less wall, %.1fx less CPU; %ld compressions, %ld uploads (target "
      "0, 0: %s); host: %ld GETs, %ld conditional, %ld bodies\n",
      wall2, cpu2, again2.metrics.compress, again2.metrics.upload, Met(t2_work), again2.host.gets,
      again2.host.conditional, again2.host.bodies);
  std::printf("  output URLs of the re-import %s the first import's\n\n",
              same_outputs2 ? "are" : "are NOT");
  all_ok = all_ok && first2.ok && again2.ok;
  out["no_validators"] = {
      {"first", ToJson(first2)}, {"reimport", ToJson(again2)},        {"wall_ratio", wall2},
      {"cpu_ratio", cpu2},       {"same_output_urls", same_outputs2}, {"target_no_work", t2_work}};

  // ---- Case 3: many rows, few distinct URLs
  // -------------------------------------------------------
  Import dup;
  const int dup_rows = rows * per_row;
  {
    TempDir dir("bench-reimport-dup");
    auto server = StartImgproc(dir);
    if (!server) return 1;
    std::string csv = "Serial Number,Product Name,Input Image Urls\n";
    for (int r = 1; r <= dup_rows; ++r) {
      csv += std::to_string(r) + ",SKU" + std::to_string(r) + "," +
             host.Url("/dup/" + std::to_string((r - 1) % distinct_small) + ".jpg") + "\n";
    }
    dup = RunImport(*server, csv, dup_counts, timeout);
    Stop(*server);
  }
  const long want = distinct_small;
  const bool t3 = dup.host.bodies == want && dup.host.gets == want &&
                  dup.metrics.compress == want && dup.metrics.upload == want &&
                  dup.object_files == want;
  std::printf("3. %d rows naming %d distinct URLs (one each)\n", dup_rows, distinct_small);
  Header();
  Row("import", dup);
  std::printf(
      "  host downloads %ld, compressions %ld, uploads %ld, files in media/objects %ld "
      "(target %ld of each: %s)\n\n",
      dup.host.gets, dup.metrics.compress, dup.metrics.upload, dup.object_files, want, Met(t3));
  all_ok = all_ok && dup.ok;
  out["few_urls"] = {{"import", ToJson(dup)},
                     {"rows", dup_rows},
                     {"distinct_urls", distinct_small},
                     {"target_distinct_each", t3}};

  // ---- Case 4: what the cache costs when nothing can be reused --------------------------------
  // Case 2's first import again (new images to a fresh cache: every one hashed, its source and
  // content written, then compressed and stored), against the same import with IMAGE_CACHE=false.
  Import uncached;
  {
    TempDir dir("bench-reimport-nocache");
    auto server = StartImgproc(dir, /*image_cache=*/false);
    if (!server) return 1;
    uncached =
        RunImport(*server, DistinctCsv(host, "/plain/", rows, per_row), plain_counts, timeout);
    Stop(*server);
  }
  const double cost_cpu = first2.cpu_s / std::max(uncached.cpu_s, 0.01);
  const double cost_wall = first2.wall_s / std::max(uncached.wall_s, 0.01);
  std::printf("4. a first import (case 2's) without the cache, against case 2's with it\n");
  Header();
  Row("IMAGE_CACHE=false", uncached);
  Row("IMAGE_CACHE=true", first2);
  std::printf("  the cache on new images: %.2fx the wall, %.2fx the CPU\n\n", cost_wall, cost_cpu);
  all_ok = all_ok && uncached.ok;
  out["first_import_cost"] = {
      {"without_cache", ToJson(uncached)}, {"wall_ratio", cost_wall}, {"cpu_ratio", cost_cpu}};

  out["workload"] = {{"rows", rows},
                     {"per_row", per_row},
                     {"images", images},
                     {"kind", kind_name},
                     {"generate_s", generate_s},
                     {"image_bytes", photo_bytes},
                     {"latency_ms", latency_ms},
                     {"cores", std::thread::hardware_concurrency()}};
  out["all_completed"] = all_ok;
  std::printf("%s: every import %s\n", all_ok ? "done" : "FAILED",
              all_ok ? "completed" : "did not complete (see above)");
  std::printf("%s\n", out.dump().c_str());
  return all_ok ? 0 : 1;
}
