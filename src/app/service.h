// The running service: the store, queue, storage, workers, webhook sender and HTTP server wired
// together from a Config, in one process.
#ifndef IMGPROC_APP_SERVICE_H_
#define IMGPROC_APP_SERVICE_H_

#include <memory>

#include "api/handlers.h"
#include "api/http_server.h"
#include "config/config.h"
#include "metrics/service_metrics.h"
#include "pipeline/worker_pool.h"
#include "queue/queue.h"
#include "storage/storage.h"
#include "store/store.h"
#include "webhook/webhook.h"

namespace imgproc::app {

class Service {
 public:
  // Opens the store (migrating it), returns leases of a previous run to the queue and builds
  // every part. Nothing runs yet.
  static Result<std::unique_ptr<Service>> Create(const config::Config& config, bool with_workers);
  ~Service();

  // Binds the port, starts the workers and serves HTTP until Stop().
  Status Run();
  // Stops accepting connections, lets images in flight finish and returns from Run().
  void Stop();

 private:
  Service() = default;

  config::Config config_;
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
