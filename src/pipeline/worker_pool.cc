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

// Seconds since `start`, observed into `histogram` (when there are metrics).
void ObserveSince(metrics::Histogram* histogram, const Clock& clock, Clock::TimePoint start) {
  if (histogram == nullptr) return;
  histogram->Observe(std::chrono::duration<double>(clock.Now() - start).count());
}

// The value of a response header (lower-case name), if the response has it.
std::optional<std::string> Header(const net::HttpResponse& response, const std::string& name) {
  auto it = response.headers.find(name);
  if (it == response.headers.end()) return std::nullopt;
  return it->second;
}

request::ImageOutcome Reused(std::string output_url, int64_t input_bytes, int64_t output_bytes,
                             std::vector<request::VariantOutput> variants) {
  request::ImageOutcome out;
  out.ok = true;
  out.reused = true;
  out.output_url = std::move(output_url);
  out.input_bytes = input_bytes;
  out.output_bytes = output_bytes;
  out.variants = std::move(variants);
  return out;
}

// Before compressing and before storing (the download starts as the image is taken): an image
// whose request was cancelled (or whose lease another worker took over) stops there; its outcome
// would be ignored anyway.
request::ImageOutcome Lost() {
  request::ImageOutcome out;
  out.error = "stopped: no longer leased to this worker (request cancelled, or taken over)";
  return out;
}

// The name of an output in the storage: by content with the image cache
// (<sha256>_<settings token>.<ext>, in objects/), so the same bytes made the same way are one
// object whatever URL, request or plan sent them; else by slot (<serial>_<index>[_<variant>].<ext>,
// in the request's folder).
std::string OutputName(const store::ImageTask& task, const std::string& sha256,
                       const request::OutputSettings& settings, const std::string& variant) {
  const std::string extension = std::string(".") + request::FileExtension(settings.format);
  if (!sha256.empty()) return sha256 + "_" + request::Token(settings) + extension;
  std::string name = std::to_string(task.serial_no) + "_" + std::to_string(task.index);
  if (!variant.empty()) name += "_" + variant;
  return name + extension;
}

}  // namespace

std::chrono::milliseconds RetryDelay(int attempt, std::chrono::milliseconds base, double jitter,
                                     std::chrono::milliseconds at_least) {
  const int64_t doubled = std::max<int64_t>(base.count(), 0) << std::clamp(attempt - 1, 0, 16);
  const auto spread =
      static_cast<int64_t>(static_cast<double>(doubled) / 2 * std::clamp(jitter, 0.0, 1.0));
  return std::chrono::milliseconds(std::max<int64_t>(at_least.count(), doubled + spread));
}

request::ImageOutcome WorkerPool::Failure(const store::ImageTask& task, bool transient,
                                          std::string error, std::chrono::milliseconds at_least) {
  request::ImageOutcome out;
  out.error = std::move(error);
  if (transient && task.attempts < options_.max_attempts) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const double jitter = std::uniform_real_distribution<double>(0, 1)(rng);
    out.retry_at = clock_.WallMillis() +
                   RetryDelay(task.attempts, options_.retry_base, jitter, at_least).count();
  }
  return out;
}

bool WorkerPool::LeaseLost(const store::ImageTask& task, const std::string& owner) {
  MutexLock lock(&lease_check_mu_);
  if (!lease_checked_at_ || clock_.Now() - *lease_checked_at_ >= kLeaseCheckAge) {
    std::vector<std::pair<int64_t, std::string>> leases;
    {
      MutexLock held_lock(&held_mu_);
      leases.assign(held_.begin(), held_.end());
    }
    // A store error is not a verdict: go on, and let the record of the outcome decide.
    auto held = store_.HoldLeases(leases);
    if (!held.ok()) return false;
    leases_lost_.clear();
    for (size_t i = 0; i < leases.size(); ++i) {
      if (!(*held)[i]) leases_lost_.insert(leases[i]);
    }
    lease_checked_at_ = clock_.Now();
  }
  return leases_lost_.contains({task.image_id, owner});
}

request::ImageOutcome WorkerPool::Process(const store::ImageTask& task, const std::string& owner) {
  metrics::ServiceMetrics* m = options_.metrics;
  const std::optional<request::OutputPlan> plan = request::DecodePlan(task.outputs);
  if (!plan) return Failure(task, false, "unreadable output settings: " + task.outputs);
  const std::string key = request::CacheKey(*plan);
  // What the image cache has for this URL: asked for conditionally, a 304 reuses its output.
  store::ImageCache* const cache = options_.cache;
  const request::Millis stored_since =
      request::ReusableSince(clock_.WallMillis(), options_.cache_max_age_ms(), task.refresh_since);
  std::optional<request::CachedSource> known;
  if (cache != nullptr && !task.refresh_since) {
    auto found = cache->FindSource(task.url, key);
    if (found.ok() && *found && (*found)->known_since >= stored_since &&
        storage_.Holds((*found)->output_url)) {
      known = std::move(**found);
    }
  }
  net::FetchOptions fetch = options_.fetch;
  fetch.party = task.request_id;  // its host's connections are shared between requests
  if (known) fetch.headers = request::ConditionalHeaders(*known);

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
  auto start = clock_.Now();
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
  auto response = http_.Get(task.url, fetch, &gate);
  if (!refusal.ok()) return Failure(task, false, refusal.message());
  if (abandoned) {
    budget_.Resize(reserved, head_pixels, Clock::TimePoint::max());
    response = http_.Get(task.url, fetch, nullptr);
  }
  ObserveSince(m ? &m->download_seconds() : nullptr, clock_, start);
  if (!response.ok()) {
    return Failure(task, response.status().transient(),
                   "download failed: " + response.status().message());
  }
  const long code = response->status;
  if (known && code == 304) {  // not modified: the output stored for it stands
    // A 304 may carry fresh validators (RFC 9110 15.4.5); the ones it leaves out stand. Written
    // only when they changed: the entry's age is that of its output anyway (known_since), and a
    // write per 304 was 7 % of a re-import's CPU (perf, 400 images).
    auto etag = Header(*response, "etag");
    auto last_modified = Header(*response, "last-modified");
    if (!etag) etag = known->etag;
    if (!last_modified) last_modified = known->last_modified;
    if (etag != known->etag || last_modified != known->last_modified) {
      Status remembered = cache->RememberSource(task.url, key, known->sha256, etag, last_modified,
                                                known->input_bytes);
      if (!remembered.ok()) spdlog::warn("image cache: {}", remembered.message());
    }
    if (m) m->ImageReused(/*not_modified=*/true);
    return Reused(known->output_url, known->input_bytes, known->output_bytes,
                  std::move(known->variants));
  }
  if (code < 200 || code >= 300) {
    const bool transient = code == 408 || code == 429 || code >= 500;
    std::chrono::milliseconds retry_after{};
    if (auto it = response->headers.find("retry-after"); it != response->headers.end()) {
      retry_after = RetryAfter(it->second);
    }
    return Failure(task, transient, "download failed: HTTP " + std::to_string(code), retry_after);
  }
  if (response->body.empty()) return Failure(task, false, "download failed: empty body");
  const auto input_bytes = static_cast<int64_t>(response->body.size());
  if (m) m->BytesIn(response->body.size());

  // The image cache's key for these bytes: an output stored for them before is reused, and one
  // made now is stored under it, once for every URL that sends them. Not for a response that
  // forbids keeping it (Cache-Control: no-store): that one is made and stored as without a cache.
  std::string sha256;
  // A claim to store the content, held until its output is recorded: any way out before that
  // drops it, so a worker waiting with the same bytes takes over at once instead of waiting for
  // the claim to run out.
  struct HeldClaim {
    store::ImageCache* cache = nullptr;  // set while held
    const std::string& sha256;
    const std::string& variant;
    const std::string& owner;
    ~HeldClaim() {
      if (cache != nullptr) (void)cache->ReleaseContent(sha256, variant, owner);
    }
  } claim{nullptr, sha256, key, owner};
  if (cache != nullptr && request::MayCache(Header(*response, "cache-control").value_or(""))) {
    sha256 = request::Sha256Hex(response->body);
    Status remembered = cache->RememberSource(task.url, key, sha256, Header(*response, "etag"),
                                              Header(*response, "last-modified"), input_bytes);
    if (!remembered.ok()) spdlog::warn("image cache: {}", remembered.message());
    auto content = ClaimContent(sha256, key, owner, stored_since);
    if (!content.ok()) return Failure(task, true, content.status().message());
    if (content->verdict == request::ContentVerdict::kReuse) {
      if (m) m->ImageReused(/*not_modified=*/false);
      return Reused(content->output_url, input_bytes, content->output_bytes,
                    std::move(content->variants));
    }
    claim.cache = cache;
  }

  if (LeaseLost(task, owner)) return Lost();
  if (head_pixels == 0) {
    reserved = budget_.Correct(reserved, ReadHeader(response->body, options_.codec).pixels);
  }
  request::ImageOutcome out = MakeOutputs(task, owner, *plan, *response, sha256, reserved);
  if (out.ok && claim.cache != nullptr) {
    Status stored =
        cache->StoreContent(sha256, key, owner, out.output_url, out.output_bytes, out.variants);
    if (stored.ok()) {
      claim.cache = nullptr;  // recorded, and the claim with it
    } else {
      spdlog::warn("image cache: {}", stored.message());
    }
  }
  return out;
}

request::ImageOutcome WorkerPool::MakeOutputs(const store::ImageTask& task,
                                              const std::string& owner,
                                              const request::OutputPlan& plan,
                                              net::HttpResponse& response,
                                              const std::string& sha256, uint64_t& reserved) {
  metrics::ServiceMetrics* m = options_.metrics;
  const auto input_bytes = static_cast<int64_t>(response.body.size());
  // One decode per output: each variant's own shrink-on-load decodes far fewer pixels than one
  // full decode shared by all would (a 2 MP JPEG to 400 px decodes at 1/4 scale).
  std::vector<Result<EncodedImage>> encoded;
  cpu_.Run([&] {
    const auto start = clock_.Now();
    encoded.push_back(Encode(response.body, plan.main, options_.codec));
    for (const auto& v : plan.variants) {
      if (!encoded.front().ok()) break;
      encoded.push_back(Encode(response.body, v.settings, options_.codec));
    }
    ObserveSince(m ? &m->compress_seconds() : nullptr, clock_, start);
  });
  response.body = std::string();  // free the download before the upload
  response.body_share.Release();
  budget_.Release(std::exchange(reserved, 0));
  for (const auto& e : encoded) {
    if (!e.ok()) return Failure(task, false, e.status().message());
  }
  if (LeaseLost(task, owner)) return Lost();

  const std::string folder = sha256.empty() ? task.request_id : "objects";
  request::ImageOutcome out;
  for (size_t i = 0; i < encoded.size(); ++i) {
    const bool main = i == 0;
    const request::OutputSettings& settings = main ? plan.main : plan.variants[i - 1].settings;
    const std::string& variant = main ? std::string() : plan.variants[i - 1].name;
    const EncodedImage& image = *encoded[i];
    const auto start = clock_.Now();
    auto url = storage_.Put(folder, OutputName(task, sha256, settings, variant), image.bytes);
    ObserveSince(m ? &m->upload_seconds() : nullptr, clock_, start);
    if (!url.ok()) {
      return Failure(task, url.status().transient(), url.status().message(),
                     url.status().retry_after());
    }
    if (m) m->BytesOut(image.bytes.size());
    const auto bytes = static_cast<int64_t>(image.bytes.size());
    if (main) {
      out.output_url = std::move(*url);
      out.output_bytes = bytes;
    } else {
      out.variants.push_back({variant, std::move(*url), bytes, image.width, image.height});
    }
  }
  out.ok = true;
  out.input_bytes = input_bytes;
  return out;
}

Result<store::ContentClaim> WorkerPool::ClaimContent(const std::string& sha256,
                                                     const std::string& key,
                                                     const std::string& owner,
                                                     request::Millis stored_since) {
  // Another worker storing the same content is waited for (its compression and upload: well
  // under half a lease), so the two never store two objects; past that, the image is tried again.
  const auto wait_until = clock_.Now() + options_.lease / 2;
  bool forgotten = false;
  while (true) {
    auto claim =
        options_.cache->ClaimContent(sha256, key, owner, stored_since, options_.lease.count());
    if (!claim.ok()) return claim.status();
    switch (claim->verdict) {
      case request::ContentVerdict::kStore:
        return claim;
      case request::ContentVerdict::kReuse:
        if (storage_.Holds(claim->output_url)) return claim;
        // Its output is gone from the storage (deleted by hand, say): forget it and store anew.
        if (forgotten) return Internal("the image cache names an output the storage lacks");
        if (Status s = options_.cache->ForgetContent(sha256, key); !s.ok()) return s;
        forgotten = true;
        break;
      case request::ContentVerdict::kWait:
        // (Not cut short by a shutdown: the worker storing it finishes within the grace too.)
        if (clock_.Now() >= wait_until) {
          return Transient("waiting for the same image, being stored by another worker");
        }
        clock_.SleepFor(std::chrono::milliseconds(50));
        break;
    }
  }
}

WorkerPool::WorkerPool(store::ImageLeases& store, queue::WorkQueue& queue,
                       storage::ImageStorage& storage, PipelineOptions options,
                       std::function<void()> on_webhook_due, Clock& clock, net::HttpClient& http)
    : store_(store),
      queue_(queue),
      storage_(storage),
      options_(std::move(options)),
      on_webhook_due_(std::move(on_webhook_due)),
      clock_(clock),
      http_(http),
      cpu_(std::max(1, options_.cpu_threads)),
      budget_(options_.pixel_budget, clock),
      body_budget_(options_.download_budget_bytes),
      records_([this](const std::vector<store::ImageResult>& results) {
        return store_.RecordImages(results);
      }) {
  options_.fetch.cancel = &cancel_;
  options_.fetch.body_budget = &body_budget_;
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Start() {
  // Lease owners are unique per process and thread, so a result is only taken from the worker
  // that holds the image.
  process_ = std::to_string(getpid()) + "-" + std::to_string(std::random_device{}());
  {
    MutexLock lock(&mu_);
    running_ = options_.workers;
  }
  heartbeat_ = std::thread([this] {
    NameThisThread("imgproc-lease");
    Heartbeat();
  });
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, owner = process_ + "/" + std::to_string(i)] {
      NameThisThread("imgproc-io");
      Run(owner);
      MutexLock lock(&mu_);
      if (--running_ == 0) changed_.SignalAll();
    });
  }
}

bool WorkerPool::stopping() {
  MutexLock lock(&mu_);
  return stop_;
}

void WorkerPool::Stop(std::chrono::milliseconds grace) {
  queue_.Shutdown();
  {
    // Set under the mutex the workers wait with, so that none misses it between its check and
    // its wait (a lost wake-up would hold the shutdown up for a whole backoff).
    MutexLock lock(&mu_);
    stop_ = true;
    changed_.SignalAll();  // wakes workers backing off
    const auto deadline = clock_.Now() + grace;
    while (running_ > 0) {
      if (!clock_.WaitUntil(&changed_, &mu_, deadline) && running_ > 0 &&
          clock_.Now() >= deadline) {
        spdlog::warn(
            "shutdown: cancelling {} image(s) still downloading; they go back to the queue",
            running_);
        cancel_ = true;
        break;
      }
    }
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  changed_.SignalAll();  // ends the heartbeat
  if (heartbeat_.joinable()) heartbeat_.join();
}

void WorkerPool::Heartbeat() {
  const auto period = std::max(options_.lease / 3, std::chrono::milliseconds(10));
  MutexLock lock(&mu_);
  auto next = clock_.Now() + period;
  while (running_ > 0) {
    if (clock_.WaitUntil(&changed_, &mu_, next) || clock_.Now() < next) continue;
    next = clock_.Now() + period;
    lock.Unlock();
    std::vector<int64_t> held;
    {
      MutexLock held_lock(&held_mu_);
      for (const auto& lease : held_) held.push_back(lease.first);
    }
    if (!held.empty()) {
      auto extended = store_.ExtendLeases(process_ + "/", held, options_.lease.count());
      if (!extended.ok()) spdlog::warn("cannot extend leases: {}", extended.status().message());
    }
    lock.Lock();
  }
}

store::Recorded WorkerPool::Record(const store::ImageTask& task, const std::string& owner,
                                   const request::ImageOutcome& outcome) {
  const auto give_up = clock_.Now() + options_.lease;
  auto delay = std::chrono::milliseconds(100);
  const store::ImageResult result{task.image_id, owner, outcome};
  while (true) {
    auto recorded = records_.Call(result);
    if (recorded.ok()) {
      if (!recorded->taken) {
        spdlog::info("request {} image {}#{}: lease lost, another worker's result stands",
                     task.request_id, task.serial_no, task.index);
      }
      queue_.Done(task);
      return *recorded;
    }
    if (!recorded.status().transient() || clock_.Now() + delay > give_up) {
      // The lease runs out and the image is done again by whoever takes it.
      spdlog::error("request {}: cannot record image: {}", task.request_id,
                    recorded.status().message());
      return {};
    }
    spdlog::warn("request {}: cannot record image yet ({}), retrying", task.request_id,
                 recorded.status().message());
    clock_.SleepFor(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(5000));
  }
}

void WorkerPool::Run(const std::string& owner) {
  auto backoff = std::chrono::milliseconds(0);
  while (!stopping()) {
    auto tasks = queue_.Take(owner, 1, std::chrono::seconds(5));
    if (!tasks.ok()) {
      // The store or broker is away (restarting, say): wait and try again, never give up.
      backoff =
          std::clamp(backoff * 2, std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
      spdlog::warn("queue: {} (retrying in {} ms)", tasks.status().message(), backoff.count());
      MutexLock lock(&mu_);
      const auto until = clock_.Now() + backoff;
      while (!stop_ && clock_.Now() < until) (void)clock_.WaitUntil(&changed_, &mu_, until);
      continue;
    }
    backoff = std::chrono::milliseconds(0);
    {
      MutexLock lock(&held_mu_);
      for (const auto& task : *tasks) held_.insert({task.image_id, owner});
    }
    for (const auto& task : *tasks) {
      const logging::ScopedRequestId log_scope(task.request_id);
      auto outcome = Process(task, owner);
      if (cancel_ && !outcome.ok) {
        // Interrupted by shutdown, not failed: hand it back, due at once for the next run.
        outcome.error = "interrupted by shutdown";
        outcome.retry_at = clock_.WallMillis();
      }
      if (outcome.ok) {
        spdlog::debug("request {} image {}#{}: {}", task.request_id, task.serial_no, task.index,
                      outcome.output_url);
      } else {
        spdlog::info("request {} image {}#{} attempt {}: {}{}", task.request_id, task.serial_no,
                     task.index, task.attempts, outcome.error,
                     outcome.retry_at ? " (will retry)" : "");
      }
      const store::Recorded recorded = Record(task, owner, outcome);
      {
        MutexLock lock(&held_mu_);
        held_.erase({task.image_id, owner});
      }
      if (recorded.taken && options_.metrics != nullptr) {
        if (outcome.ok) {
          options_.metrics->ImageDone();
        } else if (outcome.retry_at) {
          options_.metrics->ImageRetried();
        } else {
          options_.metrics->ImageFailed();
        }
      }
      if (outcome.retry_at) queue_.Notify();
      if (recorded.webhook_due && on_webhook_due_) on_webhook_due_();
    }
  }
}

}  // namespace imgproc::pipeline
