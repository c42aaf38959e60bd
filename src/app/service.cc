#include "app/service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <random>

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

pipeline::PipelineOptions PipelineOptionsFrom(const config::Config& config) {
  pipeline::PipelineOptions pipe;
  pipe.fetch.allow_private = config.allow_private_urls;
  pipe.fetch.connect_timeout = std::chrono::milliseconds(config.fetch_connect_timeout_ms);
  pipe.fetch.total_timeout = std::chrono::milliseconds(config.fetch_timeout_ms);
  pipe.fetch.max_redirects = config.max_redirects;
  pipe.fetch.max_body_bytes = config.max_download_bytes;
  pipe.fetch.allow_hosts = config.fetch_allow_hosts;
  pipe.fetch.deny_hosts = config.fetch_deny_hosts;
  pipe.codec.max_pixels = config.max_image_pixels;
  pipe.codec.max_frames = config.max_animation_frames;
  pipe.workers = config.workers;
  pipe.cpu_threads = config.cpu_threads;
  pipe.pixel_budget = config.pixel_budget;
  pipe.download_budget_bytes = config.download_budget_bytes;
  pipe.codec.jpeg_fast_path = config.jpeg_fast_path;
  pipe.max_attempts = config.max_attempts;
  pipe.retry_base = std::chrono::milliseconds(config.retry_base_ms);
  pipe.lease = std::chrono::milliseconds(config.lease_ms);
  return pipe;
}

Result<std::unique_ptr<Service>> Service::Create(const config::Config& config, Role role) {
  if (Status s = pipeline::InitCodec(); !s.ok()) return s;
  net::InitHttpClient();

  std::unique_ptr<Service> svc(new Service());
  svc->config_ = config;
  svc->role_ = role;
  const bool with_workers = role != Role::kApi;
  const bool shared_store = config.database_url.rfind("sqlite://", 0) != 0;
  const auto media_dir = std::filesystem::path(config.data_dir) / "media";

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
    if (auto released = svc->store_->ReleaseLeases(); !released.ok()) {
      return released.status();
    } else if (*released > 0) {
      spdlog::info("resuming {} image(s) left unfinished by the previous run", *released);
    }
  }

  auto storage = storage::MakeStorage({config.storage, media_dir.string(), config.public_base_url,
                                       config.imgbb_api_key, config.imgbb_upload_url});
  if (!storage.ok()) return storage.status();
  svc->storage_ = std::move(*storage);

  pipeline::PipelineOptions pipe = PipelineOptionsFrom(config);
  pipe.metrics = svc->metrics_.get();
  queue::RedisQueue* broker = nullptr;
  if (config.redis_url.empty()) {
    // Work stored by another process is found by polling the shared store.
    svc->queue_ = std::make_unique<queue::EmbeddedQueue>(
        *svc->store_, pipe.lease,
        shared_store ? std::chrono::milliseconds(config.queue_sweep_ms) : std::chrono::hours(1));
  } else {
    queue::RedisQueueOptions redis;
    redis.url = config.redis_url;
    redis.lease = pipe.lease;
    redis.sweep = std::chrono::milliseconds(config.queue_sweep_ms);
    redis.consumer = std::to_string(getpid()) + "-" + std::to_string(std::random_device{}());
    auto queue = queue::RedisQueue::Open(*svc->store_, redis);
    if (!queue.ok()) return queue.status();
    broker = queue->get();
    svc->queue_ = std::move(*queue);
  }

  webhook::SenderOptions hooks;
  hooks.secret = config.webhook_secret;
  auto schedule = webhook::ParseRetrySchedule(config.webhook_retry_schedule);
  if (!schedule.ok()) return schedule.status();
  hooks.schedule = std::move(*schedule);
  hooks.fetch.allow_private = config.allow_private_urls;
  hooks.fetch.total_timeout = std::chrono::seconds(5);
  hooks.fetch.connect_timeout = std::chrono::seconds(5);
  hooks.fetch.max_body_bytes = 64 * 1024;
  hooks.fetch.max_redirects = 0;
  hooks.metrics = svc->metrics_.get();
  svc->webhooks_ = std::make_unique<webhook::Sender>(*svc->store_, *svc->store_, hooks);

  if (with_workers) {
    svc->workers_ = std::make_unique<pipeline::WorkerPool>(
        *svc->store_, *svc->queue_, *svc->storage_, pipe,
        [sender = svc->webhooks_.get()] { sender->Notify(); });
  }

  api::ApiOptions api_options;
  api_options.csv_limits.max_bytes = config.max_csv_bytes;
  api_options.csv_limits.max_rows = static_cast<size_t>(config.max_rows);
  api_options.csv_limits.max_urls_per_row = static_cast<size_t>(config.max_urls_per_row);
  api_options.csv_limits.max_url_length = static_cast<size_t>(config.max_url_length);
  api_options.max_client_images = config.max_queued_images_per_client;
  if (config.storage == "local") {
    api_options.media = [media_dir](std::string_view relative) {
      return storage::ResolveMediaPath(media_dir, relative);
    };
  }
  for (const auto& key : config.api_keys) api_options.api_key_digests.insert(api::KeyDigest(key));
  api_options.metrics = svc->metrics_.get();
  if (broker != nullptr) api_options.broker_ready = [broker] { return broker->Ping(); };
  svc->api_ = std::make_unique<api::Api>(*svc->store_, *svc->store_, api_options,
                                         [queue = svc->queue_.get()] { queue->Notify(); });

  if (role == Role::kWorkers) return svc;
  api::ServerOptions server;
  server.bind = config.bind;
  server.port = config.port;
  server.threads = config.http_threads;
  server.max_connections = config.max_connections;
  server.max_connections_per_client = config.max_connections_per_client;
  server.limits.max_header_bytes = config.max_header_bytes;
  server.limits.header_timeout = std::chrono::milliseconds(config.header_timeout_ms);
  server.limits.body_timeout = std::chrono::milliseconds(config.body_timeout_ms);
  server.limits.body_min_rate = static_cast<uint64_t>(config.body_min_rate);
  // Room for the multipart framing and the webhook_url field around the largest CSV; a larger
  // CSV part inside a body that fits still gets the API's own 413.
  server.limits.max_body_bytes = config.max_csv_bytes + 64 * 1024;
  svc->server_ = std::make_unique<api::HttpServer>(*svc->api_, server);
  return svc;
}

Service::~Service() { Stop(); }

Status Service::Run() {
  if (server_) {
    if (Status s = server_->Bind(); !s.ok()) return s;
  }
  webhooks_->Start();
  if (workers_) workers_->Start();
  const std::string broker = config_.redis_url.empty() ? "the store" : "redis";
  if (server_) {
    spdlog::info("imgproc listening on http://{}:{} (store {}, queue {}, storage {}, {} workers)",
                 config_.bind, config_.port, Redacted(config_.database_url), broker,
                 config_.storage, workers_ ? config_.workers : 0);
    server_->Serve();
  } else {
    spdlog::info("imgproc worker running (store {}, queue {}, storage {}, {} workers)",
                 Redacted(config_.database_url), broker, config_.storage, config_.workers);
    std::unique_lock<std::mutex> lock(mu_);
    stopped_cv_.wait(lock, [this] { return stopped_; });
  }
  return Status::Ok();
}

void Service::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  stopped_cv_.notify_all();
  if (server_) server_->Stop();
  if (workers_) workers_->Stop(std::chrono::milliseconds(config_.shutdown_grace_ms));
  if (webhooks_) webhooks_->Stop();
}

}  // namespace imgproc::app
