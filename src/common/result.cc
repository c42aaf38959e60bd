#include "common/result.h"

#include <algorithm>
#include <cstdlib>

namespace imgproc {

std::chrono::milliseconds RetryAfter(const std::string& header_value) {
  char* end = nullptr;
  const long seconds = std::strtol(header_value.c_str(), &end, 10);
  if (end == header_value.c_str() || seconds <= 0) return std::chrono::milliseconds(0);
  return std::chrono::seconds(std::min(seconds, 86'400L));  // at most a day
}

}  // namespace imgproc
