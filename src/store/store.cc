#include "store/store.h"

#include "store/postgres_store.h"
#include "store/sqlite_store.h"

namespace imgproc::store {
namespace {

// Connections per process: enough for the workers and HTTP threads touching the store at once
// (each holds one only for a statement or a short transaction).
constexpr int kPostgresConnections = 16;

}  // namespace

Result<std::unique_ptr<Store>> OpenStore(const std::string& database_url, Clock& clock) {
  constexpr std::string_view kSqlite = "sqlite://";
  if (database_url.rfind(kSqlite, 0) == 0) {
    std::string path = database_url.substr(kSqlite.size());
    if (path.empty()) return InvalidArgument("DATABASE_URL: sqlite:// needs a file path");
    return OpenSqliteStore(path, clock);
  }
  if (database_url.rfind("postgresql://", 0) == 0 || database_url.rfind("postgres://", 0) == 0) {
    return OpenPostgresStore(database_url, kPostgresConnections, clock);
  }
  return InvalidArgument("DATABASE_URL must start with sqlite:// or postgresql:// (got '" +
                         database_url + "')");
}

}  // namespace imgproc::store
