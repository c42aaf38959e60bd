#include "config/config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <fstream>
#include <thread>

namespace imgproc::config {

void AddFlags(CLI::App& app, Config& c) {
  auto opt = [&app](const std::string& flag, auto& field, const std::string& env,
                    const std::string& help) {
    app.add_option(flag, field, help)->envname(env)->capture_default_str()->group("Settings");
  };
  opt("--port", c.port, "PORT", "HTTP port");
  opt("--bind", c.bind, "BIND", "address to listen on");
  opt("--data-dir", c.data_dir, "DATA_DIR", "folder for the SQLite database and local media");
  opt("--database-url", c.database_url, "DATABASE_URL",
      "store: sqlite://PATH (default sqlite://$DATA_DIR/imgproc.db) or "
      "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by API and worker processes)");
  opt("--redis-url", c.redis_url, "REDIS_URL",
      "optional broker, redis://[:PASSWORD@]HOST:PORT/N (without it, the store is the queue)");
  opt("--storage", c.storage, "STORAGE", "where compressed images go: local | imgbb");
  opt("--imgbb-api-key", c.imgbb_api_key, "IMGBB_API_KEY", "ImgBB API key (STORAGE=imgbb)");
  opt("--imgbb-upload-url", c.imgbb_upload_url, "IMGBB_UPLOAD_URL", "ImgBB upload endpoint");
  opt("--public-base-url", c.public_base_url, "PUBLIC_BASE_URL",
      "prefix of local media URLs (default http://$BIND:$PORT)");
  app.add_flag("--allow-private-urls", c.allow_private_urls,
               "allow image and webhook URLs that resolve to loopback, private, link-local or "
               "other non-public addresses (off by default: SSRF protection)")
      ->envname("ALLOW_PRIVATE_URLS")
      ->group("Settings");
  app.add_option("--fetch-allow-hosts", c.fetch_allow_hosts,
                 "only download images from these hosts (comma-separated; *.example.com "
                 "matches subdomains)")
      ->envname("FETCH_ALLOW_HOSTS")
      ->delimiter(',')
      ->group("Settings");
  app.add_option("--fetch-deny-hosts", c.fetch_deny_hosts,
                 "never download images from these hosts (wins over the allow list)")
      ->envname("FETCH_DENY_HOSTS")
      ->delimiter(',')
      ->group("Settings");
  app.add_option("--api-keys", c.api_keys,
                 "require Authorization: Bearer <key> for the API and media (comma-separated)")
      ->envname("API_KEYS")
      ->delimiter(',')
      ->group("Settings");
  opt("--api-keys-file", c.api_keys_file, "API_KEYS_FILE",
      "file of API keys, one per line ('#' comments), added to API_KEYS");
  opt("--webhook-secret", c.webhook_secret, "WEBHOOK_SECRET",
      "sign webhooks with this secret (Standard Webhooks headers)");

  opt("--workers", c.workers, "WORKERS", "images in flight at once (download/upload)");
  opt("--cpu-threads", c.cpu_threads, "CPU_THREADS", "images compressed at once (0 = cores)");
  opt("--pixel-budget", c.pixel_budget, "PIXEL_BUDGET",
      "pixels of the images between download and the end of compression (bounds memory)");
  opt("--download-budget-bytes", c.download_budget_bytes, "DOWNLOAD_BUDGET_BYTES",
      "bytes of download bodies in memory at once (the oldest download may exceed it by one)");
  opt("--http-threads", c.http_threads, "HTTP_THREADS",
      "threads serving HTTP connections, ready from the start");
  opt("--max-connections", c.max_connections, "MAX_CONNECTIONS",
      "HTTP connections served at once (a slow client holds one); threads are added on demand");
  opt("--max-connections-per-client", c.max_connections_per_client, "MAX_CONNECTIONS_PER_CLIENT",
      "HTTP connections one client address may hold at once (503 above; 0 = no limit)");
  opt("--max-header-bytes", c.max_header_bytes, "MAX_HEADER_BYTES",
      "largest HTTP request line + headers (431 above)");
  opt("--header-timeout-ms", c.header_timeout_ms, "HEADER_TIMEOUT_MS",
      "time a client has to send its request line and headers (408 after)");
  opt("--body-timeout-ms", c.body_timeout_ms, "BODY_TIMEOUT_MS",
      "time a client has to send a request body (408 after), extended by BODY_MIN_RATE");
  opt("--body-min-rate", c.body_min_rate, "BODY_MIN_RATE",
      "bytes per second of a request body that extend BODY_TIMEOUT_MS by a second each");
  opt("--max-csv-bytes", c.max_csv_bytes, "MAX_CSV_BYTES", "largest accepted CSV file");
  opt("--max-rows", c.max_rows, "MAX_ROWS", "most data rows in a CSV");
  opt("--max-urls-per-row", c.max_urls_per_row, "MAX_URLS_PER_ROW", "most URL entries per row");
  opt("--max-url-length", c.max_url_length, "MAX_URL_LENGTH", "longest URL entry");
  opt("--max-queued-images-per-client", c.max_queued_images_per_client,
      "MAX_QUEUED_IMAGES_PER_CLIENT",
      "unfinished images one client (API key, or address without keys) may have queued; an "
      "upload past it gets a 429 (0 = no limit)");
  opt("--max-download-bytes", c.max_download_bytes, "MAX_DOWNLOAD_BYTES",
      "largest image download (aborted mid-stream)");
  opt("--max-image-pixels", c.max_image_pixels, "MAX_IMAGE_PIXELS",
      "largest decoded image, width x height");
  opt("--max-animation-frames", c.max_animation_frames, "MAX_ANIMATION_FRAMES",
      "most frames in an animated image (only the first is used)");
  opt("--jpeg-fast-path", c.jpeg_fast_path, "JPEG_FAST_PATH",
      "re-quantise 4:2:0 JPEGs that need no pixel work in the DCT domain (true | false)");
  opt("--fetch-connect-timeout-ms", c.fetch_connect_timeout_ms, "FETCH_CONNECT_TIMEOUT_MS",
      "image download connect timeout");
  opt("--fetch-timeout-ms", c.fetch_timeout_ms, "FETCH_TIMEOUT_MS", "image download total timeout");
  opt("--max-redirects", c.max_redirects, "MAX_REDIRECTS", "redirects followed per download");
  opt("--max-attempts", c.max_attempts, "MAX_ATTEMPTS",
      "attempts per image before a transient failure becomes an error");
  opt("--retry-base-ms", c.retry_base_ms, "RETRY_BASE_MS",
      "first retry delay (doubles per attempt, with jitter)");
  opt("--webhook-retry-schedule", c.webhook_retry_schedule, "WEBHOOK_RETRY_SCHEDULE",
      "delays between webhook attempts (ms, s, m, h); then it has failed");
  opt("--lease-ms", c.lease_ms, "LEASE_MS",
      "an image whose worker stops answering for this long is taken over by another");
  opt("--queue-sweep-ms", c.queue_sweep_ms, "QUEUE_SWEEP_MS",
      "how often the store is checked for due work (images to hand to Redis, or polled)");
  opt("--shutdown-grace-ms", c.shutdown_grace_ms, "SHUTDOWN_GRACE_MS",
      "on SIGTERM, how long images in flight may finish before they are handed back");
  opt("--log-level", c.log_level, "LOG_LEVEL", "trace | debug | info | warn | error");
  opt("--log-format", c.log_format, "LOG_FORMAT",
      "text | json (JSON lines; a line about one request carries its request_id)");
}

Status Finalize(Config& c) {
  if (c.port < 0 || c.port > 65535) return InvalidArgument("PORT must be 0..65535");
  for (auto* hosts : {&c.fetch_allow_hosts, &c.fetch_deny_hosts}) {
    for (auto& h : *hosts) {
      std::erase_if(h, [](unsigned char ch) { return std::isspace(ch); });
      std::transform(h.begin(), h.end(), h.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    }
    std::erase(*hosts, std::string());
  }
  if (!c.api_keys_file.empty()) {
    std::ifstream in(c.api_keys_file);
    if (!in) return InvalidArgument("API_KEYS_FILE: cannot read " + c.api_keys_file);
    for (std::string line; std::getline(in, line);)
      c.api_keys.push_back(line.substr(0, line.find('#')));
  }
  for (auto& key : c.api_keys) {
    std::erase_if(key, [](unsigned char ch) { return std::isspace(ch); });
  }
  std::erase(c.api_keys, std::string());
  if (c.database_url.empty()) c.database_url = "sqlite://" + c.data_dir + "/imgproc.db";
  if (c.public_base_url.empty()) {
    c.public_base_url = "http://" + c.bind + ":" + std::to_string(c.port);
  }
  if (c.cpu_threads <= 0)
    c.cpu_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (c.workers < 1 || c.http_threads < 1 || c.max_connections < c.http_threads)
    return InvalidArgument(
        "WORKERS and HTTP_THREADS must be >= 1, MAX_CONNECTIONS >= HTTP_THREADS");
  if (c.max_attempts < 1) return InvalidArgument("MAX_ATTEMPTS must be >= 1");
  if (c.storage != "local" && c.storage != "imgbb") {
    return InvalidArgument("STORAGE must be 'local' or 'imgbb'");
  }
  if (c.log_format != "text" && c.log_format != "json") {
    return InvalidArgument("LOG_FORMAT must be 'text' or 'json'");
  }
  if (c.max_animation_frames < 1) return InvalidArgument("MAX_ANIMATION_FRAMES must be >= 1");
  if (c.pixel_budget < 1) return InvalidArgument("PIXEL_BUDGET must be >= 1");
  if (c.download_budget_bytes < 1024 * 1024) {
    return InvalidArgument("DOWNLOAD_BUDGET_BYTES must be >= 1048576");
  }
  if (c.max_header_bytes < 1024 || c.max_header_bytes > (1u << 20) || c.header_timeout_ms < 100) {
    return InvalidArgument("MAX_HEADER_BYTES must be 1024..1048576 and HEADER_TIMEOUT_MS >= 100");
  }
  if (c.max_queued_images_per_client < 0) {
    return InvalidArgument("MAX_QUEUED_IMAGES_PER_CLIENT must be >= 0");
  }
  if (c.max_connections_per_client < 0 || c.body_timeout_ms < 100 || c.body_min_rate < 1) {
    return InvalidArgument(
        "MAX_CONNECTIONS_PER_CLIENT must be >= 0, BODY_TIMEOUT_MS >= 100 and BODY_MIN_RATE >= 1");
  }
  if (c.lease_ms < 100 || c.queue_sweep_ms < 10) {
    return InvalidArgument("LEASE_MS must be >= 100 and QUEUE_SWEEP_MS >= 10");
  }
  return Status::Ok();
}

}  // namespace imgproc::config
