// What the kernel says about a process's resource use, for benchmarks and memory tests.
#ifndef IMGPROC_TESTS_SUPPORT_PROCESS_STATS_H_
#define IMGPROC_TESTS_SUPPORT_PROCESS_STATS_H_

#include <sys/types.h>

namespace imgproc::testing {

// User + system CPU seconds of a process (all its threads) from /proc/<pid>/stat; -1 if unreadable.
double CpuSeconds(pid_t pid);

// Minor page faults of a process so far (all its threads; first touches of memory, mostly), from
// /proc/<pid>/stat; -1 if unreadable.
long MinorFaults(pid_t pid);

// User + system CPU seconds of this process so far.
double SelfCpuSeconds();

// VmHWM (peak resident set) of a running process in KiB, from /proc/<pid>/status; -1 if
// unreadable.
long PeakRssKib(pid_t pid);

// VmRSS (resident set now) of a running process in KiB; -1 if unreadable.
long RssKib(pid_t pid);

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_PROCESS_STATS_H_
