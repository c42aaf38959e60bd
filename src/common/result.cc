#include "common/result.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace imgproc {

void DieReadingValueOfError(const Status& status) {
  std::fprintf(stderr, "imgproc: the value of an error was read: %s\n", status.message().c_str());
  std::abort();
}

std::chrono::milliseconds RetryAfter(const std::string& header_value) {
  char* end = nullptr;
  const long seconds = std::strtol(header_value.c_str(), &end, 10);
  if (end == header_value.c_str() || seconds <= 0) return std::chrono::milliseconds(0);
  return std::chrono::seconds(std::min(seconds, 86'400L));  // at most a day
}

}  // namespace imgproc
