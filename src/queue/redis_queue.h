// The Redis broker for the scale-out mode: a stream of image ids read through one consumer group
// by every worker process. The store stays the source of truth: an entry only says "look at this
// image", and the store's lease decides who works on it, so a duplicate or stale entry is
// harmless and a lost one is found again by the sweep.
//
// - Notify() wakes the sweep, which hands the broker due images it does not hold (XADD), as many
//   as keep `window` of them waiting undelivered in the stream, picked in turn from the running
//   requests (ImageLeases::TakeImagesToEnqueue, request::FairPick): a request sent beside a big
//   one waits behind at most a window of the big one's images, not behind all of them.
// - Take() reads new entries (XREADGROUP) and takes over entries that another consumer left
//   unacknowledged for a lease (XAUTOCLAIM: a dead worker's), then leases their images in the
//   store; entries whose image is not due are acknowledged and deleted at once.
// - Done() acknowledges and deletes the entry once the outcome is recorded.
// - The sweep, every `sweep` interval, on Notify() and each time this process has read a quarter
//   of the window, re-creates the stream and group when Redis lost them (a restart without
//   persistence) and then hands over every due image again, a window at a time; otherwise it
//   hands over images that became due (new ones, retries), and, when nothing in the stream is
//   undelivered, images handed over more than a lease ago that are still not done.
#ifndef IMGPROC_QUEUE_REDIS_QUEUE_H_
#define IMGPROC_QUEUE_REDIS_QUEUE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "queue/queue.h"

struct redisContext;

namespace imgproc::queue {

struct RedisQueueOptions {
  std::string url;  // redis://[[user]:password@]host[:port][/db]
  // The image lease (LEASE_MS). No default of its own: config::Finalize sets the pipeline's
  // (pipeline::PipelineOptions::lease), so that the two cannot disagree.
  std::chrono::milliseconds lease{0};
  std::chrono::milliseconds sweep{1000};
  // Images waiting undelivered in the stream at most (processes sweeping at the same moment may
  // each add up to it). What a request sent now may wait behind: beside a 50,000-image catalogue
  // on the 2-core bench machine a 10-image request took 0.52 s more than alone with 256 and 0.23 s
  // with 64, at the same throughput (609 and 622 images/s, 8.14 and 8.25 statements per image:
  // each process tops it up after reading a quarter of it, so a smaller window is more sweeps).
  int64_t window = 64;
  std::string stream = "imgproc:images";
  std::string group = "imgproc-workers";
  std::string consumer;  // this process's name in the group
};

// Where a redis:// URL points.
struct RedisAddress {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;
  std::string password;
  int db = 0;
};
Result<RedisAddress> ParseRedisUrl(const std::string& url);

class RedisQueue final : public WorkQueue {
 public:
  // Checks that Redis answers, then starts the sweep. The queue keeps working through Redis
  // restarts: calls fail with transient errors while it is away.
  static Result<std::unique_ptr<RedisQueue>> Open(store::ImageLeases& store,
                                                  RedisQueueOptions options);
  ~RedisQueue() override;

  void Notify() override;
  Result<std::vector<store::ImageTask>> Take(const std::string& owner, int max,
                                             std::chrono::milliseconds wait) override;
  void Done(const store::ImageTask& task) override;
  void Shutdown() override;

  // OK when Redis answers a PING.
  Status Ping();

 private:
  class Connection;
  RedisQueue(store::ImageLeases& store, RedisQueueOptions options, RedisAddress address);

  Result<std::unique_ptr<Connection>> Borrow();
  void Give(std::unique_ptr<Connection> conn);
  void SweepLoop();
  Status Sweep(Connection& conn);
  Status Enqueue(Connection& conn, const std::vector<int64_t>& image_ids);

  store::ImageLeases& store_;
  const RedisQueueOptions options_;
  const RedisAddress address_;
  std::atomic<bool> shutdown_{false};
  std::atomic<int64_t> last_autoclaim_{0};    // steady-clock ms of the last XAUTOCLAIM
  std::atomic<int64_t> read_since_sweep_{0};  // entries this process read since it woke the sweep
  // After Redis lost the stream: images handed over before this are handed over again (the
  // sweep's thread only).
  std::optional<int64_t> handed_again_before_;

  Mutex pool_mu_;
  std::vector<std::unique_ptr<Connection>> idle_ GUARDED_BY(pool_mu_);

  Mutex sweep_mu_;
  CondVar sweep_cv_;
  bool sweep_requested_ GUARDED_BY(sweep_mu_) = false;
  std::thread sweeper_;
};

}  // namespace imgproc::queue

#endif  // IMGPROC_QUEUE_REDIS_QUEUE_H_
