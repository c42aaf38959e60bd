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
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

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
  int cpu_threads = 2;
  // Pixels of the images between the start of their download and the end of their compression.
  uint64_t pixel_budget = 100'000'000;
  // Bytes of download bodies held in memory at once, from their download to the end of their
  // compression (net::DownloadBudget: the oldest download may go over it by up to one body).
  uint64_t download_budget_bytes = 256 * 1024 * 1024;
  int max_attempts = 5;
  std::chrono::milliseconds retry_base{1000};
  // How long a taken image stays with its worker without news. The pool extends its leases every
  // third of this while it works, so only a dead (or cut-off) worker's images are taken over.
  std::chrono::milliseconds lease{60'000};
  metrics::ServiceMetrics* metrics = nullptr;  // stage durations, bytes, outcomes; may be null
};

class WorkerPool {
 public:
  // `on_recorded` runs after each recorded outcome (e.g. to wake the webhook sender).
  WorkerPool(store::ImageLeases& store, queue::WorkQueue& queue, storage::ImageStorage& storage,
             PipelineOptions options, std::function<void()> on_recorded);
  ~WorkerPool();

  void Start();
  // Stops taking work and lets images in flight finish for up to `grace`; downloads still running
  // then are cancelled and their images handed back to the queue, due at once. Returns when every
  // worker has recorded its image.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(25));

 private:
  void Run(const std::string& owner);
  // Works one image and says what to record: its output URL, a final error, or a retry time.
  request::ImageOutcome Process(const store::ImageTask& task);
  void Heartbeat();
  // Records an outcome, retrying transient store errors (a database restarting) for up to a lease.
  // True when it was recorded (this worker still held the lease).
  bool Record(const store::ImageTask& task, const std::string& owner,
              const request::ImageOutcome& outcome);

  store::ImageLeases& store_;
  queue::WorkQueue& queue_;
  storage::ImageStorage& storage_;
  PipelineOptions options_;  // its fetch.cancel points at cancel_
  std::function<void()> on_recorded_;
  CpuStage cpu_;
  PixelBudget budget_;
  net::DownloadBudget body_budget_;  // options_.fetch.body_budget points at it
  std::atomic<bool> stop_{false};
  std::atomic<bool> cancel_{false};  // the shutdown grace period is over
  std::mutex mu_;
  std::condition_variable all_done_;
  int running_ = 0;  // threads still in Run()
  std::mutex held_mu_;
  std::multiset<int64_t> held_;  // the images taken and not yet recorded: the leases to extend
  std::string process_;          // every lease owner of this pool starts with it
  std::vector<std::thread> threads_;
  std::thread heartbeat_;
};

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_WORKER_POOL_H_
