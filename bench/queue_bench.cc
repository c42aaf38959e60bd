// The queue's cost against its length (issue 19, finding 3): fills a store with N queued images
// (requests of 10,000 rows x 50 URLs, as uploads of the largest CSV make them), then times claims
// of one image and the queue depth query, as the workers and /readyz make them.
//
//   imgproc_queue_bench --images 100000 [--database-url sqlite:///tmp/q.db | postgresql://...]
//
// Prints one JSON object: images, fill_s, claim_ms {p50, p99, max}, depth_ms {p50, max}.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "store/store.h"

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc queue benchmark");
  int64_t images = 100'000;
  int claims = 300;
  std::string url;
  app.add_option("--images", images, "images to queue first");
  app.add_option("--claims", claims, "claims to time");
  app.add_option("--database-url", url, "the store (default: a fresh SQLite file in /tmp)");
  CLI11_PARSE(app, argc, argv);
  std::filesystem::path dir;
  if (url.empty()) {
    dir = std::filesystem::temp_directory_path() / "imgproc-queue-bench";
    std::filesystem::remove_all(dir);
    url = "sqlite://" + (dir / "imgproc.db").string();
  }
  auto store = imgproc::store::OpenStore(url);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().message().c_str());
    return 1;
  }
  const auto fill_start = Clock::now();
  constexpr int kRows = 10'000;
  constexpr int kUrls = 50;
  for (int64_t queued = 0, n = 0; queued < images; ++n) {
    imgproc::store::NewRequest request;
    request.request_id = "bench-" + std::to_string(n);
    request.client = "bench";
    const int64_t here = std::min<int64_t>(images - queued, int64_t{kRows} * kUrls);
    for (int64_t row = 0; row * kUrls < here; ++row) {
      imgproc::request::NewProduct product;
      product.serial_no = row + 1;
      product.name = "P" + std::to_string(row);
      for (int64_t i = 0; i < kUrls && row * kUrls + i < here; ++i) {
        product.entries.push_back("http://127.0.0.1:9/" + std::to_string(n) + "/" +
                                  std::to_string(row) + "/" + std::to_string(i) + ".jpg");
      }
      request.products.push_back(std::move(product));
    }
    if (auto s = (*store)->CreateRequest(request); !s.ok()) {
      std::fprintf(stderr, "fill: %s\n", s.message().c_str());
      return 1;
    }
    queued += here;
    std::fprintf(stderr, "\rqueued %lld", static_cast<long long>(queued));
  }
  const double fill_s = Ms(Clock::now() - fill_start) / 1000;
  std::fprintf(stderr, "\n");

  std::vector<double> claim_ms;
  std::vector<double> depth_ms;
  for (int i = 0; i < claims; ++i) {
    const auto start = Clock::now();
    auto tasks = (*store)->ClaimImages("bench/" + std::to_string(i), 1, 60'000);
    claim_ms.push_back(Ms(Clock::now() - start));
    if (!tasks.ok() || tasks->size() != 1) {
      std::fprintf(stderr, "claim: %s\n",
                   tasks.ok() ? "nothing due" : tasks.status().message().c_str());
      return 1;
    }
    imgproc::request::ImageOutcome failed;
    failed.error = "bench";
    if (auto r = (*store)->RecordImage((*tasks)[0].image_id, "bench/" + std::to_string(i), failed);
        !r.ok()) {
      std::fprintf(stderr, "record: %s\n", r.status().message().c_str());
      return 1;
    }
    if (i % 10 == 0) {
      const auto d = Clock::now();
      if (!(*store)->CountUnfinishedImages().ok()) return 1;
      depth_ms.push_back(Ms(Clock::now() - d));
    }
  }
  std::printf(
      "{\"images\": %lld, \"fill_s\": %.1f, \"claim_ms\": {\"p50\": %.3f, \"p99\": %.3f, "
      "\"max\": %.3f}, \"depth_ms\": {\"p50\": %.3f, \"max\": %.3f}}\n",
      static_cast<long long>(images), fill_s, Percentile(claim_ms, 0.5), Percentile(claim_ms, 0.99),
      Percentile(claim_ms, 1.0), Percentile(depth_ms, 0.5), Percentile(depth_ms, 1.0));
  store->reset();
  if (!dir.empty()) std::filesystem::remove_all(dir);
  return 0;
}
