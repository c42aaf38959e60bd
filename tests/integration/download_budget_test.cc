// End to end: download bodies held in memory are bounded by DOWNLOAD_BUDGET_BYTES, whatever their
// pixels (audit issue 19, finding 3).
//
// A host sends a valid 1x1 PNG header, then a 45 MiB ancillary chunk, then stalls. The pixel
// budget sees one pixel per image and lets every download go on; before the byte budget, each
// held up to MAX_DOWNLOAD_BYTES until its timeout (64 such URLs took imgproc from 64 MB to
// 2.9 GB of RSS, and again after each retry).
#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <string>

#include "fixture_server.h"
#include "process_client.h"
#include "process_stats.h"

namespace imgproc::testing {
namespace {

using namespace std::chrono_literals;

constexpr size_t kChunk = 45 * 1024 * 1024;

void AppendBigEndian(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

// A PNG chunk's length, type and data; `with_crc` adds its CRC (the stalled chunk never gets one).
std::string PngChunk(const std::string& type, const std::string& data, bool with_crc = true) {
  std::string chunk;
  AppendBigEndian(chunk, static_cast<uint32_t>(data.size()));
  chunk += type + data;
  if (with_crc) {
    const auto* bytes = reinterpret_cast<const Bytef*>(chunk.data() + 4);
    AppendBigEndian(chunk, static_cast<uint32_t>(crc32(0, bytes, chunk.size() - 4)));
  }
  return chunk;
}

// The signature, a valid IHDR of a 1x1 RGB image, and a private ancillary chunk ("prVt") of
// kChunk bytes, whole but for its CRC. Private rather than tEXt: libpng allocates (and zeroes) a
// tEXt chunk's declared length each time the head is read for its pixel count, on the transfer
// thread, which slows every download down so much that the bodies take far longer to pile up.
std::string PngWithAHugeChunk() {
  std::string ihdr;
  AppendBigEndian(ihdr, 1);                        // width
  AppendBigEndian(ihdr, 1);                        // height
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, no filter, progressive
  const std::string data(kChunk, 'x');
  return std::string("\x89PNG\r\n\x1a\n", 8) + PngChunk("IHDR", ihdr) +
         PngChunk("prVt", data, /*with_crc=*/false);
}

// Serves PngWithAHugeChunk() at /bomb/<anything> without Content-Length, then stalls until the
// test ends; counts the bytes it got out.
class StallingHost {
 public:
  StallingHost() : body_(PngWithAHugeChunk()) {
    auto& s = server_.server();
    s.new_task_queue = [] { return new httplib::ThreadPool(64); };
    s.Get(R"(/bomb/(\d+)\.png)", [this](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("image/png", [this](size_t offset, httplib::DataSink& sink) {
        if (offset < body_.size()) {
          const size_t n = std::min<size_t>(256 * 1024, body_.size() - offset);
          if (!sink.write(body_.data() + offset, n)) return false;
          sent_ += n;
          return true;
        }
        std::unique_lock<std::mutex> lock(mu_);
        released_.wait_for(lock, 30s, [this] { return release_; });
        return false;  // never the CRC nor the end: the client gives up first
      });
    });
    server_.Start();
  }
  ~StallingHost() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      release_ = true;
    }
    released_.notify_all();
    server_.Stop();
  }

  std::string Url(int i) const { return server_.Url("/bomb/" + std::to_string(i) + ".png"); }
  size_t sent() const { return sent_; }

 private:
  const std::string body_;
  std::atomic<size_t> sent_{0};
  std::mutex mu_;
  std::condition_variable released_;
  bool release_ = false;
  FixtureServer server_;  // last: stopped before what its handlers use goes
};

TEST(DownloadBudgetEndToEnd, StalledHugeChunksDoNotGrowMemory) {
  constexpr int kUrls = 16;
  constexpr long kBudgetMiB = 64;
  StallingHost host;
  TempDir dir("download-budget");
  ImgprocProcess server(dir.path(), {{"ALLOW_PRIVATE_URLS", "1"},
                                     {"WORKERS", std::to_string(kUrls)},
                                     {"DOWNLOAD_BUDGET_BYTES", std::to_string(kBudgetMiB << 20)},
                                     {"FETCH_TIMEOUT_MS", "5000"},
                                     {"MAX_ATTEMPTS", "1"},
                                     {"LOG_LEVEL", "info"}});
  ASSERT_TRUE(server.Start()) << server.log();
  const long rss_before = PeakRssKib(server.pid());

  std::string csv = "Serial Number,Product Name,Input Image Urls\n";
  for (int i = 0; i < kUrls; ++i) {
    csv += std::to_string(i + 1) + ",P" + std::to_string(i) + "," + host.Url(i) + "\n";
  }
  auto upload = server.Upload(csv);
  ASSERT_TRUE(upload);
  ASSERT_EQ(upload->status, 202) << upload->body;
  const std::string id = nlohmann::json::parse(upload->body).value("request_id", "");
  const auto status = server.WaitForCompletion(id, 30s);
  ASSERT_EQ(status["status"], "completed") << server.log();
  EXPECT_EQ(status["progress"]["images_failed"], kUrls);  // every one stalled to its timeout

  const long grown_mib = (PeakRssKib(server.pid()) - rss_before) / 1024;
  // The downloads did get going (the scenario is not refused earlier, at the header)...
  EXPECT_GE(host.sent(), static_cast<size_t>(kBudgetMiB) << 20);
  // ...and what they hold is the budget plus the oldest one's body, at most twice over (a body
  // grows by doubling, and the allocator keeps what it freed for a while), where the unbounded
  // code held all kUrls bodies: up to 16 x 45 MiB.
#if !defined(__SANITIZE_ADDRESS__)  // AddressSanitizer's quarantine keeps freed bodies resident
  EXPECT_LT(grown_mib, 2 * (kBudgetMiB + 45))
      << "MiB of peak RSS grown; the host got " << (host.sent() >> 20) << " MiB out";
#endif
  std::cout << "[ measured ] " << kUrls << " stalled 45 MiB chunks, budget " << kBudgetMiB
            << " MiB: peak RSS grew by " << grown_mib << " MiB (from " << rss_before / 1024
            << " MiB); the host got " << (host.sent() >> 20) << " MiB out\n";
}

}  // namespace
}  // namespace imgproc::testing
