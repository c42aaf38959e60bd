// Log output: plain text (spdlog's default pattern) or JSON lines (LOG_FORMAT=json), and the
// request a thread is working on, which JSON lines carry as "request_id".
#ifndef IMGPROC_COMMON_LOGGING_H_
#define IMGPROC_COMMON_LOGGING_H_

#include <string>

#include "common/result.h"

namespace imgproc::logging {

// Applies LOG_LEVEL ("trace" ... "error", "off") and LOG_FORMAT ("text" or "json") to spdlog's
// default logger. InvalidArgument for an unknown value.
Status Configure(const std::string& level, const std::string& format);

// One JSON object (no newline) for a log line: {"ts", "level", "msg", "request_id"?}; `ts` is
// UTC ISO 8601 with milliseconds. Exposed for tests.
std::string JsonLine(int64_t unix_millis, const std::string& level, const std::string& message,
                     const std::string& request_id);

// While it lives, log lines written by this thread carry `request_id` (nesting restores the
// outer one).
class ScopedRequestId {
 public:
  explicit ScopedRequestId(std::string request_id);
  ~ScopedRequestId();
  ScopedRequestId(const ScopedRequestId&) = delete;
  ScopedRequestId& operator=(const ScopedRequestId&) = delete;

 private:
  std::string previous_;
};

// The request id of the current thread's scope ("" outside one).
const std::string& CurrentRequestId();

}  // namespace imgproc::logging

#endif  // IMGPROC_COMMON_LOGGING_H_
