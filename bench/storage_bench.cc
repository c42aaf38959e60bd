// The storage benchmark of issue 23, in one run: the same 400 images (100 products x 4, the bench
// corpus's 640x480 class of JPEGs) processed by the real imgproc binary with each storage, its
// uploads delayed alike, and images/s set against each other:
//
//   local    STORAGE=local, no upload at all: the reference line;
//   imgbb    STORAGE=imgbb against a fake ImgBB in this process that answers each upload after
//            --upload-latency-ms (150 ms);
//   s3       STORAGE=s3 against the test S3 server (s3rver, scripts/services.sh), through a
//            reverse proxy in this process that waits the same --upload-latency-ms before it
//            forwards each request unchanged (the Host header included: SigV4 signs it), and
//            checks each PUT's signature as S3 would (s3rver does not);
//   s3-stub  STORAGE=s3 through the same proxy, which answers each PUT itself after the latency
//            (nothing stored): imgproc's S3 client alone, without s3rver's own time.
//
// The runs are taken in turns (local, imgbb, s3, s3-stub; --runs times), each figure the median
// run. After each S3 run every output URL is fetched from s3rver (200, image/jpeg, a JPEG of the
// input's size) and the objects under the run's prefix are counted. Everything runs on
// 127.0.0.1; every wait is bounded. Not a test.
//
//   eval "$(scripts/services.sh start)"   # IMGPROC_TEST_S3_ENDPOINT, IMGPROC_SERVICES_DIR
//   build/release/bench/imgproc_storage_bench --binary build/release/imgproc [--runs 3]
//       [--presigned] [--only imgbb,s3] [--json storage.json] [--env WORKERS=64 ...]
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "corpus.h"
#include "fixture_server.h"
#include "pipeline/image_codec.h"
#include "process_client.h"
#include "process_stats.h"
#include "request/request.h"
#include "services.h"
#include "storage/sigv4.h"
#include "test_images.h"

namespace {

using imgproc::bench::CorpusImage;
using imgproc::testing::FixtureServer;
using imgproc::testing::ImgprocProcess;
using imgproc::testing::TempDir;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void Sleep(int ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// The servers here serve like the speed benchmark's: latency must not serialise requests (many
// threads), and connections are kept alive as a real ImgBB or S3 keeps them.
void ServeConcurrently(FixtureServer& s) {
  s.server().new_task_queue = [] { return new httplib::ThreadPool(256); };
  s.server().set_keep_alive_max_count(1'000'000);
  s.server().set_keep_alive_timeout(30);
}

// What one server saw during a run: requests, the most at once, the client connections they
// came on, and how long each waited for what is behind the server (s3rver, for the proxy).
class Traffic {
 public:
  class InFlight {
   public:
    InFlight(Traffic& t, const httplib::Request& req) : t_(t) {
      std::lock_guard lock(t_.mu_);
      ++t_.requests_;
      ++t_.by_method_[req.method];
      t_.max_in_flight_ = std::max(t_.max_in_flight_, ++t_.in_flight_);
      t_.connections_.insert(req.remote_addr + ":" + std::to_string(req.remote_port));
    }
    ~InFlight() {
      std::lock_guard lock(t_.mu_);
      --t_.in_flight_;
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    Traffic& t_;
  };

  void Reset() {
    std::lock_guard lock(mu_);
    requests_ = 0;
    max_in_flight_ = 0;
    by_method_.clear();
    connections_.clear();
    upstream_ms_.clear();
    counters_.clear();
  }
  void Count(const std::string& what, int n = 1) {
    std::lock_guard lock(mu_);
    counters_[what] += n;
  }
  void Upstream(double ms) {
    std::lock_guard lock(mu_);
    upstream_ms_.push_back(ms);
  }
  json Summary() const {
    std::lock_guard lock(mu_);
    json j = {{"requests", requests_},
              {"by_method", by_method_},
              {"max_in_flight", max_in_flight_},
              {"connections", connections_.size()}};
    for (const auto& [what, n] : counters_) j[what] = n;
    if (!upstream_ms_.empty()) {
      std::vector<double> ms = upstream_ms_;
      std::sort(ms.begin(), ms.end());
      j["upstream_ms_p50"] = ms[ms.size() / 2];
      j["upstream_ms_p99"] = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
      j["upstream_ms_max"] = ms.back();
    }
    return j;
  }

 private:
  mutable std::mutex mu_;
  int requests_ = 0;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  std::map<std::string, int> by_method_;
  std::set<std::string> connections_;
  std::map<std::string, int> counters_;
  std::vector<double> upstream_ms_;
};

// The image host: the corpus from memory at /img/<name>, no added latency.
class ImageHost {
 public:
  explicit ImageHost(const std::vector<CorpusImage>& images) {
    for (const CorpusImage& image : images) images_[image.name] = &image;
    ServeConcurrently(host_);
    host_.server().Get(R"(/img/([^/]+))",
                       [this](const httplib::Request& req, httplib::Response& res) {
                         const auto it = images_.find(req.matches[1]);
                         if (it == images_.end()) {
                           res.status = 404;
                           return;
                         }
                         res.set_content(it->second->bytes, it->second->mime);
                       });
    host_.Start();
  }
  std::string Url(const CorpusImage& image, int n) const {
    return host_.Url("/img/" + image.name + "?n=" + std::to_string(n));  // distinct URLs
  }

 private:
  std::map<std::string, const CorpusImage*> images_;
  FixtureServer host_;
};

// ImgBB's upload API as src/storage/imgbb_storage.cc uses it (as the speed benchmark's fake):
// multipart POST with `key` and `image`, answered after the latency with data.url.
class FakeImgbb {
 public:
  explicit FakeImgbb(int latency_ms) : latency_ms_(latency_ms) {
    ServeConcurrently(server_);
    server_.server().Post("/1/upload", [this](const httplib::Request& req, httplib::Response& res) {
      Traffic::InFlight in_flight(traffic_, req);
      Sleep(latency_ms_);
      const std::string key =
          req.has_file("key") ? req.get_file_value("key").content : req.get_param_value("key");
      if (key.empty() || !req.has_file("image") || req.get_file_value("image").content.empty()) {
        res.status = 400;
        res.set_content(R"({"status_code":400,"error":{"message":"Empty upload source."}})",
                        "application/json");
        return;
      }
      const std::string& image = req.get_file_value("image").content;
      if (!imgproc::testing::InspectJpeg(image)) traffic_.Count("not_jpeg");
      traffic_.Count("stored");
      const std::string id = "bench" + std::to_string(++uploads_);
      const std::string url = server_.Url("/i/" + id + ".jpg");
      res.set_content(json{{"data",
                            {{"id", id},
                             {"url", url},
                             {"display_url", url},
                             {"url_viewer", server_.Url("/" + id)},
                             {"size", image.size()}}},
                           {"success", true},
                           {"status", 200}}
                          .dump(),
                      "application/json");
    });
    server_.Start();
  }
  std::string UploadUrl() const { return server_.Url("/1/upload"); }
  Traffic& traffic() { return traffic_; }

 private:
  const int latency_ms_;
  Traffic traffic_;
  std::atomic<int> uploads_{0};
  FixtureServer server_;  // last: stopped (by its destructor) before the rest goes
};

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The headers a proxy does not pass on as they came: hop-by-hop ones, the framing (the forwarding
// client frames the body itself), and httplib's own pseudo-headers of the peer's addresses.
bool HopByHop(const std::string& name) {
  static const std::set<std::string> kNames = {
      "connection",  "keep-alive", "proxy-connection", "transfer-encoding", "te",
      "trailer",     "upgrade",    "expect",           "content-length",    "remote_addr",
      "remote_port", "local_addr", "local_port"};
  return kNames.contains(Lower(name));
}

// A reverse proxy in front of s3rver that waits `latency_ms` before forwarding each request, as
// a distant S3 would take. The request goes on as it came: method, raw target, headers (Host
// included, so what reaches s3rver is what the client signed) and body; the answer comes back
// likewise. Each signed request's SigV4 signature is recomputed from what arrived, with the
// secret key: s3rver checks only the access key, a real S3 would refuse a mismatch.
class DelayingS3Proxy {
 public:
  DelayingS3Proxy(std::string upstream_host, int upstream_port, std::string secret_key,
                  int latency_ms)
      : upstream_host_(std::move(upstream_host)),
        upstream_port_(upstream_port),
        secret_key_(std::move(secret_key)),
        latency_ms_(latency_ms) {
    ServeConcurrently(server_);
    const auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      Forward(req, res);
    };
    // httplib routes HEAD to the GET handlers.
    server_.server().Get(".*", handler);
    server_.server().Put(".*", handler);
    server_.server().Post(".*", handler);
    server_.server().Delete(".*", handler);
    server_.Start();
  }
  std::string Endpoint() const { return server_.Url(""); }
  Traffic& traffic() { return traffic_; }
  // Whether the proxy answers each request itself (200, nothing stored) instead of forwarding
  // it: imgproc's S3 client with the latency alone, without s3rver's own time.
  void set_stub(bool stub) { stub_ = stub; }

 private:
  void Forward(const httplib::Request& req, httplib::Response& res) {
    Traffic::InFlight in_flight(traffic_, req);
    Sleep(latency_ms_);
    CheckSignature(req);
    if (stub_) {
      if (req.method == "PUT" && imgproc::testing::InspectJpeg(req.body)) traffic_.Count("stored");
      res.set_header("ETag", "\"" + imgproc::request::Sha256Hex(req.body).substr(0, 32) + "\"");
      return;
    }
    httplib::Request up;
    up.method = req.method;
    up.path = req.target;  // as sent, still URI-encoded (sent with url encoding off)
    for (const auto& [name, value] : req.headers) {
      if (!HopByHop(name)) up.headers.emplace(name, value);
    }
    up.body = req.body;
    const auto asked = Clock::now();
    httplib::Result answer = Send(up);
    traffic_.Upstream(SecondsSince(asked) * 1000);
    if (!answer) {
      traffic_.Count("forward_errors");
      res.status = 502;
      res.set_content("proxy: s3rver did not answer: " + httplib::to_string(answer.error()),
                      "text/plain");
      return;
    }
    if (answer->status < 200 || answer->status >= 300) traffic_.Count("upstream_not_2xx");
    res.status = answer->status;
    for (const auto& [name, value] : answer->headers) {
      // A HEAD's Content-Length is the object's size, with no body to frame.
      if (!HopByHop(name) || (req.method == "HEAD" && Lower(name) == "content-length")) {
        res.headers.emplace(name, value);
      }
    }
    res.body = std::move(answer->body);
  }

  // Sends `up` on a kept-alive client of the pool, once more on a fresh connection if the kept
  // one had been closed meanwhile (s3rver closes idle ones after 5 s).
  httplib::Result Send(const httplib::Request& up) {
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<httplib::Client> client = attempt == 0 ? Take() : NewClient();
      httplib::Result answer = client->send(up);
      if (answer || attempt == 1) {
        if (answer) Give(std::move(client));
        return answer;
      }
      traffic_.Count("upstream_reconnects");
    }
  }
  std::unique_ptr<httplib::Client> Take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto client = std::move(idle_.back());
        idle_.pop_back();
        return client;
      }
    }
    return NewClient();
  }
  std::unique_ptr<httplib::Client> NewClient() const {
    auto client = std::make_unique<httplib::Client>(upstream_host_, upstream_port_);
    client->set_keep_alive(true);
    client->set_url_encode(false);
    client->set_connection_timeout(5, 0);
    client->set_read_timeout(30, 0);
    client->set_write_timeout(30, 0);
    return client;
  }
  void Give(std::unique_ptr<httplib::Client> client) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(client));
  }

  // AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/s3/aws4_request, SignedHeaders=...,
  // Signature=<hex>: recomputed over the request as it arrived (path, signed headers, the
  // payload hash, which must be the body's), counted as signature_ok or signature_mismatch.
  void CheckSignature(const httplib::Request& req) {
    const std::string authorization = req.get_header_value("Authorization");
    static const std::regex shape(
        R"(AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request, )"
        R"(SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64}))");
    std::smatch m;
    if (!std::regex_match(authorization, m, shape)) {
      traffic_.Count("unsigned");
      return;
    }
    const std::string signed_headers = m[2];
    imgproc::storage::sigv4::CanonicalRequest canonical;
    canonical.method = req.method;
    const size_t query = req.target.find('?');
    canonical.path = req.target.substr(0, query);
    if (query != std::string::npos) {
      traffic_.Count("signature_unchecked_query");  // none of imgproc's requests has one
      return;
    }
    canonical.payload_hash = req.get_header_value("x-amz-content-sha256");
    for (size_t at = 0; at < signed_headers.size();) {
      const size_t end = std::min(signed_headers.find(';', at), signed_headers.size());
      const std::string name = signed_headers.substr(at, end - at);
      canonical.headers.emplace_back(name, req.get_header_value(name.c_str()));
      at = end + 1;
    }
    const bool host_signed = signed_headers.find("host") != std::string::npos;
    const bool payload_ok = canonical.payload_hash == imgproc::request::Sha256Hex(req.body);
    const std::string expected = imgproc::storage::sigv4::Sign(
        canonical, req.get_header_value("x-amz-date"), m[1], "s3", secret_key_);
    traffic_.Count(host_signed && payload_ok && expected == m[3].str() ? "signature_ok"
                                                                       : "signature_mismatch");
  }

  const std::string upstream_host_;
  const int upstream_port_;
  const std::string secret_key_;
  const int latency_ms_;
  std::atomic<bool> stub_{false};
  Traffic traffic_;
  std::mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_;
  FixtureServer server_;  // last: stopped (by its destructor) before the clients go
};

struct Options {
  std::string binary = "build/release/imgproc";
  std::string json_path;  // none: no JSON file
  std::string s3_endpoint;
  std::vector<std::string> env;  // KEY=VALUE for imgproc, every storage
  std::vector<std::string> only;
  int rows = 100;
  int per_row = 4;
  int width = 640;  // asked of the corpus
  int height = 480;
  int jpeg_width = 0;  // what its JPEGs are (bench/corpus.cc may differ): the outputs' size
  int jpeg_height = 0;
  int upload_latency_ms = 150;
  int runs = 3;
  int timeout_s = 300;  // per run
  bool presigned = false;

  bool Runs(const std::string& storage) const {
    return only.empty() || std::find(only.begin(), only.end(), storage) != only.end();
  }
};

// "S. No.,Product Name,Input Image Urls", `rows` rows of `per_row` distinct URLs each.
std::string MakeCsv(const ImageHost& host, const std::vector<CorpusImage>& images, int rows,
                    int per_row) {
  std::string csv = "S. No.,Product Name,Input Image Urls\n";
  int n = 0;
  for (int r = 1; r <= rows; ++r) {
    csv += std::to_string(r) + ",SKU" + std::to_string(r);
    for (int j = 0; j < per_row; ++j, ++n) {
      csv += "," + host.Url(images[static_cast<size_t>(n) % images.size()], n);
    }
    csv += "\n";
  }
  return csv;
}

double Number(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

bool Ok(const json& j) { return j.is_object() && j.value("ok", false); }

// The output URLs of a completed status, in product order.
std::vector<std::string> OutputUrls(const json& status) {
  std::vector<std::string> urls;
  if (!status.is_object() || !status.contains("products")) return urls;
  for (const json& product : status["products"]) {
    const json& outputs = product["Output Image Urls"];
    if (!outputs.is_string()) continue;
    const std::string text = outputs;
    for (size_t at = 0; at <= text.size();) {
      const size_t end = std::min(text.find(',', at), text.size());
      if (end > at) urls.push_back(text.substr(at, end - at));
      at = end + 1;
    }
  }
  return urls;
}

// One imgproc serve with `env` on the CSV until its request completes (or the timeout): wall
// time from the POST to the poll that sees it completed, images/s, imgproc's CPU; "urls" are the
// output URLs.
json RunOnce(const Options& options, std::map<std::string, std::string> env, const std::string& csv,
             int images) {
  json r = {{"ok", false}, {"images", images}};
  for (const std::string& kv : options.env) {
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  TempDir dir("storage-bench");
  ImgprocProcess server(dir.path(), env);
  if (!server.Start()) {
    r["error"] = "imgproc did not start: " + server.log().substr(0, 2000);
    return r;
  }
  const double cpu_before = imgproc::testing::CpuSeconds(server.pid());
  const auto start = Clock::now();
  auto res = server.Upload(csv);
  if (!res || res->status != 202) {
    r["error"] = "upload: " + (res ? std::to_string(res->status) + " " + res->body : "no answer");
    return r;
  }
  const std::string id = json::parse(res->body)["request_id"];
  json counts;
  const auto deadline = start + std::chrono::seconds(options.timeout_s);
  while (Clock::now() < deadline) {
    counts = server.Status(id, "?limit=0");
    if (counts.is_object() && counts["status"] == "completed") break;
    Sleep(20);  // the poll's pace; the deadline decides
  }
  const double seconds = SecondsSince(start);
  const double cpu = imgproc::testing::CpuSeconds(server.pid()) - cpu_before;
  if (!counts.is_object() || counts["status"] != "completed") {
    r["error"] =
        "not completed after " + std::to_string(options.timeout_s) + " s: " + counts.dump();
    return r;
  }
  const json status = server.Status(id);
  const int done = counts["progress"]["images_done"];
  const int failed = counts["progress"]["images_failed"];
  r["request_id"] = id;
  r["seconds"] = seconds;
  r["images_done"] = done;
  r["images_failed"] = failed;
  r["images_per_s"] = done / seconds;
  r["cpu_s_per_image"] = done > 0 ? cpu / done : 0.0;
  r["urls"] = OutputUrls(status);
  r["data_dir_files"] = 0;
  if (std::filesystem::exists(dir.path() / "media")) {
    int files = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path() / "media")) {
      files += entry.is_regular_file() && entry.path().extension() == ".jpg";
    }
    r["data_dir_files"] = files;  // local storage's outputs
  }
  r["ok"] = done == images && failed == 0 && r["urls"].size() == static_cast<size_t>(images);
  if (!Ok(r)) {
    r["error"] = std::to_string(done) + " done, " + std::to_string(failed) + " failed, " +
                 std::to_string(r["urls"].size()) + " output URLs of " + std::to_string(images);
    for (const json& product : status["products"]) {
      if (!product["Image Errors"].empty()) {
        r["first_errors"] = product["Image Errors"];
        break;
      }
    }
  }
  server.Signal(SIGTERM);
  if (server.Wait(std::chrono::seconds(30)) < 0) server.Signal(SIGKILL);
  server.Wait(std::chrono::seconds(10));
  return r;
}

// Every output URL of an S3 run fetched from s3rver itself (a presigned URL's origin, the proxy,
// swapped for s3rver's): 200, image/jpeg, a JPEG of width x height. Then the objects under the
// run's prefix, counted with ListObjectsV2.
json VerifyS3(const Options& options, const json& urls, const std::string& proxy_origin,
              const std::string& prefix) {
  json v = {{"urls", urls.size()}};
  httplib::Client s3(options.s3_endpoint);
  s3.set_keep_alive(true);
  s3.set_url_encode(false);
  s3.set_read_timeout(30, 0);
  int fetched = 0;
  int jpegs = 0;
  std::string first_problem;
  for (const json& u : urls) {
    std::string url = u;
    if (url.starts_with(proxy_origin)) url = options.s3_endpoint + url.substr(proxy_origin.size());
    if (!url.starts_with(options.s3_endpoint + "/")) {
      if (first_problem.empty()) first_problem = "not an s3rver URL: " + url;
      continue;
    }
    auto got = s3.Get(url.substr(options.s3_endpoint.size()));
    if (!got || got->status != 200) {
      if (first_problem.empty()) {
        first_problem = url + ": " + (got ? std::to_string(got->status) : "no answer");
      }
      continue;
    }
    ++fetched;
    const auto info = imgproc::testing::InspectJpeg(got->body);
    if (info && info->width == options.jpeg_width && info->height == options.jpeg_height &&
        got->get_header_value("Content-Type") == "image/jpeg") {
      ++jpegs;
    } else if (first_problem.empty()) {
      first_problem =
          url + ": not a " + std::to_string(options.jpeg_width) + "x" +
          std::to_string(options.jpeg_height) + " image/jpeg (" +
          got->get_header_value("Content-Type") + ", " +
          (info ? std::to_string(info->width) + "x" + std::to_string(info->height) : "no JPEG") +
          ")";
    }
  }
  v["fetched"] = fetched;
  v["jpegs"] = jpegs;
  // ListObjectsV2, a page of up to 1,000 keys at a time; bounded to 100 pages.
  int objects = 0;
  std::string token;
  bool listed = false;
  for (int page = 0; page < 100; ++page) {
    std::string path = std::string("/") + imgproc::testing::kS3Bucket +
                       "?list-type=2&max-keys=1000&prefix=" +
                       imgproc::storage::sigv4::UriEncode(prefix + "/", false);
    if (!token.empty()) {
      path += "&continuation-token=" + imgproc::storage::sigv4::UriEncode(token, false);
    }
    auto list = s3.Get(path);
    if (!list || list->status != 200) break;
    for (size_t at = list->body.find("<Key>"); at != std::string::npos;
         at = list->body.find("<Key>", at + 1)) {
      ++objects;
    }
    std::smatch m;
    if (std::regex_search(list->body, m,
                          std::regex("<NextContinuationToken>([^<]+)</NextContinuationToken>"))) {
      token = m[1];
      continue;
    }
    listed = true;
    break;
  }
  v["objects"] = listed ? json(objects) : json(nullptr);
  if (!first_problem.empty()) v["first_problem"] = first_problem;
  v["ok"] = listed && jpegs == static_cast<int>(urls.size()) && objects == jpegs;
  return v;
}

// The run of median images/s, with every run's figure beside it; the first failed run if any.
json MedianRun(std::vector<json> runs) {
  json all = json::array();
  for (const json& r : runs) all.push_back(Number(r, "images_per_s"));
  for (const json& r : runs) {
    if (!Ok(r)) return r;
  }
  std::sort(runs.begin(), runs.end(), [](const json& a, const json& b) {
    return Number(a, "images_per_s") < Number(b, "images_per_s");
  });
  json median = runs[runs.size() / 2];
  median["runs_images_per_s"] = all;
  return median;
}

void PrintRun(const std::string& name, const json& r) {
  if (!r.contains("seconds")) {
    std::printf("  %-22s FAILED: %s\n", name.c_str(), r.value("error", std::string("?")).c_str());
  } else {
    const json& t = r.contains("server") ? r["server"] : json::object();
    std::string server;
    if (t.is_object() && t.contains("requests")) {
      server = "  server: " + std::to_string(t.value("requests", 0)) + " requests, " +
               std::to_string(t.value("max_in_flight", 0)) + " at most at once, on " +
               std::to_string(t.value("connections", 0)) + " connections";
    }
    std::printf("  %-22s %4d images %7.2f s %8.1f images/s  CPU %5.1f ms/image%s%s\n", name.c_str(),
                r.value("images_done", 0), Number(r, "seconds"), Number(r, "images_per_s"),
                1000 * Number(r, "cpu_s_per_image"), server.c_str(),
                Ok(r) ? "" : ("  FAILED: " + r.value("error", std::string("?"))).c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc storage benchmark (issue 23): S3 vs ImgBB vs local disk, same images");
  Options o;
  o.s3_endpoint = imgproc::testing::S3Endpoint().value_or("");
  app.add_option("--binary", o.binary, "imgproc binary")->capture_default_str();
  app.add_option("--json", o.json_path, "also write the results as JSON to this file");
  app.add_option("--s3-endpoint", o.s3_endpoint,
                 "the test S3 server (default: IMGPROC_TEST_S3_ENDPOINT, scripts/services.sh)")
      ->capture_default_str();
  app.add_option("--env", o.env, "KEY=VALUE added to imgproc's environment (repeatable)");
  app.add_option("--rows", o.rows, "products (CSV rows)")->capture_default_str();
  app.add_option("--images-per-row", o.per_row, "image URLs per row")->capture_default_str();
  app.add_option("--upload-latency-ms", o.upload_latency_ms,
                 "added to each upload (fake ImgBB) and each S3 request (proxy)")
      ->capture_default_str();
  app.add_option("--runs", o.runs, "runs of each storage, in turns (median)")
      ->capture_default_str()
      ->check(CLI::Range(1, 9));
  app.add_option("--timeout", o.timeout_s, "seconds before a run gives up")->capture_default_str();
  app.add_flag("--presigned", o.presigned,
               "S3 output URLs presigned (default: S3_PUBLIC_BASE_URL = s3rver's bucket URL)");
  app.add_option("--only", o.only, "storages to run (comma-separated)")
      ->delimiter(',')
      ->check(CLI::IsMember({"local", "imgbb", "s3", "s3-stub"}));
  CLI11_PARSE(app, argc, argv);
  o.binary = std::filesystem::absolute(o.binary).string();
  if (!std::filesystem::exists(o.binary)) {
    std::fprintf(stderr, "no imgproc binary at %s (--binary)\n", o.binary.c_str());
    return 2;
  }
  while (!o.s3_endpoint.empty() && o.s3_endpoint.back() == '/') o.s3_endpoint.pop_back();
  std::smatch endpoint;
  if (o.Runs("s3") && !std::regex_match(o.s3_endpoint, endpoint,
                                        std::regex(R"(http://(127\.0\.0\.1|localhost):(\d+))"))) {
    std::fprintf(stderr,
                 "the S3 run needs s3rver on 127.0.0.1: eval \"$(scripts/services.sh start)\" "
                 "(IMGPROC_TEST_S3_ENDPOINT) or --s3-endpoint http://127.0.0.1:PORT; got '%s'\n",
                 o.s3_endpoint.c_str());
    return 2;
  }
  setenv("IMGPROC_BINARY", o.binary.c_str(), 1);
  // imgproc gets the SQLite store in its temp DATA_DIR and no broker, whatever this shell has.
  unsetenv("DATABASE_URL");
  unsetenv("REDIS_URL");
  signal(SIGPIPE, SIG_IGN);
  if (!imgproc::pipeline::InitCodec().ok()) return 2;

  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const imgproc::bench::SizeClass corpus =
      imgproc::bench::MakeSizeClass("0.3 MP", "vga", o.width, o.height, 8, false, cores);
  std::vector<CorpusImage> jpegs;  // the corpus's 8th image is a PNG: JPEGs only here
  double jpeg_bytes = 0;
  for (const CorpusImage& image : corpus.images) {
    if (image.mime != "image/jpeg") continue;
    jpegs.push_back(image);
    jpeg_bytes += static_cast<double>(image.bytes.size());
    const auto info = imgproc::testing::InspectJpeg(image.bytes);
    if (!info ||
        (o.jpeg_width != 0 && (info->width != o.jpeg_width || info->height != o.jpeg_height))) {
      std::fprintf(stderr, "the corpus's JPEGs are not all of one size\n");
      return 2;
    }
    o.jpeg_width = info->width;
    o.jpeg_height = info->height;
  }
  const int images = o.rows * o.per_row;
  ImageHost host(jpegs);
  const std::string csv = MakeCsv(host, jpegs, o.rows, o.per_row);
  FakeImgbb imgbb(o.upload_latency_ms);
  std::unique_ptr<DelayingS3Proxy> proxy;
  if (o.Runs("s3") || o.Runs("s3-stub")) {  // the stub alone forwards nothing
    const bool to_s3rver = endpoint.size() == 3;
    proxy = std::make_unique<DelayingS3Proxy>(to_s3rver ? endpoint[1].str() : "127.0.0.1",
                                              to_s3rver ? std::stoi(endpoint[2]) : 1,
                                              imgproc::testing::kS3SecretKey, o.upload_latency_ms);
  }
  const std::string url_mode =
      o.presigned ? "presigned GET URLs (S3_PRESIGN_SECONDS default)"
                  : "S3_PUBLIC_BASE_URL=" + o.s3_endpoint + "/" + imgproc::testing::kS3Bucket;

  const std::map<std::string, std::string> common = {
      {"ALLOW_PRIVATE_URLS", "1"},
      // Every image stored under a key of its own: the corpus repeats its 7 pictures under
      // distinct URLs, which the image cache would store once each.
      {"IMAGE_CACHE", "false"},
      {"LOG_LEVEL", "warn"}};
  std::printf(
      "storage benchmark: %d images (%d products x %d), %zu distinct %dx%d JPEGs (the corpus's "
      "%dx%d) of mean %.0f KiB from 127.0.0.1 with no added latency; %d ms added to each upload; "
      "%d run(s) of each, in turns; %d cores\n",
      images, o.rows, o.per_row, jpegs.size(), o.jpeg_width, o.jpeg_height, o.width, o.height,
      jpeg_bytes / static_cast<double>(jpegs.size()) / 1024, o.upload_latency_ms, o.runs, cores);
  std::printf("imgproc: defaults (SQLite, WORKERS etc.), IMAGE_CACHE=false");
  for (const std::string& kv : o.env) std::printf(" %s", kv.c_str());
  std::printf("\ns3: s3rver at %s through a delaying proxy at %s, path-style, bucket %s; %s\n\n",
              o.s3_endpoint.c_str(), proxy ? proxy->Endpoint().c_str() : "-",
              imgproc::testing::kS3Bucket, url_mode.c_str());
  std::fflush(stdout);

  // s3rver's process (scripts/services.sh writes its pid), for its CPU time per run.
  pid_t s3rver = -1;
  if (const char* dir = std::getenv("IMGPROC_SERVICES_DIR"); dir != nullptr) {
    std::ifstream(std::filesystem::path(dir) / "s3.pid") >> s3rver;
  }
  const std::vector<std::string> storages = {"local", "imgbb", "s3", "s3-stub"};
  std::map<std::string, std::vector<json>> runs;
  bool verified = true;
  const auto bench_start = Clock::now();
  for (int i = 0; i < o.runs; ++i) {
    std::printf("run %d\n", i + 1);
    for (const std::string& storage : storages) {
      if (!o.Runs(storage)) continue;
      const bool s3 = storage.starts_with("s3");
      std::map<std::string, std::string> env = common;
      env["STORAGE"] = s3 ? "s3" : storage;
      Traffic* traffic = nullptr;
      std::string prefix;
      if (storage == "imgbb") {
        env["IMGBB_API_KEY"] = "x";
        env["IMGBB_UPLOAD_URL"] = imgbb.UploadUrl();
        traffic = &imgbb.traffic();
      } else if (s3) {
        proxy->set_stub(storage == "s3-stub");
        prefix = "storage-bench-" + std::to_string(getpid()) + "-" +
                 std::to_string(std::chrono::system_clock::now().time_since_epoch().count() /
                                1'000'000) +
                 "-" + std::to_string(i + 1);
        env["S3_ENDPOINT"] = proxy->Endpoint();
        env["S3_FORCE_PATH_STYLE"] = "true";
        env["S3_BUCKET"] = imgproc::testing::kS3Bucket;
        env["S3_PREFIX"] = prefix;
        env["AWS_ACCESS_KEY_ID"] = imgproc::testing::kS3AccessKey;
        env["AWS_SECRET_ACCESS_KEY"] = imgproc::testing::kS3SecretKey;
        if (!o.presigned) {
          env["S3_PUBLIC_BASE_URL"] = o.s3_endpoint + "/" + imgproc::testing::kS3Bucket;
        }
        traffic = &proxy->traffic();
      }
      if (traffic != nullptr) traffic->Reset();
      const double s3rver_cpu = s3rver > 0 ? imgproc::testing::CpuSeconds(s3rver) : -1;
      json r = RunOnce(o, env, csv, images);
      if (traffic != nullptr) r["server"] = traffic->Summary();
      if (storage == "s3" && s3rver_cpu >= 0) {
        r["s3rver_cpu_s"] = imgproc::testing::CpuSeconds(s3rver) - s3rver_cpu;
      }
      if (storage == "local" && r.contains("data_dir_files")) {
        r["stored"] = r["data_dir_files"];
      }
      if ((storage == "imgbb" || storage == "s3-stub") && r.contains("server")) {
        r["stored"] = r["server"].value("stored", 0);
      }
      if (storage == "s3" && r.contains("urls")) {
        r["verify"] = VerifyS3(o, r["urls"], proxy->Endpoint(), prefix);
        r["stored"] = r["verify"]["objects"];
        verified = verified && Ok(r["verify"]);
        const json& t = r["server"];
        if (t.value("signature_mismatch", 0) > 0 || t.value("forward_errors", 0) > 0) {
          verified = false;
        }
      }
      r.erase("urls");
      PrintRun(storage, r);
      if (storage == "s3" && r.contains("verify")) {
        const json& v = r["verify"];
        const json& t = r["server"];
        std::printf(
            "  %-22s %d/%zu output URLs fetched from s3rver, %d %dx%d image/jpeg; %s objects "
            "under %s/; proxy: %s, signatures %d ok %d mismatched; s3rver's answer p50 %.1f ms, "
            "p99 %.1f ms, max %.1f ms; s3rver CPU %.2f s%s\n",
            "", v.value("fetched", 0), v["urls"].get<size_t>(), v.value("jpegs", 0), o.jpeg_width,
            o.jpeg_height, v["objects"].is_null() ? "?" : v["objects"].dump().c_str(),
            prefix.c_str(), t["by_method"].dump().c_str(), t.value("signature_ok", 0),
            t.value("signature_mismatch", 0), Number(t, "upstream_ms_p50"),
            Number(t, "upstream_ms_p99"), Number(t, "upstream_ms_max"), Number(r, "s3rver_cpu_s"),
            v.contains("first_problem")
                ? ("; FIRST PROBLEM: " + v["first_problem"].get<std::string>()).c_str()
                : "");
        std::fflush(stdout);
      }
      runs[storage].push_back(std::move(r));
    }
  }

  json results = {{"images", images},
                  {"rows", o.rows},
                  {"images_per_row", o.per_row},
                  {"width", o.width},
                  {"height", o.height},
                  {"upload_latency_ms", o.upload_latency_ms},
                  {"runs", o.runs},
                  {"cores", cores},
                  {"env", o.env},
                  {"s3_url_mode", o.presigned ? "presigned" : "public_base_url"},
                  {"bench_seconds", SecondsSince(bench_start)}};
  std::printf("\n%-8s %8s %10s %9s %8s %11s %12s  %s\n", "storage", "images", "wall s", "images/s",
              "stored", "uploads", "max at once", "images/s of each run");
  bool all_ok = verified;
  for (const std::string& storage : storages) {
    if (!o.Runs(storage)) continue;
    const json median = MedianRun(runs[storage]);
    results[storage] = median;
    results[storage]["all_runs"] = runs[storage];
    all_ok = all_ok && Ok(median);
    const json& t = median.contains("server") ? median["server"] : json::object();
    std::string each;
    for (const json& r : runs[storage]) {
      char figure[32];
      std::snprintf(figure, sizeof figure, "%s%.1f", each.empty() ? "" : ", ",
                    Number(r, "images_per_s"));
      each += figure;
    }
    std::printf(
        "%-8s %8d %10.2f %9.1f %8s %11s %12s  %s%s\n", storage.c_str(),
        median.value("images_done", 0), Number(median, "seconds"), Number(median, "images_per_s"),
        median.contains("stored") ? median["stored"].dump().c_str() : "-",
        t.contains("requests") ? std::to_string(t.value("requests", 0)).c_str() : "-",
        t.contains("max_in_flight") ? std::to_string(t.value("max_in_flight", 0)).c_str() : "-",
        each.c_str(), Ok(median) ? "" : "  FAILED");
  }
  // The median run of a storage; an empty object for one not run.
  const auto median_of = [&](const char* storage) {
    return results.contains(storage) ? results[storage] : json::object();
  };
  const double ratio =
      Number(median_of("s3"), "images_per_s") / Number(median_of("imgbb"), "images_per_s");
  const double imgbb_at_once =
      Number(median_of("imgbb").value("server", json::object()), "max_in_flight");
  results["s3_over_imgbb"] = std::isfinite(ratio) ? json(ratio) : json(nullptr);
  results["all_ok"] = all_ok;
  const double stub_ratio =
      Number(median_of("s3-stub"), "images_per_s") / Number(median_of("imgbb"), "images_per_s");
  results["s3_stub_over_imgbb"] = std::isfinite(stub_ratio) ? json(stub_ratio) : json(nullptr);
  std::printf("\n");
  if (o.Runs("s3") && o.Runs("imgbb")) {
    std::printf("s3 / imgbb images/s: %.3f (median runs)\n", ratio);
  }
  if (o.Runs("s3-stub") && o.Runs("imgbb")) {
    std::printf("s3-stub / imgbb images/s: %.3f (imgproc's S3 client without s3rver's time)\n",
                stub_ratio);
  }
  if (std::isfinite(imgbb_at_once) && imgbb_at_once > 0) {
    std::printf(
        "floor of an upload-bound run: %d images x %d ms / %.0f uploads at once (imgbb's most) = "
        "%.2f s\n",
        images, o.upload_latency_ms, imgbb_at_once,
        images * o.upload_latency_ms / 1000.0 / imgbb_at_once);
  }
  if (!o.json_path.empty()) {
    std::filesystem::path json_path(o.json_path);
    if (json_path.has_parent_path()) std::filesystem::create_directories(json_path.parent_path());
    std::ofstream(json_path) << results.dump(2) << "\n";
    std::printf("results: %s\n", o.json_path.c_str());
  }
  if (!all_ok) std::printf("some runs or checks FAILED, see above\n");
  return all_ok ? 0 : 1;
}
