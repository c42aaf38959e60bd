#include "pipeline/worker_pool.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "common/logging.h"
#include "common/thread_name.h"

namespace imgproc::pipeline {
namespace {

// An outcome for a failure: retried later when transient and attempts remain, final otherwise.
request::ImageOutcome Failure(const store::ImageTask& task, const PipelineOptions& options,
                              bool transient, std::string error,
                              std::chrono::milliseconds min_delay = {}) {
  request::ImageOutcome out;
  out.error = std::move(error);
  if (transient && task.attempts < options.max_attempts) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const int64_t base = options.retry_base.count() << std::min(task.attempts - 1, 16);
    const int64_t delay = std::max<int64_t>(
        min_delay.count(), base + std::uniform_int_distribution<int64_t>(0, base / 2)(rng));
    out.retry_at = RealClock().WallMillis() + delay;
  }
  return out;
}

// Seconds since `start`, observed into `histogram` (when there are metrics).
void ObserveSince(metrics::Histogram* histogram, std::chrono::steady_clock::time_point start) {
  if (histogram == nullptr) return;
  histogram->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace

request::ImageOutcome WorkerPool::Process(const store::ImageTask& task) {
  metrics::ServiceMetrics* m = options_.metrics;
  // Held from before the download until the compression is over; released on every path out.
  uint64_t reserved = budget_.Reserve();
  struct Release {
    PixelBudget& budget;
    uint64_t& pixels;
    ~Release() { budget.Release(pixels); }
  } release{budget_, reserved};

  // The real size replaces the estimate as soon as the image's header is in; the rest of the
  // download waits for it to fit. Held longer than half the download's timeout, the download is
  // abandoned, waits for room with no connection open, and is made again. An image the codec
  // would refuse for its size is refused at its header, its rest never downloaded.
  auto start = std::chrono::steady_clock::now();
  uint64_t head_pixels = 0;
  Status refusal;
  bool abandoned = false;
  net::HeadGate gate;
  gate.admit = [&](std::string_view head) {
    ImageHeader header = ReadHeader(head, options_.codec);
    head_pixels = header.pixels;
    refusal = std::move(header.refusal);
    if (head_pixels == 0) return net::HeadVerdict::kUndecided;
    if (!refusal.ok() || !budget_.TryResize(reserved, head_pixels)) return net::HeadVerdict::kHold;
    return net::HeadVerdict::kGoOn;
  };
  gate.wait = [&, hold_until = start + options_.fetch.total_timeout / 2] {
    if (!refusal.ok()) return false;
    abandoned = !budget_.Resize(reserved, head_pixels, hold_until);
    if (m) m->DownloadHeld(!abandoned);
    return !abandoned;
  };
  auto response = net::Get(task.url, options_.fetch, &gate);
  if (!refusal.ok()) return Failure(task, options_, false, refusal.message());
  if (abandoned) {
    budget_.Resize(reserved, head_pixels, PixelBudget::Clock::time_point::max());
    response = net::Get(task.url, options_.fetch);
  }
  ObserveSince(m ? &m->download_seconds() : nullptr, start);
  if (!response.ok()) {
    return Failure(task, options_, response.status().transient(),
                   "download failed: " + response.status().message());
  }
  const long code = response->status;
  if (code < 200 || code >= 300) {
    const bool transient = code == 408 || code == 429 || code >= 500;
    std::chrono::milliseconds retry_after{};
    if (auto it = response->headers.find("retry-after"); it != response->headers.end()) {
      retry_after = RetryAfter(it->second);
    }
    return Failure(task, options_, transient, "download failed: HTTP " + std::to_string(code),
                   retry_after);
  }
  if (response->body.empty()) return Failure(task, options_, false, "download failed: empty body");
  const auto input_bytes = static_cast<int64_t>(response->body.size());
  if (m) m->BytesIn(response->body.size());

  if (head_pixels == 0) {
    reserved = budget_.Correct(reserved, ReadHeader(response->body, options_.codec).pixels);
  }
  Result<EncodedImage> encoded = Internal("not run");
  cpu_.Run([&] {
    start = std::chrono::steady_clock::now();
    encoded = CompressToJpeg(response->body, options_.codec);
    ObserveSince(m ? &m->compress_seconds() : nullptr, start);
  });
  response->body = std::string();  // free the download before the upload
  response->body_share.Release();
  budget_.Release(std::exchange(reserved, 0));
  if (!encoded.ok()) return Failure(task, options_, false, encoded.status().message());

  const std::string name =
      std::to_string(task.serial_no) + "_" + std::to_string(task.index) + ".jpg";
  start = std::chrono::steady_clock::now();
  auto url = storage_.Put(task.request_id, name, encoded->jpeg);
  ObserveSince(m ? &m->upload_seconds() : nullptr, start);
  if (!url.ok()) {
    return Failure(task, options_, url.status().transient(), url.status().message(),
                   url.status().retry_after());
  }
  if (m) m->BytesOut(encoded->jpeg.size());
  request::ImageOutcome out;
  out.ok = true;
  out.output_url = *url;
  out.input_bytes = input_bytes;
  out.output_bytes = static_cast<int64_t>(encoded->jpeg.size());
  return out;
}

WorkerPool::WorkerPool(store::ImageLeases& store, queue::WorkQueue& queue,
                       storage::ImageStorage& storage, PipelineOptions options,
                       std::function<void()> on_recorded)
    : store_(store),
      queue_(queue),
      storage_(storage),
      options_(std::move(options)),
      on_recorded_(std::move(on_recorded)),
      cpu_(std::max(1, options_.cpu_threads)),
      budget_(options_.pixel_budget),
      body_budget_(options_.download_budget_bytes) {
  options_.fetch.cancel = &cancel_;
  options_.fetch.body_budget = &body_budget_;
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Start() {
  // Lease owners are unique per process and thread, so a result is only taken from the worker
  // that holds the image.
  process_ = std::to_string(getpid()) + "-" + std::to_string(std::random_device{}());
  running_ = options_.workers;
  heartbeat_ = std::thread([this] {
    NameThisThread("imgproc-lease");
    Heartbeat();
  });
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, owner = process_ + "/" + std::to_string(i)] {
      NameThisThread("imgproc-io");
      Run(owner);
      std::lock_guard<std::mutex> lock(mu_);
      if (--running_ == 0) all_done_.notify_all();
    });
  }
}

void WorkerPool::Stop(std::chrono::milliseconds grace) {
  stop_ = true;
  queue_.Shutdown();
  all_done_.notify_all();  // wakes workers backing off
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!all_done_.wait_for(lock, grace, [this] { return running_ == 0; })) {
      spdlog::warn("shutdown: cancelling {} image(s) still downloading; they go back to the queue",
                   running_);
      cancel_ = true;
    }
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  all_done_.notify_all();  // ends the heartbeat
  if (heartbeat_.joinable()) heartbeat_.join();
}

void WorkerPool::Heartbeat() {
  const auto period = std::max(options_.lease / 3, std::chrono::milliseconds(10));
  std::unique_lock<std::mutex> lock(mu_);
  while (!all_done_.wait_for(lock, period, [this] { return running_ == 0; })) {
    lock.unlock();
    std::vector<int64_t> held;
    {
      std::lock_guard<std::mutex> held_lock(held_mu_);
      held.assign(held_.begin(), held_.end());
    }
    if (!held.empty()) {
      auto extended = store_.ExtendLeases(process_ + "/", held, options_.lease.count());
      if (!extended.ok()) spdlog::warn("cannot extend leases: {}", extended.status().message());
    }
    lock.lock();
  }
}

bool WorkerPool::Record(const store::ImageTask& task, const std::string& owner,
                        const request::ImageOutcome& outcome) {
  const auto give_up = std::chrono::steady_clock::now() + options_.lease;
  auto delay = std::chrono::milliseconds(100);
  while (true) {
    auto recorded = store_.RecordImage(task.image_id, owner, outcome);
    if (recorded.ok()) {
      if (!*recorded) {
        spdlog::info("request {} image {}#{}: lease lost, another worker's result stands",
                     task.request_id, task.serial_no, task.index);
      }
      queue_.Done(task);
      return *recorded;
    }
    if (!recorded.status().transient() || std::chrono::steady_clock::now() + delay > give_up) {
      // The lease runs out and the image is done again by whoever takes it.
      spdlog::error("request {}: cannot record image: {}", task.request_id,
                    recorded.status().message());
      return false;
    }
    spdlog::warn("request {}: cannot record image yet ({}), retrying", task.request_id,
                 recorded.status().message());
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(5000));
  }
}

void WorkerPool::Run(const std::string& owner) {
  auto backoff = std::chrono::milliseconds(0);
  while (!stop_) {
    auto tasks = queue_.Take(owner, 1, std::chrono::seconds(5));
    if (!tasks.ok()) {
      // The store or broker is away (restarting, say): wait and try again, never give up.
      backoff =
          std::clamp(backoff * 2, std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
      spdlog::warn("queue: {} (retrying in {} ms)", tasks.status().message(), backoff.count());
      std::unique_lock<std::mutex> lock(mu_);
      all_done_.wait_for(lock, backoff, [this] { return stop_.load(); });
      continue;
    }
    backoff = std::chrono::milliseconds(0);
    {
      std::lock_guard<std::mutex> lock(held_mu_);
      for (const auto& task : *tasks) held_.insert(task.image_id);
    }
    for (const auto& task : *tasks) {
      const logging::ScopedRequestId log_scope(task.request_id);
      auto outcome = Process(task);
      if (cancel_ && !outcome.ok) {
        // Interrupted by shutdown, not failed: hand it back, due at once for the next run.
        outcome.error = "interrupted by shutdown";
        outcome.retry_at = RealClock().WallMillis();
      }
      if (outcome.ok) {
        spdlog::debug("request {} image {}#{}: {}", task.request_id, task.serial_no, task.index,
                      outcome.output_url);
      } else {
        spdlog::info("request {} image {}#{} attempt {}: {}{}", task.request_id, task.serial_no,
                     task.index, task.attempts, outcome.error,
                     outcome.retry_at ? " (will retry)" : "");
      }
      const bool recorded = Record(task, owner, outcome);
      {
        std::lock_guard<std::mutex> lock(held_mu_);
        held_.erase(held_.find(task.image_id));
      }
      if (recorded && options_.metrics != nullptr) {
        if (outcome.ok) {
          options_.metrics->ImageDone();
        } else if (outcome.retry_at) {
          options_.metrics->ImageRetried();
        } else {
          options_.metrics->ImageFailed();
        }
      }
      if (outcome.retry_at) queue_.Notify();
      if (on_recorded_) on_recorded_();
    }
  }
}

}  // namespace imgproc::pipeline
