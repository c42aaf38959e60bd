// PostgreSQL statements counted with pg_stat_statements (which scripts/services.sh preloads), for
// the benchmarks that report statements per image.
#ifndef IMGPROC_BENCH_PG_STATEMENTS_H_
#define IMGPROC_BENCH_PG_STATEMENTS_H_

#include <libpq-fe.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace imgproc::bench {

// pg_stat_statements of one database: reset before a run, read after it.
class StatementCounter {
 public:
  explicit StatementCounter(const std::string& url);
  ~StatementCounter() { PQfinish(conn_); }
  StatementCounter(const StatementCounter&) = delete;
  StatementCounter& operator=(const StatementCounter&) = delete;

  bool Reset() { return ok_ && Exec("SELECT pg_stat_statements_reset()"); }

  // Statements run in this database since the reset (-1 when unknown), and the most called.
  int64_t Total(std::vector<std::pair<int64_t, std::string>>* top);

  // Prints the total per image and the five most called (or that it is unknown).
  void Print(int images);

 private:
  bool Exec(const char* sql);

  PGconn* conn_;
  bool ok_ = false;
};

}  // namespace imgproc::bench

#endif  // IMGPROC_BENCH_PG_STATEMENTS_H_
