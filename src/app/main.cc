// imgproc: compresses the product images listed in CSV files (see README.md).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "app/process_command.h"
#include "app/service.h"
#include "common/logging.h"
#include "config/config.h"
#include "store/store.h"

namespace {

constexpr const char* kFooter = R"(
Every setting is also an environment variable (PORT, BIND, DATA_DIR, DATABASE_URL, REDIS_URL,
STORAGE, IMGBB_API_KEY, IMGBB_UPLOAD_URL, PUBLIC_BASE_URL, ALLOW_PRIVATE_URLS, WEBHOOK_SECRET and
the limits); a flag wins over the environment. See `imgproc serve --help` for the full list.)";

// Runs the service until SIGINT or SIGTERM, then shuts it down gracefully.
int Serve(const imgproc::config::Config& config, imgproc::app::Role role) {
  // Block the signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto service = imgproc::app::Service::Create(config, role);
  if (!service.ok()) {
    spdlog::critical("{}", service.status().message());
    return 1;
  }
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: shutting down", sig);
    (*service)->Stop();
  });
  imgproc::Status status = (*service)->Run();
  if (!status.ok()) {
    spdlog::critical("{}", status.message());
    // Wake the watcher so it can be joined.
    kill(getpid(), SIGTERM);
  }
  watcher.join();
  (*service)->Stop();
  spdlog::info("stopped");
  return status.ok() ? 0 : 1;
}

int Main(int argc, char** argv) {
  CLI::App app(
      "imgproc: compress the product images listed in a CSV to JPEG quality 50 and "
      "report the results through a status API, an output CSV and a webhook.",
      "imgproc");
  app.require_subcommand(1);
  app.footer(kFooter);
  app.set_version_flag("--version", "imgproc 0.1.0");

  imgproc::config::Config config;
  bool no_worker = false;
  CLI::App* serve = app.add_subcommand(
      "serve", "Run the HTTP API with embedded workers (SQLite + local disk by default).");
  imgproc::config::AddFlags(*serve, config);
  serve->add_flag("--no-worker", no_worker,
                  "serve the API only; `imgproc worker` processes run elsewhere on a shared "
                  "DATABASE_URL (not with SQLite, which one process owns)");
  CLI::App* worker = app.add_subcommand(
      "worker",
      "Run workers only, sharing a PostgreSQL DATABASE_URL (and REDIS_URL) with `imgproc serve "
      "--no-worker`; run as many as needed on as many machines.");
  imgproc::config::AddFlags(*worker, config);
  CLI::App* migrate = app.add_subcommand(
      "migrate",
      "Create or upgrade the database schema of DATABASE_URL, then exit (serve and "
      "worker also do this at start).");
  imgproc::config::AddFlags(*migrate, config);

  imgproc::app::ProcessOptions process_options;
  CLI::App* process = app.add_subcommand(
      "process", "Process a CSV offline, without a server, and write the output CSV.");
  imgproc::config::AddFlags(*process, config);
  imgproc::app::AddProcessFlags(*process, process_options);

  CLI11_PARSE(app, argc, argv);

  // Every setting is read and checked here, before anything starts: a bad one is exit code 2.
  if (imgproc::Status s = imgproc::config::Finalize(config); !s.ok()) {
    spdlog::critical("configuration: {}", s.message());
    return 2;
  }
  if (imgproc::Status s = imgproc::logging::Configure(config.log_level, config.log_format);
      !s.ok()) {
    spdlog::critical("configuration: {}", s.message());
    return 2;
  }
  const bool sqlite = config.database_url.rfind("sqlite://", 0) == 0;
  if ((no_worker || worker->parsed()) && sqlite) {
    spdlog::critical(
        "{}: with SQLite no other process can share the work; use a PostgreSQL DATABASE_URL",
        no_worker ? "serve --no-worker" : "worker");
    return 2;
  }
  if (migrate->parsed()) {
    auto store = imgproc::store::OpenStore(config.database_url);
    if (!store.ok()) {
      spdlog::critical("migrate: {}", store.status().message());
      return 1;
    }
    spdlog::info("migrate: the schema is up to date");
    return 0;
  }
  if (process->parsed()) return imgproc::app::RunProcess(config, process_options);
  if (worker->parsed()) return Serve(config, imgproc::app::Role::kWorkers);
  return Serve(config, no_worker ? imgproc::app::Role::kApi : imgproc::app::Role::kApiAndWorkers);
}

}  // namespace

// What escapes Main (an allocation failure, a library's exception) is reported, not a terminate.
int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "imgproc: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "imgproc: unknown error\n");
  }
  return 1;
}
