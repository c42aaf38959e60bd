#include "app/process_command.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/service.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "pipeline/worker_pool.h"
#include "queue/embedded_queue.h"
#include "report/report.h"
#include "store/sqlite_store.h"

namespace imgproc::app {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::atomic<int> interrupted{0};
extern "C" void OnSignal(int sig) { interrupted = sig; }

std::string HumanBytes(int64_t n) {
  char text[32];
  if (n < 1024) {
    std::snprintf(text, sizeof text, "%lld B", static_cast<long long>(n));
  } else if (n < 1024 * 1024) {
    std::snprintf(text, sizeof text, "%.1f KB", static_cast<double>(n) / 1024);
  } else {
    std::snprintf(text, sizeof text, "%.2f MB", static_cast<double>(n) / (1024 * 1024));
  }
  return text;
}

std::string Duration(double seconds) {
  const auto s = std::llround(seconds);
  char text[32];
  if (seconds < 60) {
    std::snprintf(text, sizeof text, "%.1fs", seconds);
  } else if (s >= 3600) {
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(text, sizeof text, "%lld:%02lld", s / 60, s % 60);
  }
  return text;
}

// Shows progress on stderr: a bar redrawn in place on a terminal, a plain line every few
// seconds otherwise.
class Progress {
 public:
  Progress(int total, bool tty, bool quiet) : total_(total), tty_(tty), quiet_(quiet) {}

  void Update(int finished, int failed, bool final) {
    if (quiet_) return;
    const auto now = Clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    if (!final && finished == last_finished_ && now - last_line_ < std::chrono::seconds(10)) return;
    if (!final && now - last_line_ <
                      (tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(2000))) {
      return;
    }
    const double rate = elapsed > 0 ? finished / elapsed : 0;
    std::string eta = "--";
    if (finished >= total_) {
      eta = "0s";
    } else if (rate > 0) {
      eta = Duration((total_ - finished) / rate);
    }
    char stats[160];
    std::snprintf(stats, sizeof stats, "%d/%d images%s  %.1f images/s  ETA %s", finished, total_,
                  failed > 0 ? (" (" + std::to_string(failed) + " failed)").c_str() : "", rate,
                  eta.c_str());
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = total_ > 0 ? finished * kWidth / total_ : kWidth;
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(kWidth, '.');
      std::fprintf(stderr, "\r[%s] %s\x1b[K%s", bar.c_str(), stats, final ? "\n" : "");
    } else {
      std::fprintf(stderr, "progress: %s\n", stats);
    }
    std::fflush(stderr);
    last_finished_ = finished;
    last_line_ = now;
  }

 private:
  const int total_;
  const bool tty_;
  const bool quiet_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_line_{};
  int last_finished_ = -1;
};

// A folder removed with everything in it when the run ends.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "imgproc-process-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return InvalidArgument("cannot read " + path + ": " + ec.message());
  if (size > max_bytes) {
    return InvalidArgument(path + " is larger than MAX_CSV_BYTES (" + std::to_string(max_bytes) +
                           " bytes)");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream data;
  data << in.rdbuf();
  if (!in) return InvalidArgument("cannot read " + path);
  return data.str();
}

}  // namespace

void AddProcessFlags(CLI::App& command, ProcessOptions& options) {
  options.command = &command;
  command.footer(R"(
Every image is downloaded, compressed and stored as `imgproc serve` would, over a throw-away
SQLite store in the temp folder (DATABASE_URL is not used). With STORAGE=local the JPEGs go to
DATA_DIR/media/<request id>/ and the output URLs are file:// URLs of them, unless
PUBLIC_BASE_URL is set. Serve-only settings (PORT, BIND, HTTP_THREADS, API keys, webhooks) have
no effect. Progress goes to stderr (a bar on a terminal), the summary to stdout.
Exit codes: 0 every image done (or --allow-failures), 1 some image failed, 2 unusable input or
settings, 130 interrupted.)");
  command.add_option("input", options.input_csv, "the CSV of products and image URLs")
      ->required()
      ->check(CLI::ExistingFile);
  command.add_option("-o,--output", options.output_csv, "where to write the output CSV")
      ->required();
  command.add_flag("--allow-failures", options.allow_failures,
                   "exit 0 even when some images failed (they are listed on stderr)");
  command.add_flag("--errors", options.errors_column,
                   "add an Errors column to the output CSV (like ?errors=1)");
  command.add_flag("-q,--quiet", options.quiet, "no progress output, only the summary");
  command.add_flag("--refresh", options.refresh,
                   "make every image anew instead of reusing the image cache's outputs (the "
                   "cache, DATA_DIR/process-cache.db, still learns the new ones)");
  command.add_option("--format", options.outputs.format,
                     "the main output's format: jpeg (the default), webp or avif");
  command.add_option("--quality", options.outputs.quality,
                     "its quality, 1-100 (default 50; 70 for webp)");
  command.add_option("--max-width", options.outputs.max_width,
                     "fit it inside this width, never upscaled");
  command.add_option("--max-height", options.outputs.max_height,
                     "fit it inside this height, never upscaled");
  command.add_flag("--progressive", options.progressive, "a progressive JPEG");
  command.add_option("--presets", options.outputs.presets,
                     "variants to make of every image too, by preset name (PRESETS), "
                     "comma-separated: each gets a \"<name> Image Urls\" column");
}

int RunProcess(const config::Config& config_in, const ProcessOptions& options) {
  config::Config config = config_in;
  const auto given = [&](const char* flag, const char* env) {
    return std::getenv(env) != nullptr ||
           (options.command != nullptr && options.command->count(flag) > 0);
  };
  // Progress and summary own the terminal: the log goes to stderr and, unless a level is asked
  // for, has warnings and errors only (every failed image is listed in the summary anyway).
  spdlog::set_default_logger(spdlog::stderr_logger_mt("process"));
  const std::string level = given("--log-level", "LOG_LEVEL") ? config.log_level : "warn";
  if (Status s = logging::Configure(level, config.log_format); !s.ok()) {
    spdlog::critical("configuration: {}", s.message());
    return 2;
  }
  // No server serves the media here: unless PUBLIC_BASE_URL is set, output URLs are file:// URLs
  // of the JPEGs under DATA_DIR/media.
  const fs::path data_dir = fs::absolute(config.data_dir).lexically_normal();
  if (!given("--public-base-url", "PUBLIC_BASE_URL")) {
    std::string base = data_dir.string();
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    config.storage.public_base_url = "file://" + base;
  }
  config.storage.media_dir = (data_dir / "media").string();

  auto data = ReadFile(options.input_csv, config.api.csv_limits.max_bytes);
  if (!data.ok()) {
    std::fprintf(stderr, "error: %s\n", data.status().message().c_str());
    return 2;
  }
  csv::ParseResult parsed = csv::ParseProducts(*data, config.api.csv_limits);
  if (!parsed.ok()) {
    std::fprintf(stderr, "error: invalid CSV %s:\n", options.input_csv.c_str());
    for (const auto& p : parsed.problems) {
      std::fprintf(stderr, "  row %zu%s%s: %s\n", p.row, p.column.empty() ? "" : ", ",
                   p.column.c_str(), p.message.c_str());
    }
    return 2;
  }

  request::OutputFields fields = options.outputs;
  if (options.progressive) fields.progressive = "true";
  const request::OutputChoice outputs = request::ChooseOutputs(fields, config.api.presets);
  if (!outputs.plan) {
    std::string flag = outputs.field;  // max_width is --max-width
    std::replace(flag.begin(), flag.end(), '_', '-');
    std::fprintf(stderr, "error: --%s: %s\n", flag.c_str(), outputs.error.c_str());
    return 2;
  }

  if (Status s = pipeline::InitCodec(); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 2;
  }
  net::InitHttpClient();
  ScratchDir scratch;
  if (scratch.path().empty()) {
    std::fprintf(stderr, "error: cannot create a temporary folder\n");
    return 2;
  }
  auto store = store::OpenSqliteStore((scratch.path() / "process.db").string());
  if (!store.ok()) {
    std::fprintf(stderr, "error: %s\n", store.status().message().c_str());
    return 2;
  }
  auto storage = storage::MakeStorage(config.storage);
  if (!storage.ok()) {
    std::fprintf(stderr, "error: %s\n", storage.status().message().c_str());
    return 2;
  }
  // The image cache lives in DATA_DIR, beside the outputs it names, so a second run of the same
  // CSV reuses them. Its own database: the service's cache names http:// outputs, these file://.
  std::unique_ptr<store::Store> cache;
  if (config.image_cache) {
    auto opened = store::OpenSqliteStore((data_dir / "process-cache.db").string());
    if (!opened.ok()) {
      std::fprintf(stderr, "error: %s\n", opened.status().message().c_str());
      return 2;
    }
    cache = std::move(*opened);
  }
  const std::string id = request::NewRequestId();
  if (Status s = (*store)->CreateRequest({id, std::nullopt, std::nullopt, "", 0,
                                          csv::ToProducts(std::move(parsed.rows)), options.refresh,
                                          request::EncodePlan(*outputs.plan)});
      !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 2;
  }

  // Set when an image is recorded: the progress is read again.
  Mutex mu;
  CondVar changed;
  bool dirty = false;
  const auto notify = [&] {
    {
      MutexLock lock(&mu);
      dirty = true;
    }
    changed.SignalAll();
  };
  pipeline::PipelineOptions pipe = config.pipeline;
  pipe.cache = cache.get();
  queue::EmbeddedQueue queue(**store, pipe.lease);
  pipeline::WorkerPool pool(**store, queue, **storage, pipe, notify);

  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  auto view = (*store)->GetRequest(id);
  if (!view.ok()) {
    std::fprintf(stderr, "error: %s\n", view.status().message().c_str());
    return 2;
  }
  const auto started = Clock::now();
  Progress progress(view->images_total, isatty(STDERR_FILENO) == 1, options.quiet);
  pool.Start();
  // Ends when the request completes (every image reaches done or failed: attempts are bounded
  // by MAX_ATTEMPTS), on a store error, or on Ctrl-C.
  while (!request::IsFinished(view->status) && interrupted == 0) {
    progress.Update(view->images_done + view->images_failed, view->images_failed, false);
    {
      MutexLock lock(&mu);
      const auto until = Clock::now() + std::chrono::milliseconds(250);
      while (!dirty && changed.WaitUntil(&mu, until)) {
      }
      dirty = false;
    }
    view = (*store)->GetRequest(id);
    if (!view.ok()) break;
  }
  if (interrupted != 0) {
    pool.Stop(std::chrono::milliseconds(0));
  } else {
    pool.Stop();
  }
  if (!view.ok()) {
    std::fprintf(stderr, "\nerror: %s\n", view.status().message().c_str());
    return 2;
  }
  if (interrupted != 0) {
    std::fprintf(stderr, "\ninterrupted: %d of %d images finished; no output written\n",
                 view->images_done + view->images_failed, view->images_total);
    return 130;
  }
  progress.Update(view->images_done + view->images_failed, view->images_failed, true);
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();

  // The output CSV, exactly as the API serves it.
  {
    std::ofstream out(options.output_csv, std::ios::binary | std::ios::trunc);
    out << report::OutputCsv(*view, options.errors_column);
    out.close();
    if (!out) {
      std::fprintf(stderr, "error: cannot write %s\n", options.output_csv.c_str());
      return 2;
    }
  }

  int64_t before = 0;
  int64_t after = 0;
  for (const auto& p : view->products) {
    for (const auto& z : p.image_sizes) {
      before += z.input_bytes;
      after += z.output_bytes;
    }
    for (const auto& e : p.image_errors) {
      std::fprintf(stderr, "failed: product %lld image #%d %s: %s\n",
                   static_cast<long long>(p.serial_no), e.index, e.url.c_str(), e.error.c_str());
    }
  }
  const std::string reused =
      view->images_reused > 0 ? " (" + std::to_string(view->images_reused) + " reused)" : "";
  std::printf("%d products, %d images: %d ok%s, %d failed in %s (%.1f images/s)\n",
              static_cast<int>(view->products.size()), view->images_total, view->images_done,
              reused.c_str(), view->images_failed, Duration(seconds).c_str(),
              seconds > 0 ? (view->images_done + view->images_failed) / seconds : 0.0);
  if (before > 0) {
    std::printf("bytes: %s before, %s after (%.0f%% smaller)\n", HumanBytes(before).c_str(),
                HumanBytes(after).c_str(),
                100.0 * (1.0 - static_cast<double>(after) / static_cast<double>(before)));
  }
  std::printf("output: %s\n", options.output_csv.c_str());
  std::fflush(stdout);
  return view->images_failed > 0 && !options.allow_failures ? 1 : 0;
}

}  // namespace imgproc::app
