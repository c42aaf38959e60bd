#include "pipeline/worker_pool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "eventually.h"
#include "fake_clock.h"
#include "fake_http_client.h"
#include "forwarding_store.h"
#include "queue/embedded_queue.h"
#include "storage/local_storage.h"
#include "test_images.h"

namespace imgproc::pipeline {
namespace {

using namespace std::chrono_literals;
using testing::FakeClock;
using testing::FakeHttpClient;

constexpr char kA[] = "http://img.test/a.jpg";
constexpr char kB[] = "http://img.test/b.jpg";

TEST(RetryDelay, DoublesPerAttemptWithUpToHalfOfItAsJitter) {
  EXPECT_EQ(RetryDelay(1, 1000ms, 0, 0ms), 1000ms);
  EXPECT_EQ(RetryDelay(1, 1000ms, 1, 0ms), 1500ms);
  EXPECT_EQ(RetryDelay(3, 1000ms, 0, 0ms), 4000ms);
  EXPECT_EQ(RetryDelay(3, 1000ms, 0.5, 0ms), 5000ms);
  EXPECT_EQ(RetryDelay(2, 1000ms, 0, 30s), 30s);    // the remote side's Retry-After wins
  EXPECT_EQ(RetryDelay(40, 1ms, 0, 0ms), 65536ms);  // the doubling stops at 2^16
  EXPECT_EQ(RetryDelay(1, -5ms, 1, 0ms), 0ms);      // a negative base is no base
}

// A pool on fakes: the store (real SQLite) and the queue read the fake clock, downloads are
// answered by the fake HTTP client, outputs go to a folder.
class WorkerPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("imgproc-pool-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto opened = store::OpenStore("sqlite://" + (dir_ / "imgproc.db").string(), clock_);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    store_ = std::move(*opened);
    options_.workers = 1;
    options_.cpu_threads = 1;
    options_.max_attempts = 3;
    options_.retry_base = 1000ms;
    options_.lease = 30s;
  }
  void TearDown() override {
    pool_.reset();
    queue_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
    std::filesystem::remove_all(media_);
  }

  void Start(store::ImageLeases& leases) {
    queue_ = std::make_unique<queue::EmbeddedQueue>(leases, options_.lease, 1h, clock_);
    pool_ = std::make_unique<WorkerPool>(
        leases, *queue_, storage_, options_, [this] { ++webhook_wakes_; }, clock_, http_);
    pool_->Start();
  }
  void Start() { Start(*store_); }

  void Create(std::vector<std::string> urls, const std::string& id = "r1", bool refresh = false,
              const std::string& outputs = "") {
    ASSERT_TRUE(store_
                    ->CreateRequest({id,
                                     std::nullopt,
                                     std::nullopt,
                                     "",
                                     0,
                                     {{1, "Shoe", std::move(urls)}},
                                     refresh,
                                     outputs})
                    .ok());
    if (queue_) queue_->Notify();
  }
  request::RequestView View(const std::string& id = "r1") {
    auto view = store_->GetRequest(id);
    EXPECT_TRUE(view.ok()) << view.status().message();
    return view.ok() ? *view : request::RequestView{};
  }
  // True once the request has completed (in real time: the pool's threads get there by
  // themselves once the fake clock has moved far enough).
  bool AwaitCompleted(const std::string& id = "r1") {
    return testing::Eventually(
        [&] { return View(id).status == request::RequestStatus::kCompleted; }, 10s);
  }
  // The files stored under media/<folder>.
  size_t Stored(const std::string& folder) {
    std::error_code ec;
    if (!std::filesystem::exists(media_ / folder, ec)) return 0;
    return static_cast<size_t>(
        std::distance(std::filesystem::directory_iterator(media_ / folder), {}));
  }
  // The pool is idle until the fake clock moves: its worker waits for due work and its
  // heartbeat for its next beat.
  bool AwaitIdle() { return clock_.AwaitWaiters(2); }

  std::filesystem::path dir_;
  FakeClock clock_;
  FakeHttpClient http_;
  PipelineOptions options_;
  std::unique_ptr<store::Store> store_;
  const std::filesystem::path media_ =
      std::filesystem::temp_directory_path() / ("imgproc-pool-media-" + std::to_string(::getpid()));
  storage::LocalStorage storage_{media_, "http://127.0.0.1:1"};
  std::unique_ptr<queue::EmbeddedQueue> queue_;
  std::unique_ptr<WorkerPool> pool_;
  std::atomic<int> webhook_wakes_{0};  // calls of the pool's on_webhook_due
};

const std::string& Jpeg() {
  static const std::string jpeg = testing::MakeImage(testing::TestImage::kJpegRgb, 64, 48);
  return jpeg;
}

// A transient failure (503) is tried again after the backoff, doubling per attempt, and the
// image is done once the host answers.
TEST_F(WorkerPoolTest, RetriesATransientFailureAfterItsBackoff) {
  int answers = 0;
  http_.On(kA,
           [&](const FakeHttpClient::Call&, const net::FetchOptions&) -> Result<net::HttpResponse> {
             return ++answers <= 2 ? testing::Response(503) : testing::Response(200, Jpeg());
           });
  Create({kA});
  Start();
  ASSERT_TRUE(http_.AwaitCalls(kA, 1));
  ASSERT_TRUE(AwaitIdle());
  // The first retry is due 1 to 1.5 s later.
  clock_.Advance(999ms);
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(http_.count(kA), 1u);
  clock_.Advance(502ms);  // (the queue wakes a millisecond after an image is due)
  ASSERT_TRUE(http_.AwaitCalls(kA, 2));
  ASSERT_TRUE(AwaitIdle());
  // The second 2 to 3 s after the second failure.
  clock_.Advance(1999ms);
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(http_.count(kA), 2u);
  clock_.Advance(1002ms);
  ASSERT_TRUE(AwaitCompleted());
  const request::RequestView view = View();
  EXPECT_EQ(view.images_done, 1);
  ASSERT_TRUE(view.products[0].output_urls);
  EXPECT_EQ(*view.products[0].output_urls, "http://127.0.0.1:1/media/r1/1_0.jpg");
  EXPECT_EQ(http_.count(kA), 3u);
}

// After MAX_ATTEMPTS transient failures the image fails for good, with the last error.
TEST_F(WorkerPoolTest, GivesUpAfterTheLastAttempt) {
  http_.Respond(kA, 503);
  options_.max_attempts = 2;
  Create({kA});
  Start();
  ASSERT_TRUE(http_.AwaitCalls(kA, 1));
  ASSERT_TRUE(AwaitIdle());
  clock_.Advance(1502ms);
  ASSERT_TRUE(AwaitCompleted());
  const request::RequestView view = View();
  EXPECT_EQ(view.images_failed, 1);
  ASSERT_EQ(view.products[0].image_errors.size(), 1u);
  EXPECT_EQ(view.products[0].image_errors[0].error, "download failed: HTTP 503");
  EXPECT_EQ(view.products[0].image_errors[0].attempts, 2);
  EXPECT_EQ(http_.count(kA), 2u);
}

// A permanent failure (404, an image that does not decode) is not tried again.
TEST_F(WorkerPoolTest, APermanentFailureIsNotRetried) {
  http_.Respond(kA, 404);
  http_.Respond(kB, 200, "not an image at all");
  Create({kA, kB});
  Start();
  ASSERT_TRUE(AwaitCompleted());
  const request::RequestView view = View();
  EXPECT_EQ(view.images_failed, 2);
  EXPECT_EQ(http_.count(kA), 1u);
  EXPECT_EQ(http_.count(kB), 1u);
  EXPECT_EQ(*view.products[0].output_urls, ",");
}

// A 429 with Retry-After is tried again no sooner than the host asked.
TEST_F(WorkerPoolTest, HonoursRetryAfter) {
  int answers = 0;
  http_.On(kA,
           [&](const FakeHttpClient::Call&, const net::FetchOptions&) -> Result<net::HttpResponse> {
             return ++answers == 1 ? testing::Response(429, "", {{"retry-after", "30"}})
                                   : testing::Response(200, Jpeg());
           });
  Create({kA});
  Start();
  ASSERT_TRUE(http_.AwaitCalls(kA, 1));
  ASSERT_TRUE(AwaitIdle());
  clock_.Advance(29'999ms);  // the backoff alone would have been 1 to 1.5 s
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(http_.count(kA), 1u);
  clock_.Advance(2ms);
  ASSERT_TRUE(AwaitCompleted());
  EXPECT_EQ(View().images_done, 1);
}

// SIGTERM: images in flight get the grace period; a download still running then is cancelled and
// its image handed back to the queue, due at once, not failed.
TEST_F(WorkerPoolTest, ShutdownCancelsWhatOutlastsTheGraceAndHandsItBack) {
  std::atomic<bool> cancelled{false};
  http_.On(kA,
           [&](const FakeHttpClient::Call&,
               const net::FetchOptions& options) -> Result<net::HttpResponse> {
             // A download that never ends, until it is cancelled (the real client checks every
             // second).
             while (!options.cancel->load()) std::this_thread::sleep_for(1ms);
             cancelled = true;
             return Transient("cancelled");
           });
  Create({kA});
  Start();
  ASSERT_TRUE(http_.AwaitCalls(kA, 1));
  std::thread stop([&] { pool_->Stop(10s); });
  ASSERT_TRUE(clock_.AwaitWaiters(2));  // Stop, waiting out the grace; and the heartbeat
  clock_.Advance(9'999ms);
  ASSERT_TRUE(clock_.AwaitWaiters(2));
  EXPECT_FALSE(cancelled);
  clock_.Advance(1ms);
  stop.join();
  EXPECT_TRUE(cancelled);
  const request::RequestView view = View();
  EXPECT_EQ(view.status, request::RequestStatus::kProcessing);
  ASSERT_EQ(view.products[0].image_retries.size(), 1u);
  EXPECT_EQ(view.products[0].image_retries[0].error, "interrupted by shutdown");
  EXPECT_TRUE(view.products[0].image_errors.empty());
  // Due at once: the next run takes it.
  auto again = store_->ClaimImages("next-run", 1, 1000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 1u);
}

// Commits the first claim that takes an image but answers it with a transient error, as when the
// database restarts between the commit and its reply: the claim's image is leased to a worker
// that never learnt about it.
class LosesFirstClaimStore final : public testing::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  Result<std::vector<std::vector<store::ImageTask>>> ClaimImagesFor(
      const std::vector<store::ImageClaim>& claims, request::Millis lease_ms) override {
    auto claimed = ForwardingStore::ClaimImagesFor(claims, lease_ms);
    const bool took = claimed.ok() && std::any_of(claimed->begin(), claimed->end(),
                                                  [](const auto& tasks) { return !tasks.empty(); });
    if (took && !lost_one_.exchange(true)) {
      return Transient("connection lost after the claim was committed");
    }
    return claimed;
  }

  bool lost_one() const { return lost_one_; }

 private:
  std::atomic<bool> lost_one_{false};
};

// The heartbeat extends the leases of the images the pool holds, so a slow one is not taken over
// while its worker lives; and only those: an image whose claim was lost expires and is taken
// again, instead of staying leased for ever.
// A request cancelled while its image downloads: the image stops before its compression and
// stores nothing, and the request's other image never starts.
TEST_F(WorkerPoolTest, ACancelledRequestsImagesStopAtTheirNextStage) {
  http_.On(kA,
           [&](const FakeHttpClient::Call&, const net::FetchOptions&) -> Result<net::HttpResponse> {
             EXPECT_EQ(*store_->CancelRequest("r1", std::nullopt), request::CancelVerdict::kCancel);
             return testing::Response(200, Jpeg());
           });
  http_.Respond(kB, 200, Jpeg());
  Create({kA, kB});
  Start();
  ASSERT_TRUE(http_.AwaitCalls(kA, 1));
  ASSERT_TRUE(AwaitIdle());  // done with what it had taken
  EXPECT_EQ(http_.count(kB), 0u);
  EXPECT_FALSE(std::filesystem::exists(media_ / "r1"));  // nothing stored
  const request::RequestView view = View();
  EXPECT_EQ(view.status, request::RequestStatus::kCancelled);
  EXPECT_EQ(view.images_failed, 2);
  EXPECT_EQ(view.products[0].output_urls.value_or("?"), ",");
}

// Counts the reads of leases in flight.
class CountsLeaseReadsStore final : public testing::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  Result<std::vector<bool>> HoldLeases(
      const std::vector<std::pair<int64_t, std::string>>& leases) override {
    ++reads_;
    return ForwardingStore::HoldLeases(leases);
  }

  int reads() const { return reads_; }

 private:
  std::atomic<int> reads_{0};
};

// The pool reads the leases of its images in flight together, at most every kLeaseCheckAge,
// instead of once per image and stage: while the clock stands still, the four checks of a and b
// take one read. A cancel is seen by the first check once that read is as old: c, cancelled
// while it downloads, stops before its compression.
TEST_F(WorkerPoolTest, LeaseChecksShareOneReadUntilItIsOld) {
  constexpr char kC[] = "http://img.test/c.jpg";
  CountsLeaseReadsStore counting(*store_);
  http_.Respond(kA, 200, Jpeg());
  http_.Respond(kB, 200, Jpeg());
  http_.On(kC,
           [&](const FakeHttpClient::Call&, const net::FetchOptions&) -> Result<net::HttpResponse> {
             EXPECT_EQ(*store_->CancelRequest("r1", std::nullopt), request::CancelVerdict::kCancel);
             clock_.Advance(WorkerPool::kLeaseCheckAge);
             return testing::Response(200, Jpeg());
           });
  Create({kA, kB, kC});
  Start(counting);
  ASSERT_TRUE(http_.AwaitCalls(kC, 1));
  ASSERT_TRUE(AwaitIdle());
  EXPECT_EQ(counting.reads(), 2);
  EXPECT_EQ(Stored("r1"), 2u);  // a and b; not c
  const request::RequestView view = View();
  EXPECT_EQ(view.status, request::RequestStatus::kCancelled);
  EXPECT_EQ(view.images_done, 2);
  EXPECT_EQ(view.images_failed, 1);
}

// The ETag a host sends for Jpeg(), and a handler for a host that answers conditional requests
// for it with 304 (a host with validators), recording the conditional headers it saw.
constexpr char kEtag[] = "\"v1\"";
FakeHttpClient::Handler HostWithValidators(std::vector<std::vector<std::string>>* seen) {
  return [seen](const FakeHttpClient::Call&,
                const net::FetchOptions& options) -> Result<net::HttpResponse> {
    seen->push_back(options.headers);
    for (const std::string& h : options.headers) {
      if (h == std::string("If-None-Match: ") + kEtag) return testing::Response(304);
    }
    return testing::Response(200, Jpeg(),
                             {{"etag", kEtag}, {"last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"}});
  };
}

// With the image cache: the same bytes from two URLs are compressed and stored once; a second
// request asks the host with validators conditionally (304: nothing downloaded or made), and
// the host without them sends the same bytes again, whose output is reused.
TEST_F(WorkerPoolTest, AReimportReusesOutputsByValidatorsAndByContent) {
  std::vector<std::vector<std::string>> seen;
  http_.On(kA, HostWithValidators(&seen));
  http_.Respond(kB, 200, Jpeg());  // no validators: same bytes under another URL
  options_.cache = store_.get();
  Create({kA, kB});
  Start();
  ASSERT_TRUE(AwaitCompleted());
  request::RequestView first = View();
  EXPECT_EQ(first.images_done, 2);
  EXPECT_EQ(first.images_reused, 1);  // b: its bytes were a's
  EXPECT_EQ(Stored("objects"), 1u);
  EXPECT_EQ(Stored("r1"), 0u);
  const std::string output =
      "http://127.0.0.1:1/media/objects/" + request::Sha256Hex(Jpeg()) + "_jpeg-q50.jpg";
  EXPECT_EQ(first.products[0].output_urls.value_or("?"), output + "," + output);
  const auto stored_at = std::filesystem::last_write_time(
      media_ / "objects" / (request::Sha256Hex(Jpeg()) + "_jpeg-q50.jpg"));

  Create({kB, kA}, "r2");
  ASSERT_TRUE(AwaitCompleted("r2"));
  request::RequestView second = View("r2");
  EXPECT_EQ(second.images_reused, 2);
  EXPECT_EQ(second.products[0].output_urls.value_or("?"), output + "," + output);
  ASSERT_EQ(second.products[0].image_sizes.size(), 2u);
  EXPECT_TRUE(second.products[0].image_sizes[1].reused);
  EXPECT_EQ(second.products[0].image_sizes[1].input_bytes, static_cast<int64_t>(Jpeg().size()));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[0].empty());  // the first time: unconditional
  EXPECT_EQ(seen[1],
            (std::vector<std::string>{std::string("If-None-Match: ") + kEtag,
                                      "If-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT"}));
  EXPECT_EQ(Stored("objects"), 1u);
  EXPECT_EQ(std::filesystem::last_write_time(media_ / "objects" /
                                             (request::Sha256Hex(Jpeg()) + "_jpeg-q50.jpg")),
            stored_at);  // not stored again
}

// A request's plan: its main output and each variant are made and stored under the slot's name
// (<serial>_<index>[_<variant>].<ext>), with the variants' sizes recorded; with the image cache,
// by content and settings, and a re-import of the same plan reuses them all (a new plan does not).
TEST_F(WorkerPoolTest, EachOutputOfThePlanIsMadeStoredAndRecorded) {
  const std::string plan = "webp-q60-32x0;thumb=jpeg-q70-16x16-p";
  http_.Respond(kA, 200, Jpeg());
  Create({kA}, "r1", false, plan);
  Start();
  ASSERT_TRUE(AwaitCompleted());
  request::RequestView view = View();
  EXPECT_EQ(view.products[0].output_urls.value_or("?"), "http://127.0.0.1:1/media/r1/1_0.webp");
  ASSERT_EQ(view.products[0].image_sizes.size(), 1u);
  const auto& variants = view.products[0].image_sizes[0].variants;
  ASSERT_EQ(variants.size(), 1u);
  EXPECT_EQ(variants[0].name, "thumb");
  EXPECT_EQ(variants[0].url, "http://127.0.0.1:1/media/r1/1_0_thumb.jpg");
  EXPECT_EQ(variants[0].width, 16);  // 64x48 fit inside 16x16
  EXPECT_EQ(variants[0].height, 12);
  EXPECT_EQ(variants[0].bytes,
            static_cast<int64_t>(std::filesystem::file_size(media_ / "r1" / "1_0_thumb.jpg")));
  std::ifstream in(media_ / "r1" / "1_0.webp", std::ios::binary);
  std::string riff(12, '\0');
  in.read(riff.data(), 12);
  EXPECT_EQ(riff.substr(8, 4), "WEBP");
  EXPECT_EQ(Stored("r1"), 2u);

  // With the cache: objects named by content and settings, reused whole by the same plan.
  options_.cache = store_.get();
  pool_.reset();
  queue_.reset();
  Start();
  Create({kA}, "r2", false, plan);
  ASSERT_TRUE(AwaitCompleted("r2"));
  const std::string sha = request::Sha256Hex(Jpeg());
  EXPECT_EQ(View("r2").products[0].output_urls.value_or("?"),
            "http://127.0.0.1:1/media/objects/" + sha + "_webp-q60-32x0.webp");
  EXPECT_EQ(View("r2").products[0].image_sizes[0].variants[0].url,
            "http://127.0.0.1:1/media/objects/" + sha + "_jpeg-q70-16x16-p.jpg");
  Create({kA}, "r3", false, plan);
  ASSERT_TRUE(AwaitCompleted("r3"));
  EXPECT_EQ(View("r3").images_reused, 1);
  EXPECT_EQ(View("r3").products[0].image_sizes[0].variants,
            View("r2").products[0].image_sizes[0].variants);
  Create({kA}, "r4", false, "webp-q60-32x0");  // another plan: made anew
  ASSERT_TRUE(AwaitCompleted("r4"));
  EXPECT_EQ(View("r4").images_reused, 0);
  EXPECT_TRUE(View("r4").products[0].image_sizes[0].variants.empty());
  EXPECT_EQ(Stored("objects"), 2u);  // the plans share the main object
}

// An output deleted from the storage by hand is not reused: the image is made and stored again.
TEST_F(WorkerPoolTest, AnOutputGoneFromTheStorageIsMadeAgain) {
  std::vector<std::vector<std::string>> seen;
  http_.On(kA, HostWithValidators(&seen));
  options_.cache = store_.get();
  Create({kA});
  Start();
  ASSERT_TRUE(AwaitCompleted());
  std::filesystem::remove_all(media_ / "objects");
  Create({kA}, "r2");
  ASSERT_TRUE(AwaitCompleted("r2"));
  EXPECT_EQ(View("r2").images_reused, 0);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[1].empty());  // not asked conditionally: its output was gone
  EXPECT_EQ(Stored("objects"), 1u);
}

// Cache-Control: no-store is never kept (made anew each time, stored per request), and a request
// with refresh makes its images anew (the cache then has the new output).
TEST_F(WorkerPoolTest, NoStoreResponsesAndRefreshedRequestsAreMadeAnew) {
  http_.Respond(kA, 200, Jpeg(), {{"etag", kEtag}, {"cache-control", "private, no-store"}});
  std::vector<std::vector<std::string>> seen;
  http_.On(kB, HostWithValidators(&seen));
  options_.cache = store_.get();
  Create({kA, kB});
  Start();
  ASSERT_TRUE(AwaitCompleted());
  clock_.Advance(1s);  // r2 comes later: what r1 stored is older than it
  Create({kA, kB}, "r2", /*refresh=*/true);
  ASSERT_TRUE(AwaitCompleted("r2"));
  const request::RequestView view = View("r2");
  EXPECT_EQ(view.images_reused, 0);
  EXPECT_EQ(Stored("r1"), 1u);  // a, per request, both times
  EXPECT_EQ(Stored("r2"), 1u);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[1].empty());  // refresh: not asked conditionally
  EXPECT_EQ(view.products[0].output_urls.value_or("?"),
            "http://127.0.0.1:1/media/r2/1_0.jpg,http://127.0.0.1:1/media/objects/" +
                request::Sha256Hex(Jpeg()) + "_jpeg-q50.jpg");
}

// Two pools (two worker processes) on one store, each with a different URL of the same bytes at
// the same time: one object is stored, and the other pool reuses it.
TEST_F(WorkerPoolTest, TwoPoolsWithTheSameContentStoreOneObject) {
  std::atomic<int> downloading{0};
  // Both downloads are in flight together before either answers: a real race.
  const auto together = [&](const FakeHttpClient::Call&,
                            const net::FetchOptions&) -> Result<net::HttpResponse> {
    ++downloading;
    testing::Eventually([&] { return downloading.load() >= 2; }, 10s);
    return testing::Response(200, Jpeg());
  };
  http_.On(kA, together);
  http_.On(kB, together);
  options_.cache = store_.get();
  Create({kA});
  Create({kB}, "r2");
  Start();
  queue::EmbeddedQueue other_queue(*store_, options_.lease, 1h, clock_);
  WorkerPool other(*store_, other_queue, storage_, options_, nullptr, clock_, http_);
  other.Start();
  // The pool that lost the race polls the cache in steps of the (fake) clock while the other
  // stores the output: time moves on until both requests are done.
  const bool done = testing::Eventually(
      [&] {
        clock_.Advance(50ms);
        return View().status == request::RequestStatus::kCompleted &&
               View("r2").status == request::RequestStatus::kCompleted;
      },
      10s);
  other.Stop();
  ASSERT_TRUE(done);
  EXPECT_EQ(Stored("objects"), 1u);
  EXPECT_EQ(View().images_reused + View("r2").images_reused, 1);
  EXPECT_EQ(View().products[0].output_urls, View("r2").products[0].output_urls);
}

TEST_F(WorkerPoolTest, LeasesOfHeldImagesAreExtendedAndALostClaimExpires) {
  LosesFirstClaimStore store(*store_);
  options_.lease = 3s;
  struct StopFirst {  // the pool stops before `store` goes, however the test ends
    std::unique_ptr<WorkerPool>& pool;
    ~StopFirst() { pool.reset(); }
  } stop_first{pool_};
  std::atomic<bool> release{false};
  struct Released {  // whatever happens, so that the pool can stop
    std::atomic<bool>& flag;
    ~Released() { flag = true; }
  } released{release};
  http_.On(kB,
           [&](const FakeHttpClient::Call&, const net::FetchOptions&) -> Result<net::HttpResponse> {
             while (!release) std::this_thread::sleep_for(1ms);  // slow: longer than its lease
             return testing::Response(200, Jpeg());
           });
  http_.Respond(kA, 200, Jpeg());
  Create({kA, kB});  // the first claim (a) is lost; b is then taken and held
  Start(store);
  ASSERT_TRUE(AwaitIdle());  // the worker backs off after the lost claim
  clock_.Advance(100ms);
  ASSERT_TRUE(http_.AwaitCalls(kB, 1));
  for (int beat = 0; beat < 4; ++beat) {  // 4 s: past both leases
    ASSERT_TRUE(clock_.AwaitWaiters(1));  // the heartbeat (the worker is downloading b)
    clock_.Advance(1000ms);
  }
  // b's lease was extended by every beat: nobody else may take it. a's ran out.
  ASSERT_TRUE(testing::Eventually([&] { return http_.count(kA) == 0; }));
  auto other = store_->ClaimImages("another-process", 5, 1000);
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->size(), 1u);
  EXPECT_EQ((*other)[0].url, kA);
  EXPECT_TRUE(store.lost_one());
  release = true;
  pool_.reset();  // before `store`, which it uses
}

// The webhook sender is woken once per request completed with a webhook, not per image: of two
// requests of two images each, only the one with a webhook wakes it, when its last image is in.
TEST_F(WorkerPoolTest, WakesTheWebhookSenderOnlyForARequestCompletedWithAWebhook) {
  const auto serve = [](const FakeHttpClient::Call&,
                        const net::FetchOptions&) -> Result<net::HttpResponse> {
    return testing::Response(200, Jpeg());
  };
  http_.On(kA, serve);
  http_.On(kB, serve);
  ASSERT_TRUE(store_
                  ->CreateRequest(
                      {"hooked", "http://hook.test/", std::nullopt, "", 0, {{1, "Shoe", {kA, kB}}}})
                  .ok());
  Create({kB, kA}, "plain");
  Start();
  ASSERT_TRUE(AwaitCompleted("hooked"));
  ASSERT_TRUE(AwaitCompleted("plain"));
  ASSERT_TRUE(AwaitIdle());  // every outcome recorded, and the pool waiting for more
  EXPECT_EQ(webhook_wakes_.load(), 1);
}

}  // namespace
}  // namespace imgproc::pipeline
