// The shared store for the scale-out mode: PostgreSQL, used by any number of API and worker
// processes on any number of machines. Row locks (FOR UPDATE, SKIP LOCKED) make claims and the
// completion of a request safe across processes. A connection lost (say, to a server restart)
// is dropped and re-opened on next use; the call that saw it fails with a transient error.
#ifndef IMGPROC_STORE_POSTGRES_STORE_H_
#define IMGPROC_STORE_POSTGRES_STORE_H_

#include <memory>
#include <string>

#include "store/store.h"

namespace imgproc::store {

// Connects to `url` (a libpq connection URI, postgresql://user:password@host:port/db), applies
// pending migrations under an advisory lock (so processes starting together do not race) and
// keeps up to `max_connections` connections open.
[[nodiscard]] Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url,
                                                               int max_connections,
                                                               Clock& clock = RealClock());

}  // namespace imgproc::store

#endif  // IMGPROC_STORE_POSTGRES_STORE_H_
