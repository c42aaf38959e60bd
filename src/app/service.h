// The running service: the store, queue, storage, workers, webhook sender and HTTP server wired
// together from a Config, in one process: API and workers (`serve`), API only (`serve
// --no-worker`) or workers only (`worker`).
#ifndef IMGPROC_APP_SERVICE_H_
#define IMGPROC_APP_SERVICE_H_

#include <memory>

#include "api/handlers.h"
#include "api/http_server.h"
#include "common/mutex.h"
#include "config/config.h"
#include "metrics/service_metrics.h"
#include "pipeline/worker_pool.h"
#include "queue/queue.h"
#include "storage/storage.h"
#include "store/store.h"
#include "webhook/webhook.h"

namespace imgproc::app {

enum class Role { kApiAndWorkers, kApi, kWorkers };

class Service {
 public:
  // Opens the store (migrating it), returns leases of a previous run to the queue when the store
  // is SQLite (one process owns it), and builds every part the role needs. Nothing runs yet.
  static Result<std::unique_ptr<Service>> Create(const config::Config& config, Role role);
  ~Service();

  // Binds the port (when serving the API), starts the workers and the webhook sender, and runs
  // until Stop().
  Status Run();
  // Stops accepting connections, lets images in flight finish and returns from Run().
  void Stop();

 private:
  Service() = default;

  config::Config config_;
  Role role_ = Role::kApiAndWorkers;
  Mutex mu_;
  CondVar stopped_cv_;
  bool stopped_ GUARDED_BY(mu_) = false;
  std::unique_ptr<metrics::ServiceMetrics> metrics_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<queue::WorkQueue> queue_;
  std::unique_ptr<storage::ImageStorage> storage_;
  std::unique_ptr<webhook::Sender> webhooks_;
  std::unique_ptr<pipeline::WorkerPool> workers_;
  std::unique_ptr<api::Api> api_;
  std::unique_ptr<api::HttpServer> server_;
};

}  // namespace imgproc::app

#endif  // IMGPROC_APP_SERVICE_H_
