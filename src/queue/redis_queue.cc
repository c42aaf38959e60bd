#include "queue/redis_queue.h"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <string_view>

#include "common/thread_name.h"

namespace imgproc::queue {
namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Images handed to the broker per store query.
constexpr int kSweepBatch = 1000;

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

timeval ToTimeval(std::chrono::milliseconds ms) {
  return {static_cast<time_t>(ms.count() / 1000),
          static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

bool ParseInt(std::string_view s, int64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// A stream entry that names an image: [id, [field, value, ...]].
struct Entry {
  std::string id;
  int64_t image_id = 0;
};

void AppendEntries(const redisReply* entries, std::vector<Entry>& out) {
  if (!entries || entries->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i < entries->elements; ++i) {
    const redisReply* e = entries->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
    const redisReply* fields = e->element[1];
    Entry entry{std::string(e->element[0]->str, e->element[0]->len), 0};
    if (fields->type == REDIS_REPLY_ARRAY) {
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        if (std::string_view(fields->element[f]->str, fields->element[f]->len) == "image") {
          ParseInt(std::string_view(fields->element[f + 1]->str, fields->element[f + 1]->len),
                   entry.image_id);
        }
      }
    }
    out.push_back(std::move(entry));  // an entry without an image id is acknowledged and dropped
  }
}

}  // namespace

Result<RedisAddress> ParseRedisUrl(const std::string& url) {
  constexpr std::string_view kScheme = "redis://";
  if (url.rfind(kScheme, 0) != 0) return InvalidArgument("REDIS_URL must start with redis://");
  RedisAddress a;
  std::string rest = url.substr(kScheme.size());
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest.resize(slash);
    int64_t n = 0;
    if (!db.empty() && (!ParseInt(db, n) || n < 0 || n > 65535)) {
      return InvalidArgument("REDIS_URL: database must be a number (got '" + db + "')");
    }
    a.db = static_cast<int>(n);
  }
  if (size_t at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = auth.find(':');
    a.user = auth.substr(0, colon);
    if (colon != std::string::npos) a.password = auth.substr(colon + 1);
  }
  if (!rest.empty() && rest.front() == '[') {  // [IPv6]:port
    size_t close = rest.find(']');
    if (close == std::string::npos) return InvalidArgument("REDIS_URL: unclosed '['");
    a.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return InvalidArgument("REDIS_URL: bad port");
    if (!rest.empty()) rest = rest.substr(1);
  } else if (size_t colon = rest.rfind(':'); colon != std::string::npos) {
    a.host = rest.substr(0, colon);
    rest = rest.substr(colon + 1);
  } else {
    a.host = rest;
    rest.clear();
  }
  if (!rest.empty()) {
    int64_t port = 0;
    if (!ParseInt(rest, port) || port < 1 || port > 65535) {
      return InvalidArgument("REDIS_URL: bad port '" + rest + "'");
    }
    a.port = static_cast<int>(port);
  }
  if (a.host.empty()) return InvalidArgument("REDIS_URL: no host");
  return a;
}

// One connection to Redis. Commands fail with transient errors when the connection is lost; a
// lost connection is never reused.
class RedisQueue::Connection {
 public:
  static Result<std::unique_ptr<Connection>> Open(const RedisAddress& a) {
    redisContext* c =
        redisConnectWithTimeout(a.host.c_str(), a.port, ToTimeval(std::chrono::seconds(2)));
    if (!c || c->err) {
      std::string message = c ? c->errstr : "out of memory";
      if (c) redisFree(c);
      return Transient("redis: cannot connect to " + a.host + ":" + std::to_string(a.port) + ": " +
                       message);
    }
    // Longer than the longest blocking read we issue (1 s), so a dead server is noticed.
    redisSetTimeout(c, ToTimeval(std::chrono::seconds(5)));
    auto conn = std::unique_ptr<Connection>(new Connection(c));
    if (!a.password.empty()) {
      auto r = a.user.empty() ? conn->Command({"AUTH", a.password})
                              : conn->Command({"AUTH", a.user, a.password});
      if (!r.ok()) return r.status();
    }
    if (a.db != 0) {
      if (auto r = conn->Command({"SELECT", std::to_string(a.db)}); !r.ok()) return r.status();
    }
    return conn;
  }
  ~Connection() { redisFree(c_); }

  bool broken() const { return c_->err != 0; }

  // Runs one command. Error replies become errors: NOGROUP is NotFound (the stream or group is
  // gone), a server that is loading or busy is transient.
  Result<Reply> Command(const std::vector<std::string>& args) {
    if (Status s = Append(args); !s.ok()) return s;
    return Read();
  }

  // Sends every command, then reads every reply; the first error wins.
  Status Pipeline(const std::vector<std::vector<std::string>>& commands) {
    for (const auto& args : commands) {
      if (Status s = Append(args); !s.ok()) return s;
    }
    Status first = Status::Ok();
    for (size_t i = 0; i < commands.size(); ++i) {
      auto r = Read();
      if (!r.ok() && first.ok()) first = r.status();
      if (broken()) break;
    }
    return first;
  }

 private:
  explicit Connection(redisContext* c) : c_(c) {}

  Status Append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
      return Transient(std::string("redis: ") + c_->errstr);
    }
    return Status::Ok();
  }

  Result<Reply> Read() {
    void* raw = nullptr;
    if (redisGetReply(c_, &raw) != REDIS_OK || !raw) {
      return Transient(std::string("redis: ") + (c_->err ? c_->errstr : "no reply"));
    }
    Reply reply(static_cast<redisReply*>(raw));
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string message(reply->str, reply->len);
      if (message.rfind("NOGROUP", 0) == 0) return NotFound("redis: " + message);
      for (const char* busy : {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"}) {
        if (message.rfind(busy, 0) == 0) return Transient("redis: " + message);
      }
      return Internal("redis: " + message);
    }
    return reply;
  }

  redisContext* c_;
};

RedisQueue::RedisQueue(store::ImageLeases& store, RedisQueueOptions options, RedisAddress address)
    : store_(store), options_(std::move(options)), address_(std::move(address)) {}

Result<std::unique_ptr<RedisQueue>> RedisQueue::Open(store::ImageLeases& store,
                                                     RedisQueueOptions options) {
  auto address = ParseRedisUrl(options.url);
  if (!address.ok()) return address.status();
  std::unique_ptr<RedisQueue> queue(new RedisQueue(store, std::move(options), *address));
  auto conn = queue->Borrow();
  if (!conn.ok()) return conn.status();
  if (auto pong = (*conn)->Command({"PING"}); !pong.ok()) return pong.status();
  queue->Give(std::move(*conn));
  queue->sweeper_ = std::thread([q = queue.get()] {
    NameThisThread("imgproc-sweep");
    q->SweepLoop();
  });
  return queue;
}

RedisQueue::~RedisQueue() {
  Shutdown();
  if (sweeper_.joinable()) sweeper_.join();
}

Result<std::unique_ptr<RedisQueue::Connection>> RedisQueue::Borrow() {
  {
    MutexLock lock(&pool_mu_);
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
  }
  return Connection::Open(address_);
}

void RedisQueue::Give(std::unique_ptr<Connection> conn) {
  if (conn->broken()) return;
  MutexLock lock(&pool_mu_);
  idle_.push_back(std::move(conn));
}

void RedisQueue::Notify() {
  {
    MutexLock lock(&sweep_mu_);
    sweep_requested_ = true;
  }
  sweep_cv_.SignalAll();
}

void RedisQueue::Shutdown() {
  shutdown_ = true;
  Notify();
}

Result<std::vector<store::ImageTask>> RedisQueue::Take(const std::string& owner, int max,
                                                       std::chrono::milliseconds wait) {
  if (shutdown_) return std::vector<store::ImageTask>();
  auto borrowed = Borrow();
  if (!borrowed.ok()) return borrowed.status();
  Connection& conn = **borrowed;
  const std::string count = std::to_string(std::max(1, max));
  std::vector<Entry> entries;

  // Entries a consumer left unacknowledged for a lease: its worker died (or is very slow, and
  // then the store's lease, extended while it works, keeps the image with it).
  const int64_t now = SteadyMillis();
  int64_t last = last_autoclaim_.load();
  if (now - last >= options_.lease.count() / 4 &&
      last_autoclaim_.compare_exchange_strong(last, now)) {
    auto r = conn.Command({"XAUTOCLAIM", options_.stream, options_.group, options_.consumer,
                           std::to_string(options_.lease.count()), "0-0", "COUNT", count});
    if (r.ok() && (*r)->type == REDIS_REPLY_ARRAY && (*r)->elements >= 2) {
      AppendEntries((*r)->element[1], entries);
    } else if (!r.ok() && r.status().code() != StatusCode::kNotFound) {
      Give(std::move(*borrowed));
      return r.status();
    }
  }

  if (entries.empty()) {
    const auto block = std::clamp<int64_t>(wait.count(), 1, 1000);
    auto r = conn.Command({"XREADGROUP", "GROUP", options_.group, options_.consumer, "COUNT", count,
                           "BLOCK", std::to_string(block), "STREAMS", options_.stream, ">"});
    if (!r.ok()) {
      Give(std::move(*borrowed));
      if (r.status().code() == StatusCode::kNotFound) {  // Redis lost the group: rebuild it
        Notify();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return std::vector<store::ImageTask>();
      }
      return r.status();
    }
    if ((*r)->type == REDIS_REPLY_ARRAY) {
      for (size_t i = 0; i < (*r)->elements; ++i) {
        const redisReply* stream = (*r)->element[i];
        if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2) {
          AppendEntries(stream->element[1], entries);
        }
      }
    }
  }
  if (entries.empty()) {
    Give(std::move(*borrowed));
    return std::vector<store::ImageTask>();
  }

  // A quarter of the window read since the last top-up: top it up.
  if (read_since_sweep_.fetch_add(static_cast<int64_t>(entries.size())) +
          static_cast<int64_t>(entries.size()) >=
      options_.window / 4) {
    read_since_sweep_ = 0;
    Notify();
  }
  std::vector<int64_t> ids;
  for (const auto& e : entries) {
    if (e.image_id > 0) ids.push_back(e.image_id);
  }
  auto tasks = store_.ClaimImagesById(ids, owner, options_.lease.count());
  if (!tasks.ok()) {
    // The entries stay pending with this consumer and are taken over after a lease.
    Give(std::move(*borrowed));
    return tasks.status();
  }
  std::map<int64_t, store::ImageTask*> claimed;
  for (auto& t : *tasks) claimed[t.image_id] = &t;
  std::vector<std::vector<std::string>> drop;
  for (const auto& e : entries) {
    auto it = claimed.find(e.image_id);
    if (it != claimed.end() && it->second->queue_ref.empty()) {
      it->second->queue_ref = e.id;
    } else {  // not due (done, leased elsewhere, or a duplicate entry): nothing to do
      drop.push_back({"XACK", options_.stream, options_.group, e.id});
      drop.push_back({"XDEL", options_.stream, e.id});
    }
  }
  if (!drop.empty()) {
    if (Status s = conn.Pipeline(drop); !s.ok()) spdlog::warn("{}", s.message());
  }
  Give(std::move(*borrowed));
  return tasks;
}

Status RedisQueue::Ping() {
  auto conn = Borrow();
  if (!conn.ok()) return conn.status();
  auto pong = (*conn)->Command({"PING"});
  Give(std::move(*conn));
  return pong.ok() ? Status::Ok() : pong.status();
}

void RedisQueue::Done(const store::ImageTask& task) {
  if (task.queue_ref.empty()) return;
  auto conn = Borrow();
  Status s = conn.ok()
                 ? (*conn)->Pipeline({{"XACK", options_.stream, options_.group, task.queue_ref},
                                      {"XDEL", options_.stream, task.queue_ref}})
                 : conn.status();
  // Not fatal: an entry left behind is taken over after a lease and dropped, as its image is done.
  if (!s.ok()) spdlog::warn("cannot acknowledge image {}: {}", task.image_id, s.message());
  if (conn.ok()) Give(std::move(*conn));
}

void RedisQueue::SweepLoop() {
  int64_t backoff_ms = 0;
  while (!shutdown_) {
    {
      MutexLock lock(&sweep_mu_);
      const auto until =
          std::chrono::steady_clock::now() + options_.sweep + std::chrono::milliseconds(backoff_ms);
      while (!sweep_requested_ && !shutdown_ && sweep_cv_.WaitUntil(&sweep_mu_, until)) {
      }
      sweep_requested_ = false;
    }
    if (shutdown_) break;
    auto conn = Borrow();
    Status s = conn.ok() ? Sweep(**conn) : conn.status();
    if (conn.ok()) Give(std::move(*conn));
    if (s.ok()) {
      backoff_ms = 0;
    } else {
      backoff_ms = std::min<int64_t>(5000, backoff_ms ? backoff_ms * 2 : 250);
      spdlog::warn("queue sweep: {} (next try in {} ms)", s.message(),
                   options_.sweep.count() + backoff_ms);
    }
  }
}

Status RedisQueue::Sweep(Connection& conn) {
  // Creating the group from id 0 also covers entries added while it did not exist.
  auto created =
      conn.Command({"XGROUP", "CREATE", options_.stream, options_.group, "0", "MKSTREAM"});
  const bool lost = created.ok();
  if (!created.ok() && created.status().message().find("BUSYGROUP") == std::string::npos) {
    return created.status();
  }
  if (lost) spdlog::info("queue: created stream group; handing over every due image");

  const request::Millis now = RealClock().WallMillis();
  // Redis lost everything it held: hand over again everything due that was handed over before
  // now, over as many sweeps as the window takes. (What was handed over within this very
  // millisecond, before the loss, is found by the pass for lost images below, a lease later;
  // counting it in would hand over again what this sweep hands over.)
  if (lost) handed_again_before_ = now;

  // The window: what waits undelivered in the stream (its length, less what consumers hold).
  auto length = conn.Command({"XLEN", options_.stream});
  auto pending = conn.Command({"XPENDING", options_.stream, options_.group});
  if (!length.ok()) return length.status();
  if (!pending.ok()) return pending.status();
  const int64_t held = (*pending)->type == REDIS_REPLY_ARRAY && (*pending)->elements > 0 &&
                               (*pending)->element[0]->type == REDIS_REPLY_INTEGER
                           ? (*pending)->element[0]->integer
                           : 0;
  const int64_t undelivered = std::max<int64_t>(0, (*length)->integer - held);
  int64_t room = options_.window - undelivered;

  // New requests, retries that became due (and after a loss, everything due).
  while (room > 0 && !shutdown_) {
    const int batch = static_cast<int>(std::min<int64_t>(room, kSweepBatch));
    auto ids = store_.TakeImagesToEnqueue(handed_again_before_, batch);
    if (!ids.ok()) return ids.status();
    if (Status s = Enqueue(conn, *ids); !s.ok()) return s;
    room -= static_cast<int64_t>(ids->size());
    if (static_cast<int>(ids->size()) < batch) {
      handed_again_before_.reset();  // all handed over again
      break;
    }
  }
  // Nothing undelivered in the stream, yet images handed over long ago are not done: the broker
  // lost them (or their consumer died after acknowledging, which we never do).
  if (room > 0 && undelivered == 0 && !shutdown_) {
    auto ids = store_.TakeImagesToEnqueue(now - options_.lease.count(),
                                          static_cast<int>(std::min<int64_t>(room, kSweepBatch)));
    if (!ids.ok()) return ids.status();
    if (Status s = Enqueue(conn, *ids); !s.ok()) return s;
  }
  return Status::Ok();
}

// If this fails, the images are marked handed over without being in the stream: the next sweep
// finds them stale once a lease has passed (at once, if Redis lost its data).
Status RedisQueue::Enqueue(Connection& conn, const std::vector<int64_t>& image_ids) {
  if (image_ids.empty()) return Status::Ok();
  std::vector<std::vector<std::string>> adds;
  adds.reserve(image_ids.size());
  for (int64_t id : image_ids) {
    adds.push_back({"XADD", options_.stream, "*", "image", std::to_string(id)});
  }
  return conn.Pipeline(adds);
}

}  // namespace imgproc::queue
