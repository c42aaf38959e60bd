// The embedded store: one SQLite file in WAL mode, one connection for the pipeline's writes and
// one for the API's reads, each guarded by a mutex (a status poll never waits behind a write).
// Durable against a killed process (every change is a committed transaction before it is
// acknowledged).
#ifndef IMGPROC_STORE_SQLITE_STORE_H_
#define IMGPROC_STORE_SQLITE_STORE_H_

#include <memory>
#include <string>
#include <string_view>

#include "store/store.h"

namespace imgproc::store {

// Opens (creating if needed) the database file at `path` and applies pending migrations.
[[nodiscard]] Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                                             Clock& clock = RealClock());

// The query a claim runs for each running request (its first due images), for a test of its
// plan: it must read them from an index in the order it takes them, never sort the request's
// due set.
std::string SqliteDueOfRequestQuery();

}  // namespace imgproc::store

#endif  // IMGPROC_STORE_SQLITE_STORE_H_
