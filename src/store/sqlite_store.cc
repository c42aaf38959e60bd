#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "store/request_row.h"

namespace imgproc::store {
namespace {

// The images a worker may take now: queued and due, or leased with the lease expired. Its
// condition is the images_due index's (migration 6), so that index serves it.
constexpr std::string_view kDueImageSelect =
    "SELECT i.id, i.request_id, p.serial_no, i.idx, i.url, i.attempts, "
    "CASE WHEN r.refresh THEN r.created_at END, r.outputs FROM images i "
    "JOIN product_entries p ON p.id = i.product_id "
    "JOIN requests r ON r.request_id = i.request_id "
    "WHERE i.state IN ('queued', 'leased') AND i.due_at <= ?";

// A running request's first due images (parameters: request, now, the broker's handed over
// before, or NULL, twice, and how many), read in order from the images_request_due index.
constexpr std::string_view kDueOfRequest =
    "SELECT id FROM images WHERE request_id = ? AND state IN ('queued', 'leased') "
    "AND due_at <= ? AND (? IS NULL OR enqueued_at IS NULL OR enqueued_at < ?) "
    "ORDER BY due_at, id LIMIT ?";

// Schema versions, applied in order; a database records the highest one it has.
constexpr std::string_view kMigrations[] = {
    R"sql(
CREATE TABLE requests (
  request_id TEXT PRIMARY KEY,
  status TEXT NOT NULL DEFAULT 'pending',
  created_at INTEGER NOT NULL,
  webhook_url TEXT,
  completed_at INTEGER,
  images_total INTEGER NOT NULL,
  images_done INTEGER NOT NULL DEFAULT 0,
  images_failed INTEGER NOT NULL DEFAULT 0,
  -- NULL until there is a webhook to send; then pending|sending|retrying|delivered|failed.
  webhook_state TEXT,
  webhook_attempts INTEGER NOT NULL DEFAULT 0,
  webhook_next_at INTEGER,
  webhook_last_status INTEGER
);
CREATE INDEX requests_webhook_due ON requests(webhook_state, webhook_next_at);
CREATE TABLE product_entries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL REFERENCES requests(request_id),
  position INTEGER NOT NULL,
  serial_no INTEGER NOT NULL,
  product_name TEXT NOT NULL,
  input_urls TEXT NOT NULL,
  output_urls TEXT,
  images_pending INTEGER NOT NULL
);
CREATE INDEX product_entries_request ON product_entries(request_id, position);
-- One row per "http" entry: the durable work queue. A leased row's due_at is its lease expiry.
CREATE TABLE images (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL,
  product_id INTEGER NOT NULL REFERENCES product_entries(id),
  idx INTEGER NOT NULL,
  url TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'queued',
  due_at INTEGER NOT NULL,
  lease_owner TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  output_url TEXT,
  error TEXT
);
CREATE INDEX images_due ON images(state, due_at);
CREATE INDEX images_product ON images(product_id, idx);
)sql",
    // 2: API keys. The digest of the key that created a request; NULL without API keys.
    "ALTER TABLE requests ADD COLUMN owner TEXT;",
    // 3: status reads a request's failed and retrying images without scanning every request's.
    "CREATE INDEX images_request ON images(request_id, state);",
    // 4: per-image sizes for the web page's saving column, and the list of recent requests.
    R"sql(
ALTER TABLE images ADD COLUMN input_bytes INTEGER;
ALTER TABLE images ADD COLUMN output_bytes INTEGER;
CREATE INDEX requests_created ON requests(created_at);
CREATE INDEX requests_owner_created ON requests(owner, created_at);
)sql",
    // 5: brokers (Redis). When the image was last handed to the broker; NULL while it is not.
    "ALTER TABLE images ADD COLUMN enqueued_at INTEGER;",
    // 6: the due images in the order they are taken, so a claim reads the first few entries of
    // an index instead of sorting every due image (16.5 ms per claim at 100k queued); who is
    // charged for a request's images (MAX_QUEUED_IMAGES_PER_CLIENT); the unfinished requests,
    // whose counters give the queue depth without counting images.
    R"sql(
DROP INDEX images_due;
CREATE INDEX images_due ON images(due_at, id) WHERE state IN ('queued', 'leased');
ALTER TABLE requests ADD COLUMN client TEXT;
CREATE INDEX requests_unfinished ON requests(client) WHERE status != 'completed';
)sql",
    // 7: cancelled requests are finished too: the unfinished ones are those pending or processing.
    R"sql(
DROP INDEX requests_unfinished;
CREATE INDEX requests_unfinished ON requests(client) WHERE status IN ('pending', 'processing');
)sql",
    // 8: re-imports. Slots of a request that name an earlier slot's URL wait for it (same_as);
    // outputs reused from the image cache (reused, images_reused); a request's round (one more
    // per retry) and whether it bypasses the cache (refresh); the image cache itself: what a URL
    // answered, and the output stored for some content in an output variant.
    R"sql(
ALTER TABLE requests ADD COLUMN images_reused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN retry_round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN refresh INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN same_as INTEGER;
ALTER TABLE images ADD COLUMN reused INTEGER NOT NULL DEFAULT 0;
CREATE INDEX images_same_as ON images(same_as) WHERE same_as IS NOT NULL;
CREATE TABLE image_sources (
  url TEXT NOT NULL,
  variant TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  etag TEXT,
  last_modified TEXT,
  input_bytes INTEGER NOT NULL,
  checked_at INTEGER NOT NULL,
  PRIMARY KEY (url, variant)
);
CREATE INDEX image_sources_checked ON image_sources(checked_at);
CREATE TABLE image_contents (
  sha256 TEXT NOT NULL,
  variant TEXT NOT NULL,
  output_url TEXT,
  output_bytes INTEGER NOT NULL DEFAULT 0,
  stored_at INTEGER NOT NULL DEFAULT 0,
  owner TEXT,
  claimed_until INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (sha256, variant)
);
CREATE INDEX image_contents_stored ON image_contents(stored_at);
)sql",
    // 9: fair share. A claim reads each running request's first due images and its images in
    // flight from the first index, a few entries per request, whatever the request's size; a
    // broker's sweep counts each request's images handed over and not done from the second (no
    // entries without a broker).
    R"sql(
CREATE INDEX images_request_due ON images(request_id, due_at, id)
  WHERE state IN ('queued', 'leased');
CREATE INDEX images_handed_over ON images(request_id)
  WHERE enqueued_at IS NOT NULL AND state IN ('queued', 'leased');
)sql",
    // 10: output presets. What a request's images become (request::EncodePlan, "" for the seed's
    // JPEG); a done image's variants, and those of the image cache's outputs
    // (request::EncodeVariantOutputs).
    R"sql(
ALTER TABLE requests ADD COLUMN outputs TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN variants TEXT;
ALTER TABLE image_contents ADD COLUMN variants TEXT;
)sql",
};

// The connection's prepared statements by their SQL, kept for its life: the same few dozen run for
// every image, and preparing one (parsing and planning it) costs more than running it.
class StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  ~StatementCache() { Clear(); }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // A statement for `sql`, from the cache or newly prepared (null on failure, `rc` says why).
  sqlite3_stmt* Take(const std::string& sql, int& rc) {
    rc = SQLITE_OK;
    if (auto it = idle_.find(sql); it != idle_.end()) {
      sqlite3_stmt* stmt = it->second;
      idle_.erase(it);
      return stmt;
    }
    sqlite3_stmt* stmt = nullptr;
    rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                            SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    return stmt;
  }

  // Resets `stmt` and keeps it for the next Take(); a second one for the same SQL (taken while
  // the first was in use) is finalised.
  void Give(const std::string& sql, sqlite3_stmt* stmt) {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!idle_.emplace(sql, stmt).second) sqlite3_finalize(stmt);
  }

  void Clear() {
    for (auto& [sql, stmt] : idle_) sqlite3_finalize(stmt);
    idle_.clear();
  }

 private:
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> idle_;
};

// A prepared statement bound positionally, from the connection's cache and back into it on
// destruction.
class Stmt {
 public:
  Stmt(StatementCache& cache, std::string sql) : cache_(cache), sql_(std::move(sql)) {
    stmt_ = cache_.Take(sql_, rc_);
  }
  ~Stmt() {
    if (stmt_ != nullptr) cache_.Give(sql_, stmt_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool prepared() const { return rc_ == SQLITE_OK; }

  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, const std::optional<std::string>& v) {
    if (v) return Bind(i, std::string_view(*v));
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  Stmt& Bind(int i, std::optional<int64_t> v) {
    if (v) return Bind(i, *v);
    sqlite3_bind_null(stmt_, i);
    return *this;
  }

  // Returns true when a row is available; false when done or on error (see ok()).
  bool Step() {
    rc_ = sqlite3_step(stmt_);
    return rc_ == SQLITE_ROW;
  }
  bool ok() const { return rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE; }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col))
             : std::string();
  }
  std::optional<int64_t> OptInt(int col) const {
    if (IsNull(col)) return std::nullopt;
    return Int(col);
  }
  std::optional<std::string> OptText(int col) const {
    if (IsNull(col)) return std::nullopt;
    return Text(col);
  }

 private:
  StatementCache& cache_;
  const std::string sql_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

// A read transaction: every query in it sees the same committed state.
class Snapshot {
 public:
  explicit Snapshot(StatementCache& statements) : statements_(statements) {
    Stmt begin(statements_, "BEGIN");
    begin.Step();
    ok_ = begin.ok();
  }
  ~Snapshot() {
    if (ok_) Stmt(statements_, "ROLLBACK").Step();
  }
  bool ok() const { return ok_; }

 private:
  StatementCache& statements_;
  bool ok_ = false;
};

// SQLite's busy handler, waiting through the store's clock: a connection that finds the file
// locked (by another connection or process) waits and tries again, in SQLite's own steps, for
// up to 5 s in all. Through the Clock, a test sees a store waiting for a lock.
struct BusyWait {
  Clock* clock;
  Clock::TimePoint started;
};

int OnBusy(void* data, int count) {
  auto* wait = static_cast<BusyWait*>(data);
  if (count == 0) wait->started = wait->clock->Now();
  if (wait->clock->Now() - wait->started >= std::chrono::seconds(5)) return 0;
  static constexpr int kStepsMs[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
  const int step = count < static_cast<int>(std::size(kStepsMs)) ? kStepsMs[count] : 100;
  wait->clock->SleepFor(std::chrono::milliseconds(step));
  return 1;
}

// A connection, its statements and the mutex that serialises its use.
struct Connection {
  Connection(sqlite3* db, Clock& clock) : db(db), statements(db), busy{&clock, {}} {
    sqlite3_busy_handler(db, OnBusy, &busy);
  }
  ~Connection() {
    statements.Clear();
    sqlite3_close_v2(db);
  }
  Status Error(const std::string& what) const {
    return Internal("sqlite: " + what + ": " + sqlite3_errmsg(db));
  }

  Mutex mu;
  sqlite3* const db;
  StatementCache statements GUARDED_BY(mu);
  BusyWait busy;  // used by SQLite within a statement, under mu
};

// The API's reads (status, the request list, the queue depth) through a connection of their own:
// WAL lets it read while the store's own connection writes. With one connection a status poll
// waited behind the pipeline's writes, which take that connection back to back (a fresh
// 400-image request's claims and results kept polls waiting 13-90 ms for its mutex).
class Reads {
 public:
  explicit Reads(Connection& c) : c_(c) {}

  Result<request::RequestView> GetRequestPage(const std::string& request_id,
                                              const request::ProductRange& range) EXCLUDES(c_.mu) {
    MutexLock lock(&c_.mu);
    StatementCache& statements = c_.statements;
    Snapshot snapshot(statements);
    if (!snapshot.ok()) return c_.Error("begin");
    Stmt q(statements,
           "SELECT status, created_at, webhook_url, images_total, images_done, images_failed, "
           "webhook_state, webhook_attempts, webhook_last_status, owner, images_reused, "
           "retry_round, outputs FROM requests WHERE request_id = ?");
    q.Bind(1, request_id);
    if (!q.Step()) {
      if (!q.ok()) return c_.Error("read request");
      return NotFound("Request ID not found");
    }
    request::RequestView view = RequestViewOfRow(request_id, q);

    Stmt p(statements, std::string(kProductPage));
    p.Bind(1, request_id).Bind(2, range.offset).Bind(3, LimitOf(range));
    std::vector<int64_t> product_ids;
    while (p.Step()) {
      product_ids.push_back(p.Int(0));
      view.products.push_back({p.Int(1), p.Text(2), p.Text(3), p.OptText(4), {}, {}, {}});
    }
    if (!p.ok()) return c_.Error("read products");
    view.products_total = static_cast<int64_t>(view.products.size());
    if (range.offset > 0 || range.limit) {
      Stmt count(statements, std::string(kProductCount));
      count.Bind(1, request_id);
      if (!count.Step()) return c_.Error("count products");
      view.products_total = count.Int(0);
    }
    if (product_ids.empty()) return view;

    Stmt i(statements, std::string(kShownImages));
    i.Bind(1, request_id).Bind(2, range.offset).Bind(3, LastPosition(range));
    std::vector<request::ImageRow> rows;
    while (i.Step()) {
      rows.push_back({i.Int(0), static_cast<int>(i.Int(1)), i.Text(2),
                      request::ParseImageState(i.Text(3)), i.OptText(4), static_cast<int>(i.Int(5)),
                      i.OptInt(6), i.OptInt(7), i.Int(8) != 0, i.OptText(9)});
    }
    if (!i.ok()) return c_.Error("read images");
    request::AttachImages(product_ids, rows, view.products);
    return view;
  }

  Result<std::vector<request::RequestSummary>> ListRequests(const std::optional<std::string>& owner,
                                                            int limit) EXCLUDES(c_.mu) {
    MutexLock lock(&c_.mu);
    Stmt q(c_.statements, owner
                              ? "SELECT request_id, status, created_at, images_total, images_done, "
                                "images_failed, images_reused FROM requests WHERE owner = ? "
                                "ORDER BY created_at DESC, request_id DESC LIMIT ?"
                              : "SELECT request_id, status, created_at, images_total, images_done, "
                                "images_failed, images_reused FROM requests "
                                "ORDER BY created_at DESC, request_id DESC LIMIT ?");
    if (owner) {
      q.Bind(1, *owner).Bind(2, static_cast<int64_t>(limit));
    } else {
      q.Bind(1, static_cast<int64_t>(limit));
    }
    std::vector<request::RequestSummary> out;
    while (q.Step()) {
      out.push_back({q.Text(0), request::ParseRequestStatus(q.Text(1)), q.Int(2),
                     static_cast<int>(q.Int(3)), static_cast<int>(q.Int(4)),
                     static_cast<int>(q.Int(5)), static_cast<int>(q.Int(6))});
    }
    if (!q.ok()) return c_.Error("list requests");
    return out;
  }

  Result<std::vector<bool>> HoldLeases(const std::vector<std::pair<int64_t, std::string>>& leases)
      EXCLUDES(c_.mu) {
    MutexLock lock(&c_.mu);
    Stmt q(c_.statements,
           "SELECT 1 FROM images WHERE id = ? AND state = 'leased' AND lease_owner = ?");
    std::vector<bool> held;
    for (const auto& [image_id, owner] : leases) {
      q.Bind(1, image_id).Bind(2, owner);
      held.push_back(q.Step());
      if (!q.ok()) return c_.Error("read leases");
      q.Reset();
    }
    return held;
  }

  Result<std::optional<request::CachedSource>> FindSource(const std::string& url,
                                                          const std::string& variant)
      EXCLUDES(c_.mu) {
    MutexLock lock(&c_.mu);
    Stmt q(c_.statements, std::string(kFindSource));
    q.Bind(1, url).Bind(2, variant);
    if (!q.Step()) {
      if (!q.ok()) return c_.Error("read image cache");
      return std::optional<request::CachedSource>();
    }
    return std::optional<request::CachedSource>(CachedSourceOfRow(q));
  }

  Result<int64_t> RequestRound(const std::string& request_id) EXCLUDES(c_.mu) {
    MutexLock lock(&c_.mu);
    Stmt q(c_.statements, "SELECT retry_round FROM requests WHERE request_id = ?");
    q.Bind(1, request_id);
    if (!q.Step()) {
      if (!q.ok()) return c_.Error("read request round");
      return NotFound("Request ID not found");
    }
    return q.Int(0);
  }

  Result<int64_t> CountUnfinishedImages() EXCLUDES(c_.mu) {
    MutexLock lock(&c_.mu);
    Stmt q(c_.statements,
           "SELECT COALESCE(SUM(images_total - images_done - images_failed), 0) FROM requests "
           "WHERE status IN ('pending', 'processing')");
    if (!q.Step()) return c_.Error("count unfinished images");
    return q.Int(0);
  }

 private:
  Connection& c_;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(sqlite3* db, Clock& clock) : writer_(db, clock), clock_(clock) {}
  ~SqliteStore() override {
    reads_.reset();
    reader_.reset();
  }

  // Opens the connection for reads, on the file the writer has migrated.
  Status OpenReader(const std::string& path) {
    if (path.empty() || path == ":memory:") {  // a database private to the writer's connection
      reads_ = std::make_unique<Reads>(writer_);
      return Status::Ok();
    }
    sqlite3* db = nullptr;
    const int rc =
        sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      const std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close_v2(db);
      return Internal("cannot open database '" + path + "' for reading: " + msg);
    }
    reader_ = std::make_unique<Connection>(db, clock_);
    reads_ = std::make_unique<Reads>(*reader_);
    return Status::Ok();
  }

  Status Migrate() EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    if (Status s = Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
        !s.ok()) {
      return s;
    }
    Stmt q(writer_.statements, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (!q.prepared() || !q.Step()) return writer_.Error("read schema version");
    const int64_t have = q.Int(0);
    q.Reset();
    const int64_t want = static_cast<int64_t>(std::size(kMigrations));
    if (have > want) {
      return Internal("database schema version " + std::to_string(have) +
                      " is newer than this imgproc (" + std::to_string(want) + ")");
    }
    for (int64_t v = have; v < want; ++v) {
      Transaction tx(this);
      if (!tx.ok()) return tx.status();
      if (Status s = Exec(std::string(kMigrations[v])); !s.ok()) return s;
      Stmt ins(writer_.statements, "INSERT INTO schema_version (version) VALUES (?)");
      ins.Bind(1, v + 1).Step();
      if (!ins.ok()) return writer_.Error("record schema version");
      if (Status s = tx.Commit(); !s.ok()) return s;
    }
    return Status::Ok();
  }

  Status CreateRequest(const NewRequest& request) override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    StatementCache& statements = writer_.statements;
    const Millis now = clock_.WallMillis();
    const request::RequestPlan plan =
        request::PlanRequest(request.products, request.webhook_url.has_value(), now);
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    if (request.max_client_images > 0 && plan.images_total > 0) {
      Stmt queued(statements,
                  "SELECT COALESCE(SUM(images_total - images_done - images_failed), 0) "
                  "FROM requests WHERE client = ? AND status IN ('pending', 'processing')");
      queued.Bind(1, request.client);
      if (!queued.Step()) return writer_.Error("count the client's images");
      const int64_t have = queued.Int(0);
      if (!request::FitsClientQueue(have, plan.images_total, request.max_client_images)) {
        return ResourceExhausted(
            request::ClientQueueMessage(have, plan.images_total, request.max_client_images));
      }
    }
    Stmt req(statements,
             "INSERT INTO requests (request_id, status, created_at, webhook_url, images_total, "
             "completed_at, webhook_state, webhook_next_at, owner, client, refresh, outputs) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    req.Bind(1, request.request_id)
        .Bind(2, request::ToString(plan.status))
        .Bind(3, now)
        .Bind(4, request.webhook_url)
        .Bind(5, plan.images_total)
        .Bind(6, plan.completed_at)
        .Bind(7, plan.webhook_due ? std::optional<std::string>(request::kWebhookPending)
                                  : std::nullopt)
        .Bind(8, plan.webhook_due)
        .Bind(9, request.owner)
        .Bind(10, request.client)
        .Bind(11, int64_t{request.refresh})
        .Bind(12, request.outputs)
        .Step();
    if (!req.ok()) return writer_.Error("insert request");

    Stmt product(statements,
                 "INSERT INTO product_entries (request_id, position, serial_no, product_name, "
                 "input_urls, output_urls, images_pending) VALUES (?, ?, ?, ?, ?, ?, ?)");
    Stmt image(statements,
               "INSERT INTO images (request_id, product_id, idx, url, due_at, state, same_as) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)");
    std::map<std::pair<size_t, int>, int64_t> first_ids;  // the first slot of each URL: its id
    for (size_t pos = 0; pos < plan.products.size(); ++pos) {
      const request::ProductPlan& p = plan.products[pos];
      const request::NewProduct& in = request.products[pos];
      product.Bind(1, request.request_id)
          .Bind(2, static_cast<int64_t>(pos))
          .Bind(3, in.serial_no)
          .Bind(4, in.name)
          .Bind(5, p.input_urls)
          .Bind(6, p.output_urls)
          .Bind(7, static_cast<int64_t>(p.image_indices.size()))
          .Step();
      if (!product.ok()) return writer_.Error("insert product");
      product.Reset();
      const int64_t product_id = sqlite3_last_insert_rowid(writer_.db);
      for (size_t k = 0; k < p.image_indices.size(); ++k) {
        const int i = p.image_indices[k];
        const std::optional<request::SlotRef>& same_as = p.same_as[k];
        image.Bind(1, request.request_id)
            .Bind(2, product_id)
            .Bind(3, int64_t{i})
            .Bind(4, in.entries[static_cast<size_t>(i)])
            .Bind(5, now)
            .Bind(6, request::ToString(same_as ? request::ImageState::kWaiting
                                               : request::ImageState::kQueued))
            .Bind(7, same_as
                         ? std::optional<int64_t>(first_ids.at({same_as->product, same_as->index}))
                         : std::nullopt)
            .Step();
        if (!image.ok()) return writer_.Error("insert image");
        image.Reset();
        if (!same_as) first_ids[{pos, i}] = sqlite3_last_insert_rowid(writer_.db);
      }
    }
    return tx.Commit();
  }

  Result<request::RequestView> GetRequestPage(const std::string& request_id,
                                              const request::ProductRange& range) override {
    return reads_->GetRequestPage(request_id, range);
  }

  Result<std::vector<request::RequestSummary>> ListRequests(const std::optional<std::string>& owner,
                                                            int limit) override {
    return reads_->ListRequests(owner, limit);
  }

  Result<int64_t> CountUnfinishedImages() override { return reads_->CountUnfinishedImages(); }

  Result<int64_t> RequestRound(const std::string& request_id) override {
    return reads_->RequestRound(request_id);
  }

  Result<std::vector<std::vector<ImageTask>>> ClaimImagesFor(const std::vector<ImageClaim>& claims,
                                                             Millis lease_ms) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    int wanted = 0;
    for (const ImageClaim& claim : claims) wanted += std::max(claim.max, 0);
    auto running = DueByRequest(now, wanted, /*handed_over_before=*/std::nullopt);
    if (!running.ok()) return running.status();
    auto tasks = DueTasks(request::FairPick(*running, wanted), now);
    if (!tasks.ok()) return tasks.status();
    std::vector<std::vector<ImageTask>> claimed(claims.size());
    size_t who = 0;  // the claim being served: each takes its max, in turn
    for (ImageTask& task : *tasks) {
      while (static_cast<int>(claimed[who].size()) >= claims[who].max) ++who;
      claimed[who].push_back(std::move(task));
    }
    for (size_t i = 0; i < claims.size(); ++i) {
      if (Status s = Lease(claimed[i], claims[i].owner, now + lease_ms); !s.ok()) return s;
    }
    if (Status s = tx.Commit(); !s.ok()) return s;
    return claimed;
  }

  Result<std::vector<ImageTask>> ClaimImagesById(const std::vector<int64_t>& image_ids,
                                                 const std::string& owner, Millis lease_ms) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    const std::set<int64_t> distinct(image_ids.begin(), image_ids.end());
    auto tasks = DueTasks({distinct.begin(), distinct.end()}, now);
    if (!tasks.ok()) return tasks.status();
    if (Status s = Lease(*tasks, owner, now + lease_ms); !s.ok()) return s;
    if (Status s = tx.Commit(); !s.ok()) return s;
    return tasks;
  }

  Result<int> ExtendLeases(const std::string& owner_prefix, const std::vector<int64_t>& image_ids,
                           Millis lease_ms) override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    Stmt u(writer_.statements,
           "UPDATE images SET due_at = ? WHERE id = ? AND state = 'leased' "
           "AND substr(lease_owner, 1, length(?)) = ?");
    const Millis due = clock_.WallMillis() + lease_ms;
    int extended = 0;
    for (int64_t id : std::set<int64_t>(image_ids.begin(), image_ids.end())) {
      u.Bind(1, due).Bind(2, id).Bind(3, owner_prefix).Bind(4, owner_prefix).Step();
      if (!u.ok()) return writer_.Error("extend leases");
      extended += sqlite3_changes(writer_.db);
      u.Reset();
    }
    if (Status s = tx.Commit(); !s.ok()) return s;
    return extended;
  }

  Result<std::vector<Recorded>> RecordImages(const std::vector<ImageResult>& results) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    std::vector<std::optional<std::string>> taken;  // per result: its request, when taken
    std::map<int64_t, int64_t> per_product;         // final images per product
    std::map<std::string, request::ImageTally> per_request;
    for (const ImageResult& result : results) {
      auto one = RecordOne(result, per_product, per_request);
      if (!one.ok()) return one.status();
      taken.push_back(std::move(*one));
    }
    std::set<std::string> webhook_due;  // requests completed with a webhook to send
    for (const auto& [id, n] : per_product) {
      if (Status s = ImagesFinal(id, n); !s.ok()) return s;
    }
    for (const auto& [request_id, tally] : per_request) {
      Stmt count(writer_.statements, std::string(kCountFinalImages));
      count.Bind(1, tally.done).Bind(2, tally.failed).Bind(3, tally.reused).Bind(4, request_id);
      if (!count.Step()) return writer_.Error("update request");
      const request::Completion completion =
          request::AfterFinalImage(count.Int(0), count.Int(1), !count.IsNull(2), now);
      count.Step();
      if (!completion.completed) continue;
      Stmt done(writer_.statements, std::string(kCompleteRequest));
      done.Bind(1, now)
          .Bind(2, completion.webhook_due ? std::optional<std::string>(request::kWebhookPending)
                                          : std::nullopt)
          .Bind(3, completion.webhook_due)
          .Bind(4, request_id)
          .Step();
      if (!done.ok()) return writer_.Error("complete request");
      if (completion.webhook_due) webhook_due.insert(request_id);
    }
    if (Status s = tx.Commit(); !s.ok()) return s;
    return RecordedOf(taken, webhook_due);
  }

  Result<request::CancelVerdict> CancelRequest(const std::string& request_id,
                                               const std::optional<std::string>& owner) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    StatementCache& statements = writer_.statements;
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    Stmt q(statements, "SELECT status, webhook_url, owner FROM requests WHERE request_id = ?");
    q.Bind(1, request_id);
    if (!q.Step()) {
      if (!q.ok()) return writer_.Error("read request");
      return NotFound("Request ID not found");
    }
    if (owner && q.OptText(2) != owner) return NotFound("Request ID not found");
    const request::CancelVerdict verdict =
        request::DecideCancel(request::ParseRequestStatus(q.Text(0)));
    const bool has_webhook = !q.IsNull(1);
    q.Reset();
    if (verdict != request::CancelVerdict::kCancel) return verdict;  // nothing written

    Stmt images(
        statements,
        "UPDATE images SET state = 'failed', lease_owner = NULL, error = ?, "
        "enqueued_at = NULL WHERE request_id = ? AND state IN ('queued', 'leased', 'waiting') "
        "RETURNING product_id");
    images.Bind(1, std::string(request::kCancelledError)).Bind(2, request_id);
    std::map<int64_t, int64_t> per_product;
    int64_t cancelled = 0;
    while (images.Step()) {
      ++per_product[images.Int(0)];
      ++cancelled;
    }
    if (!images.ok()) return writer_.Error("cancel images");
    for (const auto& [product_id, n] : per_product) {
      if (Status s = ImagesFinal(product_id, n); !s.ok()) return s;
    }
    Stmt done(statements,
              "UPDATE requests SET status = 'cancelled', images_failed = images_failed + ?, "
              "completed_at = ?, webhook_state = ?, webhook_next_at = ? WHERE request_id = ?");
    done.Bind(1, cancelled)
        .Bind(2, now)
        .Bind(3, has_webhook ? std::optional<std::string>(request::kWebhookPending) : std::nullopt)
        .Bind(4, has_webhook ? std::optional<Millis>(now) : std::nullopt)
        .Bind(5, request_id)
        .Step();
    if (!done.ok()) return writer_.Error("cancel request");
    if (Status s = tx.Commit(); !s.ok()) return s;
    return verdict;
  }

  Result<request::RetryVerdict> RetryRequest(const std::string& request_id,
                                             const std::optional<std::string>& owner) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    StatementCache& statements = writer_.statements;
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    Stmt q(statements, "SELECT status, images_failed, owner FROM requests WHERE request_id = ?");
    q.Bind(1, request_id);
    if (!q.Step()) {
      if (!q.ok()) return writer_.Error("read request");
      return NotFound("Request ID not found");
    }
    if (owner && q.OptText(2) != owner) return NotFound("Request ID not found");
    const request::RetryVerdict verdict =
        request::DecideRetry(request::ParseRequestStatus(q.Text(0)), q.Int(1));
    q.Reset();
    if (verdict != request::RetryVerdict::kRetry) return verdict;  // nothing written

    Stmt images(
        statements,
        "UPDATE images SET state = CASE WHEN same_as IS NULL THEN 'queued' ELSE 'waiting' "
        "END, lease_owner = NULL, due_at = ?, attempts = 0, output_url = NULL, "
        "error = NULL, input_bytes = NULL, output_bytes = NULL, reused = 0, variants = NULL, "
        "enqueued_at = NULL WHERE request_id = ? AND state = 'failed' "
        "RETURNING product_id");
    images.Bind(1, now).Bind(2, request_id);
    std::map<int64_t, int64_t> per_product;
    int64_t retried = 0;
    while (images.Step()) {
      ++per_product[images.Int(0)];
      ++retried;
    }
    if (!images.ok()) return writer_.Error("retry images");
    Stmt product(statements,
                 "UPDATE product_entries SET images_pending = images_pending + ?, "
                 "output_urls = NULL WHERE id = ?");
    for (const auto& [product_id, n] : per_product) {
      product.Bind(1, n).Bind(2, product_id).Step();
      if (!product.ok()) return writer_.Error("retry product");
      product.Reset();
    }
    Stmt again(statements, std::string(kRetryRequestUpdate));
    again.Bind(1, retried).Bind(2, request_id).Step();
    if (!again.ok()) return writer_.Error("retry request");
    if (Status s = tx.Commit(); !s.ok()) return s;
    return verdict;
  }

  Result<std::vector<bool>> HoldLeases(
      const std::vector<std::pair<int64_t, std::string>>& leases) override {
    return reads_->HoldLeases(leases);
  }

  Result<std::optional<request::CachedSource>> FindSource(const std::string& url,
                                                          const std::string& variant) override {
    return reads_->FindSource(url, variant);
  }

  Status RememberSource(const std::string& url, const std::string& variant,
                        const std::string& sha256, const std::optional<std::string>& etag,
                        const std::optional<std::string>& last_modified,
                        int64_t input_bytes) override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Stmt u(writer_.statements, std::string(kRememberSource));
    u.Bind(1, url)
        .Bind(2, variant)
        .Bind(3, sha256)
        .Bind(4, etag)
        .Bind(5, last_modified)
        .Bind(6, input_bytes)
        .Bind(7, clock_.WallMillis())
        .Step();
    return u.ok() ? Status::Ok() : writer_.Error("remember image source");
  }

  Result<ContentClaim> ClaimContent(const std::string& sha256, const std::string& variant,
                                    const std::string& owner, Millis stored_since,
                                    Millis lease_ms) override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    Stmt q(writer_.statements, std::string(kContentRow));
    q.Bind(1, sha256).Bind(2, variant);
    std::optional<request::ContentRow> row;
    std::optional<std::string> variants;
    if (q.Step()) {
      row = request::ContentRow{q.OptText(0), q.Int(1), q.Int(2), q.OptText(3), q.Int(4)};
      variants = q.OptText(5);
    }
    if (!q.ok()) return writer_.Error("read image content");
    q.Reset();
    ContentClaim claim;
    claim.verdict = request::DecideContent(row, owner, now, stored_since);
    if (claim.verdict == request::ContentVerdict::kReuse) {
      claim.output_url = *row->output_url;
      claim.output_bytes = row->output_bytes;
      claim.variants = request::DecodeVariantOutputs(variants.value_or(""));
    } else if (claim.verdict == request::ContentVerdict::kStore) {
      Stmt u(writer_.statements, std::string(kClaimContent));
      u.Bind(1, sha256).Bind(2, variant).Bind(3, owner).Bind(4, now + lease_ms).Step();
      if (!u.ok()) return writer_.Error("claim image content");
    }
    if (Status s = tx.Commit(); !s.ok()) return s;
    return claim;
  }

  Status StoreContent(const std::string& sha256, const std::string& variant,
                      const std::string& owner, const std::string& output_url, int64_t output_bytes,
                      const std::vector<request::VariantOutput>& variants) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Stmt u(writer_.statements, std::string(kStoreContent));
    u.Bind(1, output_url)
        .Bind(2, output_bytes)
        .Bind(3, request::EncodeVariantOutputs(variants))
        .Bind(4, clock_.WallMillis())
        .Bind(5, sha256)
        .Bind(6, variant)
        .Bind(7, owner)
        .Step();
    return u.ok() ? Status::Ok() : writer_.Error("store image content");
  }

  Status ReleaseContent(const std::string& sha256, const std::string& variant,
                        const std::string& owner) override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Stmt u(writer_.statements, std::string(kReleaseContent));
    u.Bind(1, sha256).Bind(2, variant).Bind(3, owner).Step();
    return u.ok() ? Status::Ok() : writer_.Error("release image content");
  }

  Status ForgetContent(const std::string& sha256, const std::string& variant) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Stmt u(writer_.statements, std::string(kForgetContent));
    u.Bind(1, sha256).Bind(2, variant).Step();
    return u.ok() ? Status::Ok() : writer_.Error("forget image content");
  }

  Result<int64_t> PurgeCache(Millis before) override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    Stmt sources(writer_.statements, std::string(kPurgeSources));
    sources.Bind(1, before).Step();
    if (!sources.ok()) return writer_.Error("purge image cache");
    int64_t purged = sqlite3_changes(writer_.db);
    Stmt contents(writer_.statements, std::string(kPurgeContents));
    contents.Bind(1, before).Bind(2, clock_.WallMillis()).Step();
    if (!contents.ok()) return writer_.Error("purge image cache");
    purged += sqlite3_changes(writer_.db);
    if (Status s = tx.Commit(); !s.ok()) return s;
    return purged;
  }

  Result<int> ReleaseLeases() override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    Stmt images(writer_.statements,
                "UPDATE images SET state = 'queued', lease_owner = NULL, due_at = ?, "
                "enqueued_at = NULL WHERE state = 'leased'");
    images.Bind(1, now).Step();
    if (!images.ok()) return writer_.Error("release image leases");
    const int released = sqlite3_changes(writer_.db);
    // A webhook being sent is due again at once (ClaimWebhooks takes an expired one).
    Stmt hooks(writer_.statements,
               "UPDATE requests SET webhook_next_at = ? WHERE webhook_state = 'sending'");
    hooks.Bind(1, now).Step();
    if (!hooks.ok()) return writer_.Error("release webhook leases");
    if (Status s = tx.Commit(); !s.ok()) return s;
    return released;
  }

  Result<std::vector<int64_t>> TakeImagesToEnqueue(std::optional<Millis> enqueued_before,
                                                   int max) override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    auto running =
        DueByRequest(now, max, enqueued_before.value_or(std::numeric_limits<int64_t>::min()));
    if (!running.ok()) return running.status();
    std::vector<int64_t> ids = request::FairPick(*running, max);
    Stmt u(writer_.statements, "UPDATE images SET enqueued_at = ? WHERE id = ?");
    for (int64_t id : ids) {
      u.Bind(1, now).Bind(2, id).Step();
      if (!u.ok()) return writer_.Error("mark enqueued");
      u.Reset();
    }
    if (Status s = tx.Commit(); !s.ok()) return s;
    return ids;
  }

  Result<std::optional<Millis>> NextImageDue() override EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Stmt q(writer_.statements,
           "SELECT MIN(due_at) FROM images WHERE state IN ('queued', 'leased')");
    if (!q.Step()) return writer_.Error("next image due");
    if (q.IsNull(0)) return std::optional<Millis>();
    return std::optional<Millis>(q.Int(0));
  }

  Result<std::vector<WebhookJob>> ClaimWebhooks(int max, Millis lease_ms) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    const Millis now = clock_.WallMillis();
    Transaction tx(this);
    if (!tx.ok()) return tx.status();
    Stmt q(writer_.statements,
           "SELECT request_id, webhook_url, webhook_attempts, retry_round FROM requests "
           "WHERE webhook_state IN ('pending', 'retrying', 'sending') AND webhook_next_at <= ? "
           "ORDER BY webhook_next_at LIMIT ?");
    q.Bind(1, now).Bind(2, static_cast<int64_t>(max));
    std::vector<WebhookJob> jobs;
    while (q.Step()) jobs.push_back({q.Text(0), q.Text(1), static_cast<int>(q.Int(2)), q.Int(3)});
    if (!q.ok()) return writer_.Error("claim webhooks");
    Stmt lease(writer_.statements,
               "UPDATE requests SET webhook_state = 'sending', webhook_next_at = ? "
               "WHERE request_id = ?");
    for (const auto& job : jobs) {
      lease.Bind(1, now + lease_ms).Bind(2, job.request_id).Step();
      if (!lease.ok()) return writer_.Error("lease webhook");
      lease.Reset();
    }
    if (Status s = tx.Commit(); !s.ok()) return s;
    return jobs;
  }

  Status RecordWebhook(const std::string& request_id, int64_t round, bool delivered,
                       std::optional<int> http_status, std::optional<Millis> retry_at) override
      EXCLUDES(writer_.mu) {
    MutexLock lock(&writer_.mu);
    Stmt u(writer_.statements,
           "UPDATE requests SET webhook_state = ?, webhook_attempts = webhook_attempts + 1, "
           "webhook_last_status = ?, webhook_next_at = ? WHERE request_id = ? AND retry_round = ?");
    u.Bind(1, request::WebhookStateAfterAttempt(delivered, retry_at.has_value()))
        .Bind(2, http_status ? std::optional<int64_t>(*http_status) : std::nullopt)
        .Bind(3, retry_at)
        .Bind(4, request_id)
        .Bind(5, round)
        .Step();
    return u.ok() ? Status::Ok() : writer_.Error("record webhook");
  }

 private:
  // BEGIN IMMEDIATE ... COMMIT on the writer, rolled back unless committed.
  class Transaction {
   public:
    explicit Transaction(SqliteStore* store) : store_(store) {
      status_ = store_->Run("BEGIN IMMEDIATE");
    }
    ~Transaction() {
      if (status_.ok() && !committed_) (void)store_->Run("ROLLBACK");
    }
    bool ok() const { return status_.ok(); }
    const Status& status() const { return status_; }
    // A COMMIT that fails leaves the transaction open: it is rolled back (by the destructor),
    // so the connection is not left inside it.
    Status Commit() {
      Status s = store_->Run("COMMIT");
      committed_ = s.ok();
      return s;
    }

   private:
    SqliteStore* store_;
    Status status_;
    bool committed_ = false;
  };

  // The running requests, oldest first, each with its images in flight and its first `max` due
  // images (request::FairPick's input). With `handed_over_before`, for a broker: only images not
  // handed over since then, and those handed over and not done count as in flight (what waits
  // in the broker's line is part of the share).
  Result<std::vector<request::DueImages>> DueByRequest(Millis now, int max,
                                                       std::optional<Millis> handed_over_before)
      REQUIRES(writer_.mu) {
    Stmt running(writer_.statements,
                 "SELECT request_id FROM requests WHERE status IN ('pending', 'processing') "
                 "ORDER BY created_at, request_id");
    // Each count as its partial index's condition, so that index serves it.
    Stmt in_flight(writer_.statements,
                   handed_over_before
                       ? "SELECT count(*) FROM images WHERE request_id = ? "
                         "AND enqueued_at IS NOT NULL AND state IN ('queued', 'leased')"
                       : "SELECT count(*) FROM images WHERE request_id = ? "
                         "AND state IN ('queued', 'leased') AND due_at > ? AND state = 'leased'");
    Stmt due(writer_.statements, SqliteDueOfRequestQuery());
    std::vector<request::DueImages> requests;
    while (running.Step()) {
      const std::string id = running.Text(0);
      request::DueImages r;
      due.Bind(1, id).Bind(2, now).Bind(3, handed_over_before).Bind(4, handed_over_before);
      due.Bind(5, int64_t{max});
      while (due.Step()) r.due.push_back(due.Int(0));
      if (!due.ok()) return writer_.Error("due images");
      due.Reset();
      if (r.due.empty()) continue;
      in_flight.Bind(1, id);
      if (!handed_over_before) in_flight.Bind(2, now);
      if (!in_flight.Step()) return writer_.Error("images in flight");
      r.in_flight = in_flight.Int(0);
      in_flight.Reset();
      requests.push_back(std::move(r));
    }
    if (!running.ok()) return writer_.Error("running requests");
    return requests;
  }

  // The tasks of those of `image_ids` that are due, in the order given.
  Result<std::vector<ImageTask>> DueTasks(const std::vector<int64_t>& image_ids, Millis now)
      REQUIRES(writer_.mu) {
    Stmt q(writer_.statements, std::string(kDueImageSelect) + " AND i.id = ?");
    std::vector<ImageTask> tasks;
    for (int64_t id : image_ids) {
      q.Bind(1, now).Bind(2, id);
      if (q.Step()) tasks.push_back(TaskFrom(q));
      if (!q.ok()) return writer_.Error("claim images");
      q.Reset();
    }
    return tasks;
  }

  static ImageTask TaskFrom(const Stmt& q) {
    return {q.Int(0),  q.Text(1),
            q.Int(2),  static_cast<int>(q.Int(3)),
            q.Text(4), static_cast<int>(q.Int(5)) + 1,
            {},        q.OptInt(6),
            q.Text(7)};
  }

  // Leases `tasks` to `owner` until `until`, counting an attempt, and marks their requests started.
  Status Lease(const std::vector<ImageTask>& tasks, const std::string& owner, Millis until)
      REQUIRES(writer_.mu) {
    Stmt lease(writer_.statements,
               "UPDATE images SET state = 'leased', lease_owner = ?, due_at = ?, "
               "attempts = attempts + 1 WHERE id = ?");
    Stmt start(writer_.statements,
               "UPDATE requests SET status = 'processing' "
               "WHERE request_id = ? AND status = 'pending'");
    for (const auto& task : tasks) {
      lease.Bind(1, owner).Bind(2, until).Bind(3, task.image_id).Step();
      if (!lease.ok()) return writer_.Error("lease image");
      lease.Reset();
      start.Bind(1, task.request_id).Step();
      if (!start.ok()) return writer_.Error("start request");
      start.Reset();
    }
    return Status::Ok();
  }

  // One outcome of RecordImages: its image's row and the slots waiting on it; the products and
  // requests they finish are left to the caller, counted in `per_product` and `per_request`.
  // Returns the image's request, or nothing when the lease was lost and the outcome ignored.
  Result<std::optional<std::string>> RecordOne(
      const ImageResult& result, std::map<int64_t, int64_t>& per_product,
      std::map<std::string, request::ImageTally>& per_request) REQUIRES(writer_.mu) {
    StatementCache& statements = writer_.statements;
    Stmt q(statements,
           "SELECT request_id, product_id FROM images "
           "WHERE id = ? AND state = 'leased' AND lease_owner = ?");
    q.Bind(1, result.image_id).Bind(2, result.owner);
    if (!q.Step()) {
      if (!q.ok()) return writer_.Error("read image");
      // The lease was lost: another worker owns (or finished) this image.
      return std::optional<std::string>();
    }
    const std::string request_id = q.Text(0);
    const int64_t product_id = q.Int(1);
    q.Reset();

    const request::ImageRecord record = request::RecordOf(result.outcome);
    Stmt u(statements,
           "UPDATE images SET state = ?, lease_owner = NULL, due_at = COALESCE(?, due_at), "
           "output_url = ?, error = ?, input_bytes = ?, output_bytes = ?, reused = ?, "
           "variants = ?, enqueued_at = CASE WHEN ? THEN enqueued_at ELSE NULL END WHERE id = ?");
    u.Bind(1, request::ToString(record.state))
        .Bind(2, record.due_at)
        .Bind(3, record.output_url)
        .Bind(4, record.error)
        .Bind(5, record.input_bytes)
        .Bind(6, record.output_bytes)
        .Bind(7, int64_t{record.reused})
        .Bind(8, record.variants)
        .Bind(9, int64_t{record.final()})
        .Bind(10, result.image_id)
        .Step();
    if (!u.ok()) return writer_.Error("record image");
    if (!record.final()) return std::optional<std::string>(request_id);

    // The slots waiting on this one take its outcome (a done one's output is reused by them).
    Stmt followers(statements,
                   "UPDATE images SET state = ?, output_url = ?, error = ?, input_bytes = ?, "
                   "output_bytes = ?, reused = ?, variants = ?, attempts = (SELECT attempts "
                   "FROM images WHERE id = ?) WHERE same_as = ? AND state = 'waiting' "
                   "RETURNING product_id");
    followers.Bind(1, request::ToString(record.state))
        .Bind(2, record.output_url)
        .Bind(3, record.error)
        .Bind(4, record.input_bytes)
        .Bind(5, record.output_bytes)
        .Bind(6, int64_t{record.state == request::ImageState::kDone})
        .Bind(7, record.variants)
        .Bind(8, result.image_id)
        .Bind(9, result.image_id);
    ++per_product[product_id];
    int64_t finals = 1;
    while (followers.Step()) {
      ++per_product[followers.Int(0)];
      ++finals;
    }
    if (!followers.ok()) return writer_.Error("record waiting images");
    per_request[request_id] += request::TallyOf(result.outcome, finals);
    return std::optional<std::string>(request_id);
  }

  // `n` more images of a product are final: the last one composes its outputs.
  Status ImagesFinal(int64_t product_id, int64_t n) REQUIRES(writer_.mu) {
    Stmt dec(writer_.statements,
             "UPDATE product_entries SET images_pending = images_pending - ? WHERE id = ? "
             "RETURNING images_pending, input_urls");
    dec.Bind(1, n).Bind(2, product_id);
    if (!dec.Step()) return writer_.Error("update product");
    const int64_t pending = dec.Int(0);
    const std::string input_urls = dec.Text(1);
    dec.Step();  // finish the statement so its write completes
    return pending == 0 ? FinishProduct(product_id, input_urls) : Status::Ok();
  }

  // The last image of a product became final: its outputs (request::ComposeOutputs).
  Status FinishProduct(int64_t product_id, const std::string& input_urls) REQUIRES(writer_.mu) {
    Stmt q(writer_.statements, "SELECT idx, output_url FROM images WHERE product_id = ?");
    q.Bind(1, product_id);
    std::vector<request::FinalImage> images;
    while (q.Step()) images.push_back({static_cast<int>(q.Int(0)), q.OptText(1)});
    if (!q.ok()) return writer_.Error("read product images");
    Stmt u(writer_.statements, "UPDATE product_entries SET output_urls = ? WHERE id = ?");
    u.Bind(1, request::ComposeOutputs(input_urls, images)).Bind(2, product_id).Step();
    return u.ok() ? Status::Ok() : writer_.Error("write output urls");
  }

  // One statement without results, through the statement cache (BEGIN, COMMIT, ROLLBACK).
  Status Run(const char* sql) NO_THREAD_SAFETY_ANALYSIS {  // called with writer_.mu held
    Stmt statement(writer_.statements, sql);
    const bool prepared = statement.prepared();
    if (prepared) statement.Step();
    if (!prepared || !statement.ok()) {
      return Internal("sqlite: " + std::string(sqlite3_errmsg(writer_.db)) + " in: " + sql);
    }
    return Status::Ok();
  }

  Status Exec(const std::string& sql) const REQUIRES(writer_.mu) {
    char* err = nullptr;
    if (sqlite3_exec(writer_.db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      Status s =
          Internal("sqlite: " + std::string(err ? err : "error") + " in: " + sql.substr(0, 60));
      sqlite3_free(err);
      return s;
    }
    return Status::Ok();
  }

  Connection writer_;  // the pipeline's writes (and, for an in-memory database, every read)
  std::unique_ptr<Connection> reader_;  // the API's reads, on a file
  std::unique_ptr<Reads> reads_;
  Clock& clock_;
};

}  // namespace

std::string SqliteDueOfRequestQuery() { return std::string(kDueOfRequest); }

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, Clock& clock) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  sqlite3* db = nullptr;
  // NOMUTEX: each connection is used under its own Connection::mu only, so SQLite's mutex per
  // call (two of them around every sqlite3_column_*) was a second lock: 12% of the CPU of a status
  // page of 100 products under wrk.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Internal("cannot open database '" + path + "': " + msg);
  }
  auto store = std::make_unique<SqliteStore>(db, clock);
  // WAL keeps readers and the writer apart; NORMAL sync is durable against a killed process.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"}) {
    if (sqlite3_exec(db, pragma, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Internal("cannot configure database '" + path + "': " + sqlite3_errmsg(db));
    }
  }
  if (Status s = store->Migrate(); !s.ok()) return s;
  if (Status s = store->OpenReader(path); !s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace imgproc::store
