// The speed benchmark of issue 6, in one run: imgproc end to end through its HTTP API with and
// without network latency, the codec limit on the same bytes, the original design's sequential
// Python loop, peak memory on 12 MP photos, the status API under load and the time to accept a
// 10,000-row CSV; then the ratios the issue asks for with their targets (PASS/FAIL).
//
// Everything runs on 127.0.0.1: an image host and a fake ImgBB live in this process (serving
// from memory, with configurable added latency), imgproc is the real binary. Every wait is
// bounded. Not a test: scripts/bench.sh builds, runs it and plots the JSON it writes.
//
//   build/release/bench/imgproc_speed_bench --binary build/release/imgproc
//       [--quick] [--json build/release/bench/speed.json] [--env WORKERS=64 ...]
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "corpus.h"
#include "fixture_server.h"
#include "floor_server.h"
#include "pipeline/image_codec.h"
#include "process_client.h"
#include "process_stats.h"

namespace {

using imgproc::bench::CorpusImage;
using imgproc::bench::SizeClass;
using imgproc::testing::CpuSeconds;
using imgproc::testing::FixtureServer;
using imgproc::testing::ImgprocProcess;
using imgproc::testing::MinorFaults;
using imgproc::testing::PeakRssKib;
using imgproc::testing::SelfCpuSeconds;
using imgproc::testing::TempDir;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr double kMbPerMib = 1.048576;  // a MiB is 2^20 bytes, a MB 10^6

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The 1-minute load average: other work on the machine skews every figure here.
double LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command and returns what it printed on stdout (stderr passes through).
std::string Capture(const std::string& command) {
  std::string out;
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  pclose(pipe);
  return out;
}

// The image host and the fake ImgBB, in this process, each with an added latency per request.
class Servers {
 public:
  explicit Servers(const std::vector<const SizeClass*>& corpus) {
    for (const SizeClass* size : corpus) {
      for (const CorpusImage& image : size->images) images_[image.name] = &image;
      for (const CorpusImage& image : size->jpeg444) images_[image.name] = &image;
    }
    for (FixtureServer* s : {&host_, &imgbb_}) {
      // Latency must not serialise requests: many threads, connections kept alive (a
      // FixtureServer's idle connections wait without polling: they cost no CPU).
      s->server().new_task_queue = [] { return new httplib::ThreadPool(256); };
      s->server().set_keep_alive_max_count(1'000'000);
      s->server().set_keep_alive_timeout(30);
    }
    host_.server().Get(
        R"(/img/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
          Sleep(host_latency_ms_);
          const auto it = images_.find(req.matches[1]);
          if (it == images_.end()) {
            res.status = 404;
            return;
          }
          // Served straight from the corpus (no copy per request).
          const std::string* bytes = &it->second->bytes;
          res.set_content_provider(bytes->size(), it->second->mime,
                                   [bytes](size_t offset, size_t length, httplib::DataSink& sink) {
                                     return sink.write(bytes->data() + offset, length);
                                   });
        });
    // ImgBB's upload API as src/storage/imgbb_storage.cc (and the original design) use it:
    // multipart POST with `key` (form field, or query parameter) and `image`; the answer's
    // data.url is the stored image's URL.
    imgbb_.server().Post("/1/upload", [this](const httplib::Request& req, httplib::Response& res) {
      Sleep(imgbb_latency_ms_);
      const std::string key =
          req.has_file("key") ? req.get_file_value("key").content : req.get_param_value("key");
      const auto fail = [&](int code, const std::string& message) {
        res.status = code;
        res.set_content(json{{"status_code", code},
                             {"error", {{"message", message}, {"code", 100}}},
                             {"status_txt", "Bad Request"}}
                            .dump(),
                        "application/json");
      };
      if (key.empty()) return fail(400, "Empty API key.");
      if (!req.has_file("image") || req.get_file_value("image").content.empty()) {
        return fail(400, "Empty upload source.");
      }
      const size_t size = req.get_file_value("image").content.size();
      const int n = ++uploads_;
      upload_bytes_ += size;
      const std::string id = "bench" + std::to_string(n);
      const std::string url = imgbb_.Url("/i/" + id + ".jpg");
      res.set_content(json{{"data",
                            {{"id", id},
                             {"url", url},
                             {"display_url", url},
                             {"url_viewer", imgbb_.Url("/" + id)},
                             {"size", size}}},
                           {"success", true},
                           {"status", 200}}
                          .dump(),
                      "application/json");
    });
    host_.Start();
    imgbb_.Start();
  }

  void SetLatency(int host_ms, int imgbb_ms) {
    host_latency_ms_ = host_ms;
    imgbb_latency_ms_ = imgbb_ms;
  }
  std::string ImageUrl(const CorpusImage& image, int n) const {
    return host_.Url("/img/" + image.name + "?n=" + std::to_string(n));  // distinct URLs
  }
  std::string UploadUrl() const { return imgbb_.Url("/1/upload"); }
  int uploads() const { return uploads_; }

 private:
  static void Sleep(const std::atomic<int>& ms) {
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms.load()));
  }

  std::map<std::string, const CorpusImage*> images_;
  FixtureServer host_;
  FixtureServer imgbb_;
  std::atomic<int> host_latency_ms_{0};
  std::atomic<int> imgbb_latency_ms_{0};
  std::atomic<int> uploads_{0};
  std::atomic<size_t> upload_bytes_{0};
};

// A CSV in the original design's format: "S. No.,Product Name,Input Image Urls" with unquoted
// URL lists. `rows` rows of each size class in turn, `per_row` images a row, every URL distinct;
// image number n of the CSV is corpus image n % size of its class.
std::string MakeCsv(const Servers& servers,
                    const std::vector<std::pair<const SizeClass*, int>>& parts, int per_row) {
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  int n = 0;
  int r = 0;
  for (const auto& [size, rows] : parts) {
    for (int i = 0; i < rows; ++i) {
      ++r;
      csv += std::to_string(r) + ",SKU" + std::to_string(r);
      for (int j = 0; j < per_row; ++j, ++n) {
        csv +=
            "," + servers.ImageUrl(size->images[static_cast<size_t>(n) % size->images.size()], n);
      }
      csv += "\n";
    }
  }
  return csv;
}

std::string MakeCsv(const Servers& servers, const SizeClass& size, int rows, int per_row) {
  return MakeCsv(servers, {{&size, rows}}, per_row);
}

struct Options {
  std::string binary = "build/release/imgproc";
  std::string json_path = "build/release/bench/speed.json";
  std::string python = "/usr/bin/python3";
  std::string baseline_script = "bench/baseline.py";
  std::vector<std::string> env;  // KEY=VALUE for imgproc
  bool quick = false;
  int rows = 100;
  int per_row = 4;
  int baseline_rows = 100;
  int host_latency_ms = 80;
  int imgbb_latency_ms = 150;
  int big_images = 200;
  int status_products = 1000;
  int wrk_seconds = 10;
  int accept_rows = 10'000;
  double codec_seconds = 5;
  double turn_codec_seconds = 3;  // each 2 MP codec loop between the (a) turns
  int timeout_s = 600;            // per scenario
  int e2e_runs = 3;               // of each (a) scenario, taken in turns
  int wrk_runs = 3;               // of each wrk load (e)
  // The scenarios to run (--only): codec, e2e, baseline, memory, status, accept; empty: all.
  std::vector<std::string> only;

  bool Runs(const std::string& scenario) const {
    return only.empty() || std::find(only.begin(), only.end(), scenario) != only.end();
  }
};

// The environment every imgproc run gets, plus --env overrides.
std::map<std::string, std::string> ImgprocEnv(const Options& options, const Servers& servers) {
  std::map<std::string, std::string> env = {{"STORAGE", "imgbb"},
                                            {"IMGBB_API_KEY", "x"},
                                            {"IMGBB_UPLOAD_URL", servers.UploadUrl()},
                                            {"ALLOW_PRIVATE_URLS", "1"},
                                            // Every image compressed, like the codec loop it is
                                            // set against: the corpus repeats its pictures under
                                            // distinct URLs, which the image cache would make
                                            // once (bench/reimport_bench.cc measures the cache).
                                            {"IMAGE_CACHE", "false"},
                                            {"LOG_LEVEL", "warn"}};
  for (const std::string& kv : options.env) {
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

// One run of imgproc serve on one CSV, until the request completes (or the timeout).
json RunEndToEnd(const Options& options, const Servers& servers, const std::string& csv,
                 int images) {
  json r = {{"ok", false}, {"images", images}};
  TempDir dir("speed");
  ImgprocProcess server(dir.path(), ImgprocEnv(options, servers));
  if (!server.Start()) {
    r["error"] = "imgproc did not start: " + server.log();
    return r;
  }
  const double self_before = SelfCpuSeconds();
  const double cpu_before = CpuSeconds(server.pid());
  const long faults_before = MinorFaults(server.pid());
  const auto start = Clock::now();
  auto res = server.Upload(csv);
  if (!res || res->status != 202) {
    r["error"] = "upload: " + (res ? std::to_string(res->status) + " " + res->body : "no answer");
    return r;
  }
  const std::string id = json::parse(res->body)["request_id"];
  httplib::Client client("127.0.0.1", server.port());
  client.set_keep_alive(true);
  client.set_read_timeout(30, 0);
  json status;
  std::vector<double> poll_ms;  // each poll's latency while the images are being processed
  const auto deadline = start + std::chrono::seconds(options.timeout_s);
  while (Clock::now() < deadline) {
    const auto asked = Clock::now();
    auto s = client.Get("/status/" + id + "/");
    poll_ms.push_back(SecondsSince(asked) * 1000);
    if (s && s->status == 200) {
      status = json::parse(s->body, nullptr, false);
      if (status.is_object() && status["status"] == "completed") break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double seconds = SecondsSince(start);
  const double cpu = CpuSeconds(server.pid()) - cpu_before;
  r["peak_rss_mib"] = PeakRssKib(server.pid()) / 1024.0;
  const bool completed = status.is_object() && status["status"] == "completed";
  const int done = completed ? status["progress"]["images_done"].get<int>() : 0;
  const int failed = completed ? status["progress"]["images_failed"].get<int>() : 0;
  r["seconds"] = seconds;
  r["images_done"] = done;
  r["images_failed"] = failed;
  r["images_per_s"] = done / seconds;
  r["cpu_s"] = cpu;
  r["cpu_s_per_image"] = done > 0 ? cpu / done : 0.0;
  r["page_faults_per_image"] =
      done > 0 ? static_cast<double>(MinorFaults(server.pid()) - faults_before) / done : 0.0;
  r["bench_process_cpu_s"] = SelfCpuSeconds() - self_before;  // image host + fake ImgBB + polls
  std::sort(poll_ms.begin(), poll_ms.end());
  r["polls"] = poll_ms.size();
  r["poll_ms_p50"] = poll_ms.empty() ? 0.0 : poll_ms[poll_ms.size() / 2];
  r["poll_ms_max"] = poll_ms.empty() ? 0.0 : poll_ms.back();
  r["ok"] = completed && done == images && failed == 0;
  if (!completed) {
    r["error"] = "not completed after " + std::to_string(options.timeout_s) + " s";
  } else if (failed > 0) {
    r["error"] = std::to_string(failed) + " images failed";
  }
  server.Signal(SIGTERM);
  if (server.Wait(std::chrono::seconds(30)) < 0) server.Signal(SIGKILL);
  server.Wait(std::chrono::seconds(10));
  return r;
}

// CompressToJpeg on `images` in a tight loop on `threads` threads for `seconds`.
json RunCodec(const std::vector<CorpusImage>& images, int threads, double seconds) {
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  const double cpu_before = SelfCpuSeconds();
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      // Bounded: stops at the deadline, or after 100,000 images whatever the machine.
      while (Clock::now() < until && next < 100'000) {
        const CorpusImage& image = images[static_cast<size_t>(next++) % images.size()];
        if (!imgproc::pipeline::CompressToJpeg(image.bytes, {}).ok()) failed = true;
      }
    });
  }
  for (auto& t : pool) t.join();
  const double wall = SecondsSince(start);
  const double cpu = SelfCpuSeconds() - cpu_before;
  const int done = next;
  return {{"ok", !failed},
          {"images", done},
          {"seconds", wall},
          {"threads", threads},
          {"images_per_s", done / wall},
          {"cpu_s_per_image", cpu / done}};
}

// The original design's Celery task in Python (bench/baseline.py) on the first `rows` rows of the
// CSV, against the same servers.
json RunBaseline(const Options& options, const Servers& servers, const std::string& csv, int rows) {
  TempDir dir("speed-baseline");
  const auto path = dir.path() / "products.csv";
  std::ofstream(path) << csv;
  const std::string command =
      "timeout " + std::to_string(options.timeout_s + 60) + " " + ShellQuote(options.python) + " " +
      ShellQuote(options.baseline_script) + " --csv " + ShellQuote(path.string()) + " --rows " +
      std::to_string(rows) + " --imgbb-url " + ShellQuote(servers.UploadUrl()) +
      " --key x --max-seconds " + std::to_string(options.timeout_s);
  const std::string out = Capture(command);
  // The script's last line is its JSON result.
  const size_t end = out.find_last_not_of('\n');
  const size_t last = end == std::string::npos ? 0 : out.rfind('\n', end);
  json r = json::parse(out.substr(last == std::string::npos ? 0 : last + 1), nullptr, false);
  if (!r.is_object()) {
    return {{"ok", false}, {"error", "baseline.py printed no result: " + out.substr(0, 500)}};
  }
  return r;
}

double Number(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

bool Ok(const json& j) { return j.is_object() && j.value("ok", false); }

// The run of median `key`, with every run's `key` beside it (as "runs_<key>"); the first failed
// run if any.
json MedianRun(std::vector<json> runs, const std::string& key) {
  json all = json::array();
  for (const json& r : runs) all.push_back(Number(r, key.c_str()));
  for (const json& r : runs) {
    if (!Ok(r)) return r;
  }
  std::sort(runs.begin(), runs.end(), [&](const json& a, const json& b) {
    return Number(a, key.c_str()) < Number(b, key.c_str());
  });
  json median = runs[runs.size() / 2];
  median["runs_" + key] = all;
  return median;
}

// A parsed duration of wrk ("850.00us", "1.20ms", "2.00s") in milliseconds.
double WrkMillis(const std::string& value, const std::string& unit) {
  const double v = std::stod(value);
  if (unit == "us") return v / 1000;
  if (unit == "s") return v * 1000;
  if (unit == "m") return v * 60'000;
  return v;
}

// wrk -t2 -c50 on `url` for `seconds`, with an extra request header unless empty: requests/s,
// p50 and p99 in ms, non-2xx count, "ok".
json RunWrk(const std::string& url, int seconds, const std::string& header) {
  json r;
  const std::string out =
      Capture("timeout " + std::to_string(seconds + 30) + " wrk -t2 -c50 -d" +
              std::to_string(seconds) + "s --latency " +
              (header.empty() ? "" : "-H " + ShellQuote(header) + " ") + ShellQuote(url) + " 2>&1");
  r["wrk_output"] = out;
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Requests/sec:\s+([\d.]+))"))) {
    r["requests_per_s"] = std::stod(m[1]);
  }
  for (const char* p : {"50", "99"}) {
    if (std::regex_search(out, m,
                          std::regex(std::string(R"(\s)") + p + R"(%\s+([\d.]+)(us|ms|s|m)\b)"))) {
      r[std::string("p") + p + "_ms"] = WrkMillis(m[1], m[2]);
    }
  }
  int non_2xx = 0;
  if (std::regex_search(out, m, std::regex(R"(Non-2xx or 3xx responses:\s+(\d+))"))) {
    non_2xx = std::stoi(m[1]);
  }
  r["non_2xx"] = non_2xx;
  r["ok"] = r.contains("requests_per_s") && r.contains("p99_ms") && non_2xx == 0;
  if (!r["ok"].get<bool>()) r["error"] = "wrk: " + out.substr(0, 500);
  return r;
}

// The status of a request of `products` pass-through products (no "http": completed at once)
// under wrk -t2 -c50: as is, and asking for gzip (in "gzip"). Each is also measured against a
// FloorServer sending the same response bytes ("floor", "gzip"/"floor"), the runs alternating
// with imgproc's so that both see the same phase of a shared machine: how much of the latency is
// imgproc's own ("p99_over_floor").
json RunStatusLoad(const Options& options, const Servers& servers) {
  json r = {{"ok", false}, {"products", options.status_products}};
  TempDir dir("speed-status");
  ImgprocProcess server(dir.path(), ImgprocEnv(options, servers));
  if (!server.Start()) {
    r["error"] = "imgproc did not start: " + server.log();
    return r;
  }
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  for (int p = 1; p <= options.status_products; ++p) {
    csv +=
        std::to_string(p) + ",SKU" + std::to_string(p) + ",no-link-" + std::to_string(p) + ".jpg\n";
  }
  auto res = server.Upload(csv);
  if (!res || res->status != 202) {
    r["error"] = "upload: " + (res ? std::to_string(res->status) + " " + res->body : "no answer");
    return r;
  }
  const std::string id = json::parse(res->body)["request_id"];
  const json status = server.WaitForCompletion(id, std::chrono::seconds(60));
  if (!status.is_object() || status["status"] != "completed") {
    r["error"] = "the pass-through request did not complete";
    return r;
  }
  r["body_bytes"] = status.dump().size();
  const std::string path = "/status/" + id + "/";
  const std::string url = server.BaseUrl() + path;
  // Browsers, Python requests and most HTTP libraries ask for gzip.
  const std::string encodings[] = {"", "Accept-Encoding: gzip"};
  std::vector<std::unique_ptr<imgproc::bench::FloorServer>> floors;
  for (const std::string& header : encodings) {
    const auto response = imgproc::bench::FetchRawResponse(server.port(), path, header);
    if (!response) {
      r["error"] = "the status response is not framed by Content-Length";
      return r;
    }
    floors.push_back(std::make_unique<imgproc::bench::FloorServer>(*response));
    if (!floors.back()->Start()) {
      r["error"] = "the floor server did not start";
      return r;
    }
  }
  std::vector<json> runs[2][2];  // [encoding][imgproc, floor]
  for (int i = 0; i < options.wrk_runs; ++i) {
    for (int e = 0; e < 2; ++e) {
      const std::string floor_url = "http://127.0.0.1:" + std::to_string(floors[e]->port()) + path;
      runs[e][0].push_back(RunWrk(url, options.wrk_seconds, encodings[e]));
      runs[e][1].push_back(RunWrk(floor_url, options.wrk_seconds, encodings[e]));
      for (const auto& of : runs[e]) {
        if (!Ok(of.back())) {
          r["error"] = of.back().value("error", std::string("wrk failed"));
          return r;
        }
      }
    }
  }
  for (int e = 0; e < 2; ++e) {
    json measured = MedianRun(std::move(runs[e][0]), "p99_ms");
    measured["floor"] = MedianRun(std::move(runs[e][1]), "p99_ms");
    measured["p99_over_floor"] = Number(measured, "p99_ms") / Number(measured["floor"], "p99_ms");
    if (e == 0) {
      r.update(measured);
    } else {
      r["gzip"] = measured;
    }
  }
  return r;
}

// The status of a request of `products` images still in progress under wrk -t2 -c50: their host
// accepts connections and never answers (a listening socket nothing reads), so every poll reads
// the store and serialises the request again, shared only by the polls that arrive together.
json RunUnfinishedStatusLoad(const Options& options, const Servers& servers) {
  json r = {{"ok", false}, {"products", options.status_products}};
  int silent_port = 0;
  const int silent = imgproc::testing::ListenOnLoopback(silent_port);
  if (silent < 0) {
    r["error"] = "cannot listen for the silent host";
    return r;
  }
  const std::string host = "http://127.0.0.1:" + std::to_string(silent_port);
  TempDir dir("speed-status-unfinished");
  auto env = ImgprocEnv(options, servers);
  env["FETCH_TIMEOUT_MS"] = "600000";  // the downloads outlast the load
  ImgprocProcess server(dir.path(), env);
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  for (int p = 1; p <= options.status_products; ++p) {
    csv += std::to_string(p) + ",SKU" + std::to_string(p) + "," + host + "/img-" +
           std::to_string(p) + ".jpg\n";
  }
  if (!server.Start()) {
    r["error"] = "imgproc did not start: " + server.log();
  } else if (auto res = server.Upload(csv); !res || res->status != 202) {
    r["error"] = "upload: " + (res ? std::to_string(res->status) + " " + res->body : "no answer");
  } else {
    const std::string id = json::parse(res->body)["request_id"];
    r["body_bytes"] = server.Status(id).dump().size();
    std::vector<json> runs;
    for (int i = 0; i < options.wrk_runs && (runs.empty() || Ok(runs.back())); ++i) {
      runs.push_back(RunWrk(server.BaseUrl() + "/status/" + id + "/", options.wrk_seconds, ""));
    }
    r.update(MedianRun(std::move(runs), "p99_ms"));
    const json after = server.Status(id);
    if (!after.is_object() || after["status"] == "completed") {
      r["ok"] = false;
      r["error"] = "the request did not stay unfinished under the load";
    }
  }
  close(silent);
  return r;
}

// Time from POSTing a CSV of `accept_rows` rows to its 202, each try on a fresh imgproc.
json RunAccept(const Options& options, const Servers& servers, const SizeClass& size) {
  json r = {{"ok", false}, {"rows", options.accept_rows}};
  const std::string csv = MakeCsv(servers, size, options.accept_rows, options.per_row);
  r["csv_bytes"] = csv.size();
  std::vector<double> times;
  for (int attempt = 0; attempt < 3; ++attempt) {
    TempDir dir("speed-accept");
    ImgprocProcess server(dir.path(), ImgprocEnv(options, servers));
    if (!server.Start()) {
      r["error"] = "imgproc did not start: " + server.log();
      return r;
    }
    const auto start = Clock::now();
    auto res = server.Upload(csv);
    const double seconds = SecondsSince(start);
    if (!res || res->status != 202) {
      r["error"] = "upload: " + (res ? std::to_string(res->status) + " " + res->body.substr(0, 300)
                                     : "no answer");
      return r;
    }
    times.push_back(seconds);
    // The process is thrown away with the images it started on (SIGKILL by its destructor).
  }
  r["seconds"] = times;
  std::sort(times.begin(), times.end());
  r["median_s"] = times[times.size() / 2];
  r["ok"] = true;
  return r;
}

void PrintRun(const char* name, const json& r) {
  if (!Ok(r) && !r.contains("seconds")) {
    std::printf("%-34s FAILED: %s\n", name, r.value("error", std::string("?")).c_str());
  } else {
    std::printf(
        "%-34s %5d images %7.2f s %8.2f images/s  CPU %6.1f ms/image  peak RSS %6.1f MiB  "
        "%5.0f faults/image  status poll p50 %.1f max %.1f ms%s\n",
        name, r.value("images_done", 0), Number(r, "seconds"), Number(r, "images_per_s"),
        1000 * Number(r, "cpu_s_per_image"), Number(r, "peak_rss_mib"),
        Number(r, "page_faults_per_image"), Number(r, "poll_ms_p50"), Number(r, "poll_ms_max"),
        Ok(r) ? "" : ("  FAILED: " + r.value("error", std::string("?"))).c_str());
  }
  std::fflush(stdout);
}

void PrintCodec(const char* name, const json& r) {
  std::printf("%-34s %5d images %7.2f s %8.2f images/s  CPU %6.1f ms/image%s\n", name,
              r.value("images", 0), Number(r, "seconds"), Number(r, "images_per_s"),
              1000 * Number(r, "cpu_s_per_image"), Ok(r) ? "" : "  FAILED");
  std::fflush(stdout);
}

std::vector<CorpusImage> JpegsOnly(const std::vector<CorpusImage>& images) {
  std::vector<CorpusImage> jpegs;
  for (const CorpusImage& image : images) {
    if (image.mime == "image/jpeg") jpegs.push_back(image);
  }
  return jpegs;
}

double MeanBytes(const std::vector<CorpusImage>& images) {
  double total = 0;
  for (const CorpusImage& image : images) total += static_cast<double>(image.bytes.size());
  return images.empty() ? 0 : total / static_cast<double>(images.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc speed benchmark (issue 6): end to end, codec limit, Python baseline");
  Options o;
  app.add_option("--binary", o.binary, "imgproc binary")->capture_default_str();
  app.add_option("--json", o.json_path, "where to write the results")->capture_default_str();
  app.add_option("--python", o.python, "python3 with PIL and requests")->capture_default_str();
  app.add_option("--baseline-script", o.baseline_script, "the Python baseline")
      ->capture_default_str();
  app.add_option("--env", o.env, "KEY=VALUE added to imgproc's environment (repeatable)");
  app.add_flag("--quick", o.quick, "short smoke run (fewer rows and images, shorter loads)");
  auto* rows = app.add_option("--rows", o.rows, "CSV rows for (a)")->capture_default_str();
  app.add_option("--images-per-row", o.per_row, "image URLs per row")->capture_default_str();
  auto* baseline_rows =
      app.add_option("--baseline-rows", o.baseline_rows, "rows the Python baseline processes")
          ->capture_default_str();
  app.add_option("--host-latency-ms", o.host_latency_ms, "image host latency (latency runs)")
      ->capture_default_str();
  app.add_option("--imgbb-latency-ms", o.imgbb_latency_ms, "fake ImgBB latency (latency runs)")
      ->capture_default_str();
  auto* big = app.add_option("--big-images", o.big_images, "12 MP images for the memory run (d)")
                  ->capture_default_str();
  app.add_option("--status-products", o.status_products, "products of the status request (e)")
      ->capture_default_str();
  auto* wrk =
      app.add_option("--wrk-seconds", o.wrk_seconds, "wrk duration (e)")->capture_default_str();
  app.add_option("--accept-rows", o.accept_rows, "rows of the CSV whose accept is timed (f)")
      ->capture_default_str();
  auto* wrk_runs = app.add_option("--wrk-runs", o.wrk_runs, "runs of each wrk load (e) (median)")
                       ->capture_default_str()
                       ->check(CLI::Range(1, 9));
  auto* e2e_runs = app.add_option("--e2e-runs", o.e2e_runs, "runs of each (a) scenario (median)")
                       ->capture_default_str()
                       ->check(CLI::Range(1, 9));
  auto* codec = app.add_option("--codec-seconds", o.codec_seconds, "codec loop time per corpus")
                    ->capture_default_str();
  auto* turn_codec_opt =
      app.add_option("--turn-codec-seconds", o.turn_codec_seconds,
                     "2 MP codec loop time between the (a) turns (for the overhead ratio)")
          ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "seconds before a scenario gives up")
      ->capture_default_str();
  app.add_option("--only", o.only,
                 "run only these scenarios (comma-separated; ratios that need "
                 "another one are skipped)")
      ->delimiter(',')
      ->check(CLI::IsMember({"codec", "e2e", "baseline", "memory", "status", "accept"}));
  std::string corpus_dir;
  app.add_option("--write-corpus", corpus_dir, "write the corpus images to this folder and exit");
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {  // explicit options win
    if (e2e_runs->count() == 0) o.e2e_runs = 1;
    if (wrk_runs->count() == 0) o.wrk_runs = 1;
    if (rows->count() == 0) o.rows = 10;
    if (baseline_rows->count() == 0) o.baseline_rows = 10;
    if (big->count() == 0) o.big_images = 16;
    if (wrk->count() == 0) o.wrk_seconds = 3;
    if (codec->count() == 0) o.codec_seconds = 1.5;
    if (turn_codec_opt->count() == 0) o.turn_codec_seconds = 1;
  }
  o.baseline_rows = std::min(o.baseline_rows, o.rows);
  o.binary = std::filesystem::absolute(o.binary).string();
  if (!std::filesystem::exists(o.binary)) {
    std::fprintf(stderr, "no imgproc binary at %s (--binary)\n", o.binary.c_str());
    return 2;
  }
  setenv("IMGPROC_BINARY", o.binary.c_str(), 1);
  // imgproc gets the SQLite store in its temp DATA_DIR and no broker, whatever this shell has.
  unsetenv("DATABASE_URL");
  unsetenv("REDIS_URL");
  signal(SIGPIPE, SIG_IGN);
  if (!imgproc::pipeline::InitCodec().ok()) return 2;

  const double load_at_start = LoadAverage();  // before the corpus keeps every core busy
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto start = Clock::now();
  const SizeClass small =
      imgproc::bench::MakeSizeClass("0.5 MP", "0.5mp", 816, 612, 8, false, cores);
  const SizeClass medium = imgproc::bench::MakeSizeClass("2 MP", "2mp", 1632, 1224, 8, true, cores);
  const SizeClass large =
      imgproc::bench::MakeSizeClass("12 MP", "12mp", 4000, 3000, 8, false, cores);
  json results = {{"quick", o.quick},
                  {"load_average_at_start", load_at_start},
                  {"cores", cores},
                  {"binary", o.binary},
                  {"env", o.env},
                  {"workload",
                   {{"rows", o.rows},
                    {"images_per_row", o.per_row},
                    {"baseline_rows", o.baseline_rows},
                    {"host_latency_ms", o.host_latency_ms},
                    {"imgbb_latency_ms", o.imgbb_latency_ms},
                    {"big_images", o.big_images},
                    {"status_products", o.status_products},
                    {"wrk_seconds", o.wrk_seconds},
                    {"wrk_runs", o.wrk_runs},
                    {"e2e_runs", o.e2e_runs},
                    {"turn_codec_seconds", o.turn_codec_seconds},
                    {"accept_rows", o.accept_rows}}}};
  if (!corpus_dir.empty()) {
    std::filesystem::create_directories(corpus_dir);
    for (const SizeClass* size : {&small, &medium, &large}) {
      for (const auto* images : {&size->images, &size->jpeg444}) {
        for (const CorpusImage& image : *images) {
          std::ofstream(std::filesystem::path(corpus_dir) / image.name, std::ios::binary)
              << image.bytes;
        }
      }
    }
    std::printf("corpus written to %s\n", corpus_dir.c_str());
    return 0;
  }
  std::printf("corpus (%.1f s to generate): ", SecondsSince(start));
  for (const SizeClass* size : {&small, &medium, &large}) {
    std::printf("%s %dx%d mean %.0f KiB (PNG %.0f KiB)  ", size->label.c_str(), size->width,
                size->height, MeanBytes(JpegsOnly(size->images)) / 1024,
                size->images.back().bytes.size() / 1024.0);
    json images = json::array();
    for (const CorpusImage& image : size->images) {
      images.push_back({{"name", image.name}, {"bytes", image.bytes.size()}});
    }
    results["corpus"][size->key] = {
        {"width", size->width}, {"height", size->height}, {"images", images}};
  }
  std::printf("\n%d cores; imgproc env: STORAGE=imgbb (fake), SQLite", cores);
  for (const std::string& kv : o.env) std::printf(" %s", kv.c_str());
  std::printf("\n\n");
  std::fflush(stdout);

  // (b) The codec limit, with nothing else running.
  json& codec_results = results["codec"];
  if (o.Runs("codec")) {
    for (const SizeClass* size : {&small, &medium, &large}) {
      codec_results[size->key] = RunCodec(size->images, cores, o.codec_seconds);
      PrintCodec(("(b) codec " + size->label + " (7 JPEG : 1 PNG)").c_str(),
                 codec_results[size->key]);
    }
    codec_results["2mp_jpeg420"] = RunCodec(JpegsOnly(medium.images), cores, o.codec_seconds);
    PrintCodec("(b) codec 2 MP, JPEG 4:2:0 only", codec_results["2mp_jpeg420"]);
    codec_results["2mp_jpeg444"] = RunCodec(medium.jpeg444, cores, o.codec_seconds);
    PrintCodec("(b) codec 2 MP, JPEG 4:4:4 only", codec_results["2mp_jpeg444"]);
  }

  Servers servers({&small, &medium, &large});
  const std::string csv = MakeCsv(servers, medium, o.rows, o.per_row);
  const int images = o.rows * o.per_row;

  // (a) End to end, without and with latency: runs taken in turns (the machine drifts from one
  // few-second run to the next), each figure the median run. With (b), the 2 MP codec loop is
  // measured between the turns too (and once after the last), so that each no-latency run's CPU
  // per image is set against the codec loop's on either side of it, seconds apart: the VM's speed
  // moved up to 37% between two codec runs a minute apart.
  const bool codec_turns = o.Runs("codec") && o.Runs("e2e");
  std::vector<json> turn_codec;
  std::vector<double> turn_overhead;
  if (o.Runs("e2e")) {
    const std::string latency_label = "(a) imgproc 2 MP, " + std::to_string(o.host_latency_ms) +
                                      "+" + std::to_string(o.imgbb_latency_ms) + " ms";
    std::vector<json> plain;
    std::vector<json> latency;
    for (int i = 0; i < o.e2e_runs; ++i) {
      if (codec_turns) {
        turn_codec.push_back(RunCodec(medium.images, cores, o.turn_codec_seconds));
        PrintCodec(("    run " + std::to_string(i + 1) + ", codec 2 MP").c_str(),
                   turn_codec.back());
      }
      servers.SetLatency(0, 0);
      plain.push_back(RunEndToEnd(o, servers, csv, images));
      PrintRun(("    run " + std::to_string(i + 1) + ", no latency").c_str(), plain.back());
      servers.SetLatency(o.host_latency_ms, o.imgbb_latency_ms);
      latency.push_back(RunEndToEnd(o, servers, csv, images));
      PrintRun(("    run " + std::to_string(i + 1) + ", latency").c_str(), latency.back());
    }
    if (codec_turns) {
      turn_codec.push_back(RunCodec(medium.images, cores, o.turn_codec_seconds));
      PrintCodec("    after the last run, codec 2 MP", turn_codec.back());
      for (size_t i = 0; i < plain.size(); ++i) {
        const double codec = (Number(turn_codec[i], "cpu_s_per_image") +
                              Number(turn_codec[i + 1], "cpu_s_per_image")) /
                             2;
        turn_overhead.push_back(Number(plain[i], "cpu_s_per_image") / codec);
      }
      codec_results["2mp_turns"] = turn_codec;
      results["overhead_per_turn"] = turn_overhead;
    }
    results["e2e_no_latency"] = MedianRun(plain, "images_per_s");
    PrintRun("(a) imgproc 2 MP, no latency", results["e2e_no_latency"]);
    results["e2e_latency"] = MedianRun(latency, "images_per_s");
    PrintRun(latency_label.c_str(), results["e2e_latency"]);
  }
  // (c) The original design's loop, same CSV, same latencies.
  if (o.Runs("baseline")) {
    servers.SetLatency(o.host_latency_ms, o.imgbb_latency_ms);
    results["baseline"] = RunBaseline(o, servers, csv, o.baseline_rows);
    const json& b = results["baseline"];
    if (Ok(b)) {
      std::printf("%-34s %5d images %7.2f s %8.2f images/s\n", "(c) Python baseline, same latency",
                  b.value("images", 0), Number(b, "seconds"), Number(b, "images_per_s"));
    } else {
      std::printf("%-34s FAILED: %s\n", "(c) Python baseline",
                  b.value("error", std::string("?")).c_str());
    }
    std::fflush(stdout);
  }

  // (d) Peak memory on 12 MP photos.
  if (o.Runs("memory")) {
    servers.SetLatency(0, 0);
    const int big_rows = std::max(1, o.big_images / o.per_row);
    results["peak_rss_12mp"] =
        RunEndToEnd(o, servers, MakeCsv(servers, large, big_rows, o.per_row), big_rows * o.per_row);
    PrintRun("(d) imgproc 12 MP, no latency", results["peak_rss_12mp"]);
    // Small images first teach the pixel budget a small estimate; then the 12 MP ones come, with
    // the host's latency, so that many downloads start before the first of them is seen.
    servers.SetLatency(o.host_latency_ms, 0);
    results["peak_rss_after_small"] = RunEndToEnd(
        o, servers, MakeCsv(servers, {{&small, big_rows}, {&large, big_rows}}, o.per_row),
        2 * big_rows * o.per_row);
    PrintRun(("(d) 0.5 MP, then 12 MP, " + std::to_string(o.host_latency_ms) + " ms").c_str(),
             results["peak_rss_after_small"]);
  }

  // (e) The status API under load.
  if (o.Runs("status")) {
    results["status_load"] = RunStatusLoad(o, servers);
    const json& s = results["status_load"];
    if (Ok(s)) {
      std::printf("%-34s %5d products, %zu KiB body: %.0f requests/s, p50 %.2f ms, p99 %.2f ms\n",
                  "(e) status under wrk -t2 -c50", o.status_products,
                  s.value("body_bytes", size_t{0}) / 1024, Number(s, "requests_per_s"),
                  Number(s, "p50_ms"), Number(s, "p99_ms"));
      const json& g = s["gzip"];
      std::printf("%-34s %5d products, gzip: %.0f requests/s, p50 %.2f ms, p99 %.2f ms\n",
                  "(e) the same, Accept-Encoding: gzip", o.status_products,
                  Number(g, "requests_per_s"), Number(g, "p50_ms"), Number(g, "p99_ms"));
      for (const json* load : {&s, &g}) {
        const json& f = (*load)["floor"];
        std::printf("%-34s %s: %.0f requests/s, p99 %.2f ms; imgproc's p99 is x%.2f of it\n",
                    "(e) floor: its bytes, sent back", load == &s ? "plain" : "gzip",
                    Number(f, "requests_per_s"), Number(f, "p99_ms"),
                    Number(*load, "p99_over_floor"));
      }
    } else {
      std::printf("%-34s FAILED: %s\n", "(e) status under load",
                  s.value("error", std::string("?")).c_str());
    }
    std::fflush(stdout);
  }

  // (e) The same for a request still in progress (informational: the issue's target is the above).
  if (o.Runs("status")) {
    results["status_unfinished_load"] = RunUnfinishedStatusLoad(o, servers);
    const json& s = results["status_unfinished_load"];
    if (Ok(s)) {
      std::printf("%-34s %5d products, %zu KiB body: %.0f requests/s, p50 %.2f ms, p99 %.2f ms\n",
                  "(e) status of one in progress", o.status_products,
                  s.value("body_bytes", size_t{0}) / 1024, Number(s, "requests_per_s"),
                  Number(s, "p50_ms"), Number(s, "p99_ms"));
    } else {
      std::printf("%-34s FAILED: %s\n", "(e) status of one in progress",
                  s.value("error", std::string("?")).c_str());
    }
    std::fflush(stdout);
  }

  // (f) Accepting a 10,000-row CSV.
  if (o.Runs("accept")) {
    results["accept"] = RunAccept(o, servers, medium);
    const json& a = results["accept"];
    if (Ok(a)) {
      std::printf("%-34s %d rows (%zu KiB): median %.3f s of 3\n", "(f) accept (POST to 202)",
                  o.accept_rows, a.value("csv_bytes", size_t{0}) / 1024, Number(a, "median_s"));
    } else {
      std::printf("%-34s FAILED: %s\n", "(f) accept", a.value("error", std::string("?")).c_str());
    }
    std::fflush(stdout);
  }

  // The issue's ratios and limits.
  const json& e0 = results["e2e_no_latency"];
  const json& el = results["e2e_latency"];
  const json& c2 = codec_results["2mp"];
  const bool turns_ok =
      codec_turns && std::all_of(turn_codec.begin(), turn_codec.end(), Ok) && Ok(e0);
  std::vector<double> sorted_overhead = turn_overhead;
  std::sort(sorted_overhead.begin(), sorted_overhead.end());
  const double overhead =
      sorted_overhead.empty() ? std::nan("") : sorted_overhead[sorted_overhead.size() / 2];
  const json& base = results["baseline"];
  struct Target {
    const char* key;
    const char* what;
    double value;
    bool valid;  // every measurement it needs succeeded
    bool ran;    // every scenario it needs was selected (--only)
    bool at_most;
    double target;
    const char* unit;
  };
  const Target targets[] = {
      {"overhead", "imgproc CPU/image (a, no latency) / codec (b, 2 MP) beside it", overhead,
       turns_ok, codec_turns, true, 1.25, "x"},
      {"network_hidden", "images/s (a, latency) / images/s (a, no latency)",
       Number(el, "images_per_s") / Number(e0, "images_per_s"), Ok(el) && Ok(e0), o.Runs("e2e"),
       false, 0.85, "x"},
      {"speedup", "images/s (a, latency) / Python baseline images/s (c)",
       Number(el, "images_per_s") / Number(base, "images_per_s"), Ok(el) && Ok(base),
       o.Runs("e2e") && o.Runs("baseline"), false, 20, "x"},
      // The issue's limit is 300 MB (10^6 bytes), 286.1 MiB.
      {"peak_rss_mb", "peak RSS, 12 MP request (d)",
       Number(results["peak_rss_12mp"], "peak_rss_mib") * kMbPerMib, Ok(results["peak_rss_12mp"]),
       o.Runs("memory"), true, 300, "MB"},
      {"peak_rss_mixed_mb", "peak RSS, 0.5 MP then 12 MP with latency (d)",
       Number(results["peak_rss_after_small"], "peak_rss_mib") * kMbPerMib,
       Ok(results["peak_rss_after_small"]), o.Runs("memory"), true, 300, "MB"},
      {"status_p99_ms", "status p99 under wrk -c50 (e)", Number(results["status_load"], "p99_ms"),
       Ok(results["status_load"]), o.Runs("status"), true, 5, "ms"},
      {"status_p99_gzip_ms", "the same, clients accepting gzip (e)",
       Number(results["status_load"]["gzip"], "p99_ms"), Ok(results["status_load"]),
       o.Runs("status"), true, 5, "ms"},
      {"accept_10k_s", "accept a 10,000-row CSV, median (f)", Number(results["accept"], "median_s"),
       Ok(results["accept"]), o.Runs("accept"), true, 1, "s"},
  };
  std::printf("\n%-15s %-64s %9s %9s  %s\n", "ratio", "definition", "value", "target", "");
  json& ratios = results["ratios"];
  for (const Target& t : targets) {
    if (!t.ran) {
      std::printf("%-15s %-64s %9s\n", t.key, t.what, "skipped");
      continue;
    }
    const bool pass = t.valid && std::isfinite(t.value) &&
                      (t.at_most ? t.value <= t.target : t.value >= t.target);
    std::printf("%-15s %-64s %9.3f %s%7g%-3s %s\n", t.key, t.what, t.value,
                t.at_most ? "<=" : ">=", t.target, t.unit, pass ? "PASS" : "FAIL");
    ratios[t.key] = {
        {"what", t.what},     {"value", std::isfinite(t.value) ? json(t.value) : json(nullptr)},
        {"target", t.target}, {"at_most", t.at_most},
        {"unit", t.unit},     {"pass", pass}};
  }

  const bool all_ran =
      (!o.Runs("e2e") || (Ok(e0) && Ok(el))) && (!o.Runs("baseline") || Ok(base)) &&
      (!o.Runs("memory") ||
       (Ok(results["peak_rss_12mp"]) && Ok(results["peak_rss_after_small"]))) &&
      (!o.Runs("status") ||
       (Ok(results["status_load"]) && Ok(results["status_unfinished_load"]))) &&
      (!o.Runs("accept") || Ok(results["accept"])) &&
      (!o.Runs("codec") || (Ok(codec_results["0.5mp"]) && Ok(c2) && Ok(codec_results["12mp"]))) &&
      (!codec_turns || turns_ok);
  results["all_ran"] = all_ran;
  results["load_average_at_end"] = LoadAverage();
  std::filesystem::path json_path(o.json_path);
  if (json_path.has_parent_path()) std::filesystem::create_directories(json_path.parent_path());
  std::ofstream(json_path) << results.dump(2) << "\n";
  std::printf("\nresults: %s%s\n", o.json_path.c_str(),
              all_ran ? "" : " (some measurements FAILED, see above)");
  return all_ran ? 0 : 1;
}
