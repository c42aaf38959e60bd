// The image pipeline: fetch → decode/encode → store → record, for images taken from the queue.
//
// `workers` I/O threads each carry one image at a time through its download and upload, which
// all run on the process's one libcurl multi handle, so the network waits of many images
// overlap. The compression itself runs on the CPU stage (`cpu_threads` threads, one per core by
// default). What waits between the two is bounded by a pixel budget, and the download bodies held
// in memory by a byte budget (a small image can come with a huge body), so memory stays flat
// whatever the size of a request or what its hosts send.
#ifndef IMGPROC_PIPELINE_WORKER_POOL_H_
#define IMGPROC_PIPELINE_WORKER_POOL_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/batcher.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "metrics/service_metrics.h"
#include "net/http_client.h"
#include "pipeline/cpu_stage.h"
#include "pipeline/image_codec.h"
#include "queue/queue.h"
#include "storage/storage.h"
#include "store/store.h"

namespace imgproc::pipeline {

struct PipelineOptions {
  net::FetchOptions fetch;
  CodecLimits codec;
  int workers = 64;
  // 0: one per core (config::Finalize resolves it; a pool given 0 runs one).
  int cpu_threads = 0;
  // Pixels of the images between the start of their download and the end of their compression.
  uint64_t pixel_budget = 80'000'000;
  // Bytes of download bodies held in memory at once, from their download to the end of their
  // compression (net::DownloadBudget: the oldest download may go over it by up to one body).
  uint64_t download_budget_bytes = 256 * 1024 * 1024;
  int max_attempts = 5;
  std::chrono::milliseconds retry_base{1000};
  // How long a taken image stays with its worker without news. The pool extends its leases every
  // third of this while it works, so only a dead (or cut-off) worker's images are taken over.
  std::chrono::milliseconds lease{60'000};
  // On shutdown (SIGTERM), how long the images in flight may take to finish before their downloads
  // are cancelled and they go back to the queue: what the service passes to WorkerPool::Stop().
  std::chrono::milliseconds shutdown_grace{25'000};
  metrics::ServiceMetrics* metrics = nullptr;  // stage durations, bytes, outcomes; may be null
  // The image cache (IMAGE_CACHE): an image whose URL answers 304 to a conditional request, or
  // whose bytes were stored before with its request's output plan (request::CacheKey), reuses
  // that output; an output made anew is stored once per content, under its SHA-256. Null: every
  // image is fetched and made anew.
  store::ImageCache* cache = nullptr;
  // How long an output of the cache may be reused (IMAGE_CACHE_MAX_AGE_HOURS).
  int cache_max_age_hours = 24 * 30;
  int64_t cache_max_age_ms() const { return int64_t{cache_max_age_hours} * 3'600'000; }
};

// The delay before an image's next attempt after a transient failure of attempt `attempt`
// (from 1): `base` doubling per attempt, plus up to half of it (`jitter`, from 0 to 1, scales that
// half: retries of many images spread out), and never less than what the remote side asked for
// (`at_least`, its Retry-After).
std::chrono::milliseconds RetryDelay(int attempt, std::chrono::milliseconds base, double jitter,
                                     std::chrono::milliseconds at_least);

class WorkerPool {
 public:
  // `on_webhook_due` runs after a recorded outcome completed its request with a webhook to send
  // (to wake the webhook sender). Times come from `clock` and downloads go through `http`: the
  // seams a test replaces.
  WorkerPool(store::ImageLeases& store, queue::WorkQueue& queue, storage::ImageStorage& storage,
             PipelineOptions options, std::function<void()> on_webhook_due,
             Clock& clock = RealClock(), net::HttpClient& http = net::CurlHttpClient());
  ~WorkerPool();

  void Start() EXCLUDES(mu_);
  // Stops taking work and lets images in flight finish for up to `grace`; downloads still running
  // then are cancelled and their images handed back to the queue, due at once. Returns when every
  // worker has recorded its image.
  void Stop(std::chrono::milliseconds grace) EXCLUDES(mu_);
  // The same with the options' shutdown_grace.
  void Stop() EXCLUDES(mu_) { Stop(options_.shutdown_grace); }

  // A worker asks before compressing and before storing whether its image's lease was lost (a
  // cancel drops it), and the answer comes from a read of all the pool's leases in flight at most
  // this old, instead of one read per image and stage (two statements per image, a fifth of a
  // whole catalogue's on PostgreSQL). So a cancel stops an image at the first stage that begins
  // this long after it; what the image does meanwhile is not recorded (a result is taken from
  // the lease's holder only).
  static constexpr std::chrono::milliseconds kLeaseCheckAge{100};

 private:
  void Run(const std::string& owner) EXCLUDES(mu_);
  // Works one image leased to `owner` and says what to record: its output URL, a final error,
  // or a retry time. Stops before a stage once the lease is lost (a cancel drops it).
  request::ImageOutcome Process(const store::ImageTask& task, const std::string& owner);
  // Whether the lease of `task` is lost, as a read at most kLeaseCheckAge old says.
  bool LeaseLost(const store::ImageTask& task, const std::string& owner)
      EXCLUDES(lease_check_mu_, held_mu_);
  // What the image cache says `owner` does with content `sha256` made with the plan `key`
  // (request::DecideContent): reuse an output the storage still holds, or store it; waits while
  // another worker stores it.
  Result<store::ContentClaim> ClaimContent(const std::string& sha256, const std::string& key,
                                           const std::string& owner, request::Millis stored_since);
  // Encodes the download `body` as `plan` says and stores each output: the main one, then the
  // variants. Named by content (`sha256`, with the image cache) or by the image's slot.
  request::ImageOutcome MakeOutputs(const store::ImageTask& task, const std::string& owner,
                                    const request::OutputPlan& plan, net::HttpResponse& response,
                                    const std::string& sha256, uint64_t& reserved);
  // An outcome for a failure: retried later when transient and attempts remain, final otherwise.
  request::ImageOutcome Failure(const store::ImageTask& task, bool transient, std::string error,
                                std::chrono::milliseconds at_least = {});
  void Heartbeat() EXCLUDES(mu_);
  // Records an outcome, retrying transient store errors (a database restarting) for up to a lease.
  // Taken when it was recorded (this worker still held the lease); not taken when it could not be.
  store::Recorded Record(const store::ImageTask& task, const std::string& owner,
                         const request::ImageOutcome& outcome);
  bool stopping() EXCLUDES(mu_);

  store::ImageLeases& store_;
  queue::WorkQueue& queue_;
  storage::ImageStorage& storage_;
  PipelineOptions options_;  // its fetch.cancel points at cancel_
  std::function<void()> on_webhook_due_;
  Clock& clock_;
  net::HttpClient& http_;
  CpuStage cpu_;
  PixelBudget budget_;
  net::DownloadBudget body_budget_;  // options_.fetch.body_budget points at it
  std::atomic<bool> cancel_{false};  // the shutdown grace period is over (read by transfers)
  Mutex mu_;
  CondVar changed_;  // stop_ set, or running_ down: for Stop, the heartbeat and backing off
  bool stop_ GUARDED_BY(mu_) = false;
  int running_ GUARDED_BY(mu_) = 0;  // threads still in Run()
  Mutex held_mu_;
  // The images taken and not yet recorded, with their owners (a worker holds one image at a
  // time, so each pair once): the leases to extend and check.
  std::set<std::pair<int64_t, std::string>> held_ GUARDED_BY(held_mu_);
  // The last read of the leases in flight (LeaseLost): when, and those found lost.
  Mutex lease_check_mu_;
  std::optional<Clock::TimePoint> lease_checked_at_ GUARDED_BY(lease_check_mu_);
  std::set<std::pair<int64_t, std::string>> leases_lost_ GUARDED_BY(lease_check_mu_);
  // The outcomes of the workers recording at the same time, in one store transaction. One
  // transaction per image was a third of a re-import's CPU (perf, 400 images answered 304).
  Batcher<store::ImageResult, store::Recorded> records_;
  std::string process_;  // every lease owner of this pool starts with it
  std::vector<std::thread> threads_;
  std::thread heartbeat_;
};

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_WORKER_POOL_H_
