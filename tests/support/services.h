// The real PostgreSQL, Redis and S3 servers that scripts/services.sh starts for the tests. Without
// them (IMGPROC_TEST_PG_URL / IMGPROC_TEST_REDIS_URL / IMGPROC_TEST_S3_ENDPOINT unset) the tests
// that need them skip, except under the test command, which sets IMGPROC_REQUIRE_SERVICES=1:
// there they fail.
#ifndef IMGPROC_TESTS_SUPPORT_SERVICES_H_
#define IMGPROC_TESTS_SUPPORT_SERVICES_H_

#include <optional>
#include <string>

struct pg_conn;  // libpq's PGconn

namespace imgproc::testing {

std::optional<std::string> PostgresAdminUrl();
std::optional<std::string> RedisUrl();
// The S3 server's endpoint (http://127.0.0.1:PORT), with its bucket kS3Bucket and its one key.
std::optional<std::string> S3Endpoint();
inline constexpr const char* kS3Bucket = "imgproc-test";
inline constexpr const char* kS3AccessKey = "S3RVER";  // s3rver's built-in account
inline constexpr const char* kS3SecretKey = "S3RVER";
bool ServicesRequired();

// Runs `scripts/services.sh <command>` (restart-postgres, restart-redis); true on success.
bool ServiceCommand(const std::string& command);

// Runs one SQL statement through a fresh connection; returns libpq's error text, empty on success.
std::string ExecSql(const std::string& url, const std::string& sql);

// A transaction of its own on `url` that holds the row locks `lock_sql` takes (a SELECT ... FOR
// UPDATE) until Release() or the end: for tests of what a store does meanwhile.
class HeldLocks {
 public:
  HeldLocks(const std::string& url, const std::string& lock_sql);
  ~HeldLocks();  // releases them
  HeldLocks(const HeldLocks&) = delete;
  HeldLocks& operator=(const HeldLocks&) = delete;

  const std::string& error() const { return error_; }  // empty once the locks are held
  // Other backends of the database waiting for a lock now (pg_stat_activity); -1 on error.
  int Waiting() const;
  void Release();

 private:
  std::string url_;
  ::pg_conn* conn_ = nullptr;
  std::string error_;
};

// A database of its own for one test, created on the test server and dropped at the end.
class TempPostgresDatabase {
 public:
  TempPostgresDatabase();  // check ok() before url()
  ~TempPostgresDatabase();
  TempPostgresDatabase(const TempPostgresDatabase&) = delete;
  TempPostgresDatabase& operator=(const TempPostgresDatabase&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& url() const { return url_; }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
  std::string error_;
};

// Skips the test when a service is missing, or fails it under the test command.
#define IMGPROC_NEED_SERVICE(value, what)                                                 \
  if (!(value)) {                                                                         \
    if (::imgproc::testing::ServicesRequired()) FAIL() << what << " is not configured";   \
    GTEST_SKIP() << what << " is not configured (scripts/services.sh start; see README)"; \
  }

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_SERVICES_H_
