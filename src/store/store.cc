#include "store/store.h"

#include <chrono>

#include "store/postgres_store.h"
#include "store/sqlite_store.h"

namespace imgproc::store {
namespace {

// Connections per process: enough for the workers and HTTP threads touching the store at once
// (each holds one only for a statement or a short transaction).
constexpr int kPostgresConnections = 16;

}  // namespace

Millis NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* ToString(RequestStatus status) {
  switch (status) {
    case RequestStatus::kPending:
      return "pending";
    case RequestStatus::kProcessing:
      return "processing";
    case RequestStatus::kCompleted:
      return "completed";
  }
  return "pending";
}

RequestStatus ParseRequestStatus(const std::string& s) {
  if (s == "processing") return RequestStatus::kProcessing;
  if (s == "completed") return RequestStatus::kCompleted;
  return RequestStatus::kPending;
}

bool IsImageEntry(std::string_view entry) {
  for (size_t i = 0; i + 4 <= entry.size(); ++i) {
    if ((entry[i] | 0x20) == 'h' && (entry[i + 1] | 0x20) == 't' && (entry[i + 2] | 0x20) == 't' &&
        (entry[i + 3] | 0x20) == 'p') {
      return true;
    }
  }
  return false;
}

Status CheckClientImages(int64_t queued, int64_t adding, int64_t limit) {
  if (limit <= 0 || queued + adding <= limit) return Status::Ok();
  return ResourceExhausted("Too many images queued: this request has " + std::to_string(adding) +
                           " images and your earlier requests still have " +
                           std::to_string(queued) + " unfinished, over the limit of " +
                           std::to_string(limit) +
                           " per client (MAX_QUEUED_IMAGES_PER_CLIENT); send it again once they "
                           "have finished");
}

std::vector<std::string> SplitUrlEntries(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = joined.find(',', start);
    out.push_back(joined.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

Result<std::unique_ptr<Store>> OpenStore(const std::string& database_url) {
  constexpr std::string_view kSqlite = "sqlite://";
  if (database_url.rfind(kSqlite, 0) == 0) {
    std::string path = database_url.substr(kSqlite.size());
    if (path.empty()) return InvalidArgument("DATABASE_URL: sqlite:// needs a file path");
    return OpenSqliteStore(path);
  }
  if (database_url.rfind("postgresql://", 0) == 0 || database_url.rfind("postgres://", 0) == 0) {
    return OpenPostgresStore(database_url, kPostgresConnections);
  }
  return InvalidArgument("DATABASE_URL must start with sqlite:// or postgresql:// (got '" +
                         database_url + "')");
}

}  // namespace imgproc::store
