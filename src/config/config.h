// The configuration: every setting is an environment variable and a command-line flag of the same
// meaning (a flag wins over the environment). README.md's configuration table lists them all with
// their defaults and ranges; docs/api.md describes the API they shape.
//
// Each module owns its options: Config holds the modules' option structs themselves, and each
// setting is bound to one field of them (the table of settings in config.cc: names, help, range).
// So a default is stated once, where the module declares the field, and the service hands each
// module its struct as it is, with no field-by-field copy to drift. Settings no module owns (where
// the store and media live, logging, the API keys) are fields of Config itself, defaults included.
// The other way, each module registering its own flags, would make every module depend on CLI11
// and scatter over ten files the names README.md documents; here they sit in one table, next to
// the range each is checked against.
//
// A value is read from its text by Finalize, not by CLI11: so that every bad value, whatever the
// way it came in, is an error that names the setting and its accepted range (exit code 2), never
// a conversion exception, nor a negative number turned into a huge unsigned limit.
#ifndef IMGPROC_CONFIG_CONFIG_H_
#define IMGPROC_CONFIG_CONFIG_H_

#include <map>
#include <string>
#include <vector>

#include "api/handlers.h"
#include "api/http_server.h"
#include "common/result.h"
#include "pipeline/worker_pool.h"
#include "queue/redis_queue.h"
#include "storage/storage.h"
#include "webhook/webhook.h"

namespace CLI {
class App;
}

namespace imgproc::config {

struct Config {
  // The modules' options, each setting a field of one of them (README.md has the table).
  // PORT, BIND, HTTP_THREADS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, and in `limits`
  // MAX_HEADER_BYTES, HEADER_TIMEOUT_MS, BODY_TIMEOUT_MS, BODY_MIN_RATE.
  api::ServerOptions server;
  // MAX_CSV_BYTES, MAX_ROWS, MAX_URLS_PER_ROW, MAX_URL_LENGTH (in `csv_limits`),
  // MAX_QUEUED_IMAGES_PER_CLIENT; Finalize fills in the digests of the API keys.
  api::ApiOptions api;
  // WORKERS, CPU_THREADS, PIXEL_BUDGET, DOWNLOAD_BUDGET_BYTES, MAX_ATTEMPTS, RETRY_BASE_MS,
  // LEASE_MS, SHUTDOWN_GRACE_MS; in `fetch` ALLOW_PRIVATE_URLS, FETCH_ALLOW_HOSTS,
  // FETCH_DENY_HOSTS, FETCH_CONNECT_TIMEOUT_MS, FETCH_TIMEOUT_MS, MAX_REDIRECTS,
  // MAX_DOWNLOAD_BYTES; in `codec` MAX_IMAGE_PIXELS, MAX_ANIMATION_FRAMES, JPEG_FAST_PATH.
  pipeline::PipelineOptions pipeline;
  // STORAGE (`kind`), IMGBB_API_KEY, IMGBB_UPLOAD_URL, PUBLIC_BASE_URL; in `s3` the S3_* settings
  // and the AWS_* credentials.
  storage::StorageConfig storage;
  // WEBHOOK_SECRET, WEBHOOK_RETRY_SCHEDULE.
  webhook::SenderOptions webhook;
  // REDIS_URL (`url`; empty: the store is the queue), QUEUE_SWEEP_MS (`sweep`, also the polling
  // interval of a shared store without Redis).
  queue::RedisQueueOptions queue;

  // The process's own settings.
  std::string data_dir = "./data";    // DATA_DIR: the SQLite database and local media
  std::string database_url;           // DATABASE_URL; empty: sqlite://$DATA_DIR/imgproc.db
  std::vector<std::string> api_keys;  // API_KEYS; with none (and no file): no authentication
  std::string api_keys_file;          // API_KEYS_FILE: one key per line; '#' starts a comment
  std::string log_level = "info";     // LOG_LEVEL
  std::string log_format = "text";    // LOG_FORMAT: text | json (one JSON object per line)
  // IMAGE_CACHE: the workers use the store's image cache (pipeline.cache);
  // IMAGE_CACHE_MAX_AGE_HOURS is pipeline.cache_max_age_hours.
  bool image_cache = true;

  // The text of each setting given as a flag or in the environment, by variable name (a list's
  // items, one value otherwise). AddFlags fills it in, Finalize reads it into the fields above.
  std::map<std::string, std::vector<std::string>> given;
};

// Adds every setting to `app` as a flag with its environment variable, its default (the field's
// value in `config`) shown in --help; what is given is recorded in `config.given`.
void AddFlags(CLI::App& app, Config& config);

// Reads the given settings into their fields, fills in the derived values (DATABASE_URL from
// DATA_DIR, PUBLIC_BASE_URL from BIND and PORT, CPU_THREADS 0 as the number of cores, the HTTP
// body limit from MAX_CSV_BYTES, the lease and the SSRF policy of the other modules), reads
// API_KEYS_FILE, and checks every setting against its range and the rules between settings.
// InvalidArgument lists every problem, each naming its setting and what it accepts.
Status Finalize(Config& config);

}  // namespace imgproc::config

#endif  // IMGPROC_CONFIG_CONFIG_H_
