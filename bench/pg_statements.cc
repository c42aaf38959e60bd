#include "pg_statements.h"

#include <cstdio>
#include <cstdlib>

namespace imgproc::bench {

StatementCounter::StatementCounter(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
  ok_ = PQstatus(conn_) == CONNECTION_OK &&
        Exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements") &&
        Exec("SELECT pg_stat_statements_reset()");
}

int64_t StatementCounter::Total(std::vector<std::pair<int64_t, std::string>>* top) {
  if (!ok_) return -1;
  const char* dbid = "(SELECT oid FROM pg_database WHERE datname = current_database())";
  PGresult* r = PQexec(conn_, (std::string("SELECT coalesce(sum(calls), 0) FROM "
                                           "pg_stat_statements WHERE dbid = ") +
                               dbid)
                                  .c_str());
  const int64_t total =
      PQresultStatus(r) == PGRES_TUPLES_OK ? std::strtoll(PQgetvalue(r, 0, 0), nullptr, 10) : -1;
  PQclear(r);
  r = PQexec(conn_, (std::string("SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), "
                                 "110) FROM pg_stat_statements WHERE dbid = ") +
                     dbid + " ORDER BY calls DESC LIMIT 5")
                        .c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      top->emplace_back(std::strtoll(PQgetvalue(r, i, 0), nullptr, 10), PQgetvalue(r, i, 1));
    }
  }
  PQclear(r);
  return total;
}

void StatementCounter::Print(int images) {
  std::vector<std::pair<int64_t, std::string>> top;
  const int64_t count = Total(&top);
  if (count < 0) {
    std::printf("  statements per image: n/a (pg_stat_statements is not loaded)\n");
    return;
  }
  std::printf("  %lld PostgreSQL statements, %.2f per image; the most called:\n",
              static_cast<long long>(count), static_cast<double>(count) / images);
  for (const auto& [calls, query] : top) {
    std::printf("  %8lld  %s\n", static_cast<long long>(calls), query.c_str());
  }
}

bool StatementCounter::Exec(const char* sql) {
  PGresult* r = PQexec(conn_, sql);
  const ExecStatusType status = PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    std::fprintf(stderr, "pg_stat_statements: %s", PQerrorMessage(conn_));
  }
  PQclear(r);
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

}  // namespace imgproc::bench
