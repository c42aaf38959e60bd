#include "services.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace imgproc::testing {
namespace {

std::optional<std::string> Env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

}  // namespace

std::optional<std::string> PostgresAdminUrl() { return Env("IMGPROC_TEST_PG_URL"); }
std::optional<std::string> RedisUrl() { return Env("IMGPROC_TEST_REDIS_URL"); }
std::optional<std::string> S3Endpoint() { return Env("IMGPROC_TEST_S3_ENDPOINT"); }
bool ServicesRequired() { return Env("IMGPROC_REQUIRE_SERVICES").value_or("0") == "1"; }

bool ServiceCommand(const std::string& command) {
  auto script = Env("IMGPROC_TEST_SERVICES");
  if (!script) return false;
  return std::system((*script + " " + command).c_str()) == 0;
}

std::string ExecSql(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  } else {
    PQsetNoticeProcessor(
        conn, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      error = PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  PQfinish(conn);
  return error;
}

HeldLocks::HeldLocks(const std::string& url, const std::string& lock_sql)
    : url_(url), conn_(PQconnectdb(url.c_str())) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    error_ = PQerrorMessage(conn_);
    return;
  }
  for (const std::string& sql : {std::string("BEGIN"), lock_sql}) {
    PGresult* r = PQexec(conn_, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      error_ = PQresultErrorMessage(r);
    }
    PQclear(r);
    if (!error_.empty()) return;
  }
}

HeldLocks::~HeldLocks() { Release(); }

void HeldLocks::Release() {
  if (conn_ == nullptr) return;
  PQfinish(conn_);  // the transaction ends with its connection
  conn_ = nullptr;
}

int HeldLocks::Waiting() const {
  // A connection of its own: pg_stat_activity is read once per transaction.
  PGconn* conn = PQconnectdb(url_.c_str());
  int waiting = -1;
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult* r = PQexec(conn,
                         "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND wait_event_type = 'Lock'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) waiting = std::atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  PQfinish(conn);
  return waiting;
}

TempPostgresDatabase::TempPostgresDatabase() {
  auto admin = PostgresAdminUrl();
  if (!admin) {
    error_ = "IMGPROC_TEST_PG_URL is not set";
    return;
  }
  admin_url_ = *admin;
  static std::atomic<int> counter{0};
  name_ = "imgproc_t" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  error_ = ExecSql(admin_url_, "DROP DATABASE IF EXISTS " + name_);
  if (error_.empty()) error_ = ExecSql(admin_url_, "CREATE DATABASE " + name_);
  url_ = admin_url_.substr(0, admin_url_.rfind('/') + 1) + name_;
}

TempPostgresDatabase::~TempPostgresDatabase() {
  if (!name_.empty()) ExecSql(admin_url_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
}

}  // namespace imgproc::testing
