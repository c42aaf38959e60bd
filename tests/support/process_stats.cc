#include "process_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace imgproc::testing {
namespace {

// The fields of /proc/<pid>/stat from field 3 (state) on: field n is [n - 3]. Empty if unreadable.
std::vector<std::string> StatFields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  const size_t paren = line.rfind(')');  // the command name may contain spaces
  if (paren == std::string::npos) return {};
  std::istringstream fields(line.substr(paren + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  return f;
}

}  // namespace

double CpuSeconds(pid_t pid) {
  const std::vector<std::string> f = StatFields(pid);
  if (f.size() < 13) return -1;  // utime is field 14, stime 15
  return static_cast<double>(std::stoll(f[11]) + std::stoll(f[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

long MinorFaults(pid_t pid) {
  const std::vector<std::string> f = StatFields(pid);
  return f.size() < 8 ? -1 : std::stol(f[7]);  // minflt is field 10
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

namespace {

long StatusKib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
  }
  return -1;
}

}  // namespace

long PeakRssKib(pid_t pid) { return StatusKib(pid, "VmHWM:"); }

long RssKib(pid_t pid) { return StatusKib(pid, "VmRSS:"); }

}  // namespace imgproc::testing
