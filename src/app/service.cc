#include "app/service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "common/clock.h"
#include "queue/embedded_queue.h"
#include "queue/redis_queue.h"
#include "storage/local_storage.h"

namespace imgproc::app {
namespace {

// A connection URL without its password, for logs.
std::string Redacted(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t at = url.rfind('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  const size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace

Result<std::unique_ptr<Service>> Service::Create(const config::Config& config, Role role) {
  if (Status s = pipeline::InitCodec(); !s.ok()) return s;
  net::InitHttpClient();

  std::unique_ptr<Service> svc(new Service());
  svc->config_ = config;
  svc->role_ = role;
  const bool with_workers = role != Role::kApi;
  const bool shared_store = config.database_url.rfind("sqlite://", 0) != 0;
  const std::filesystem::path media_dir = config.storage.media_dir;

  auto store = store::OpenStore(config.database_url);
  if (!store.ok()) return store.status();
  svc->store_ = std::move(*store);
  svc->metrics_ = std::make_unique<metrics::ServiceMetrics>();
  svc->metrics_->SetQueueDepthSource([store = svc->store_.get()]() -> std::optional<double> {
    auto depth = store->CountUnfinishedImages();
    if (!depth.ok()) return std::nullopt;
    return static_cast<double>(*depth);
  });
  // SQLite means one process owns the database: whatever a previous run had leased died with it.
  // A shared store's leases belong to live processes, or expire.
  if (!shared_store) {
    auto released = svc->store_->ReleaseLeases();
    if (!released.ok()) {
      return released.status();
    }
    if (*released > 0) {
      spdlog::info("resuming {} image(s) left unfinished by the previous run", *released);
    }
  }

  auto storage = storage::MakeStorage(config.storage);
  if (!storage.ok()) return storage.status();
  svc->storage_ = std::move(*storage);

  // Each module's options come whole from the settings; the service adds what runs.
  pipeline::PipelineOptions pipe = config.pipeline;
  pipe.metrics = svc->metrics_.get();
  if (config.image_cache) {
    pipe.cache = svc->store_.get();
    // The cache's rows older than its maximum age are of no more use (their outputs are made
    // anew): dropped at each start, so the cache holds at most one max age of imports.
    auto purged =
        svc->store_->PurgeCache(RealClock().WallMillis() - config.pipeline.cache_max_age_ms());
    if (!purged.ok()) return purged.status();
    if (*purged > 0)
      spdlog::info("image cache: dropped {} entries older than its max age", *purged);
  }
  queue::RedisQueue* broker = nullptr;
  if (config.queue.url.empty()) {
    // Work stored by another process is found by polling the shared store.
    svc->queue_ = std::make_unique<queue::EmbeddedQueue>(
        *svc->store_, pipe.lease, shared_store ? config.queue.sweep : std::chrono::hours(1));
  } else {
    queue::RedisQueueOptions redis = config.queue;
    redis.consumer = std::to_string(getpid()) + "-" + std::to_string(std::random_device{}());
    auto queue = queue::RedisQueue::Open(*svc->store_, redis);
    if (!queue.ok()) return queue.status();
    broker = queue->get();
    svc->queue_ = std::move(*queue);
  }

  webhook::SenderOptions hooks = config.webhook;
  hooks.metrics = svc->metrics_.get();
  svc->webhooks_ = std::make_unique<webhook::Sender>(*svc->store_, *svc->store_, hooks);

  if (with_workers) {
    svc->workers_ = std::make_unique<pipeline::WorkerPool>(
        *svc->store_, *svc->queue_, *svc->storage_, pipe,
        [sender = svc->webhooks_.get()] { sender->Notify(); });
  }

  api::ApiOptions api_options = config.api;
  if (config.storage.kind == "local") {
    api_options.media = [media_dir](std::string_view relative) {
      return storage::ResolveMediaPath(media_dir, relative);
    };
  }
  api_options.metrics = svc->metrics_.get();
  if (broker != nullptr) api_options.broker_ready = [broker] { return broker->Ping(); };
  if (config.storage.kind == "s3") {
    api_options.storage_ready = [storage = svc->storage_.get()] { return storage->Ready(); };
  }
  svc->api_ = std::make_unique<api::Api>(*svc->store_, *svc->store_, api_options,
                                         [queue = svc->queue_.get()] { queue->Notify(); });

  if (role == Role::kWorkers) return svc;
  svc->server_ = std::make_unique<api::HttpServer>(*svc->api_, config.server);
  return svc;
}

Service::~Service() { Stop(); }

Status Service::Run() {
  if (server_) {
    if (Status s = server_->Bind(); !s.ok()) return s;
  }
  webhooks_->Start();
  if (workers_) workers_->Start();
  const std::string broker = config_.queue.url.empty() ? "the store" : "redis";
  if (server_) {
    spdlog::info("imgproc listening on http://{}:{} (store {}, queue {}, storage {}, {} workers)",
                 config_.server.bind, config_.server.port, Redacted(config_.database_url), broker,
                 config_.storage.kind, workers_ ? config_.pipeline.workers : 0);
    server_->Serve();
  } else {
    spdlog::info("imgproc worker running (store {}, queue {}, storage {}, {} workers)",
                 Redacted(config_.database_url), broker, config_.storage.kind,
                 config_.pipeline.workers);
    MutexLock lock(&mu_);
    while (!stopped_) stopped_cv_.Wait(&mu_);
  }
  return Status::Ok();
}

void Service::Stop() {
  {
    MutexLock lock(&mu_);
    stopped_ = true;
  }
  stopped_cv_.SignalAll();
  if (server_) server_->Stop();
  if (workers_) workers_->Stop();
  if (webhooks_) webhooks_->Stop();
}

}  // namespace imgproc::app
