// The whole configuration (CONTRACT.md §6): every setting is an environment variable and a
// command-line flag of the same meaning; a flag wins over the environment.
#ifndef IMGPROC_CONFIG_CONFIG_H_
#define IMGPROC_CONFIG_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace CLI {
class App;
}

namespace imgproc::config {

struct Config {
  // Contract settings.
  int port = 8000;
  std::string bind = "127.0.0.1";
  std::string data_dir = "./data";
  std::string database_url;  // default sqlite://$DATA_DIR/imgproc.db
  std::string redis_url;     // optional broker; without it the store is the queue
  std::string storage = "local";
  std::string imgbb_api_key;
  std::string imgbb_upload_url = "https://api.imgbb.com/1/upload";
  std::string public_base_url;  // default http://$BIND:$PORT
  bool allow_private_urls = false;
  std::vector<std::string> fetch_allow_hosts;  // empty: any host
  std::vector<std::string> fetch_deny_hosts;
  std::string webhook_secret;
  std::vector<std::string> api_keys;  // empty (and no file): no authentication
  std::string api_keys_file;          // one key per line; '#' starts a comment

  // Capacity.
  int workers = 64;                     // images in flight at once (downloads, uploads)
  int cpu_threads = 0;                  // images compressed at once; 0 = number of cores
  uint64_t pixel_budget = 100'000'000;  // pixels between download start and compression end
  int http_threads = 16;                // threads serving HTTP connections, ready from the start
  int max_connections = 256;
  int max_connections_per_client = 64;    // per client address; 0: no limit
  uint64_t max_header_bytes = 32 * 1024;  // an HTTP request's line and headers together
  int header_timeout_ms = 10000;          // to receive them whole
  int body_timeout_ms = 20000;            // to receive a request body, extended by...
  int body_min_rate = 500;                // ...a second per this many bytes received

  // Limits.
  uint64_t max_csv_bytes = 10 * 1024 * 1024;
  int max_rows = 10000;
  int max_urls_per_row = 50;
  int max_url_length = 2048;
  int64_t max_queued_images_per_client = 500'000;  // unfinished images per API key or address
  uint64_t max_download_bytes = 50 * 1024 * 1024;
  // Download bodies in memory at once (the oldest download may go over it by one body).
  uint64_t download_budget_bytes = 256 * 1024 * 1024;
  uint64_t max_image_pixels = 100'000'000;
  int max_animation_frames = 1000;
  bool jpeg_fast_path = true;  // DCT-domain re-quantisation of 4:2:0 JPEGs
  int fetch_connect_timeout_ms = 5000;
  int fetch_timeout_ms = 30000;
  int max_redirects = 5;
  int max_attempts = 5;      // per image, transient failures included
  int retry_base_ms = 1000;  // first retry delay; doubles each time, with jitter
  std::string webhook_retry_schedule = "5s,5m,30m,2h,5h,10h,14h,20h,20h";  // ~3 days

  // Scale-out.
  int lease_ms = 60000;       // a silent worker's images are taken over after this
  int queue_sweep_ms = 1000;  // how often the store is checked for work to hand out

  int shutdown_grace_ms = 25000;  // SIGTERM: how long images in flight may take to finish
  std::string log_level = "info";
  std::string log_format = "text";  // text | json (one JSON object per line)
};

// Adds every setting to `app` as a flag with its environment variable, bound to `config`.
void AddFlags(CLI::App& app, Config& config);

// Fills in derived defaults (DATABASE_URL, PUBLIC_BASE_URL, cpu_threads), reads API_KEYS_FILE
// into api_keys, and checks values.
Status Finalize(Config& config);

}  // namespace imgproc::config

#endif  // IMGPROC_CONFIG_CONFIG_H_
