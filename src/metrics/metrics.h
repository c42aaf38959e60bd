// A small, thread-safe metrics registry with the Prometheus text exposition format (0.0.4).
//
// Debian 12 packages no Prometheus client library for C++ (no prometheus-cpp), and the format is
// a few lines of text, so it is written by hand here: counters and histograms are atomics that
// any thread updates without locks; gauges are read by a callback at scrape time.
#ifndef IMGPROC_METRICS_METRICS_H_
#define IMGPROC_METRICS_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/mutex.h"

namespace imgproc::metrics {

// Label name/value pairs of one series, in the order they are printed.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count.
class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Observations counted into fixed buckets (upper bounds, ascending), with their count and sum.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);

  // A copy of the current state: cumulative bucket counts (one per bound, then +Inf).
  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative;  // upper_bounds.size() + 1 entries
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket, not cumulative; last = +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Default buckets for durations in seconds (5 ms ... 60 s).
std::vector<double> DurationBuckets();

// Named metric families. Registration takes a lock; updating a metric does not. Metrics live as
// long as the registry, at stable addresses.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The series `name{labels}` of a counter family (created on first use).
  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help, const Labels& labels,
                          std::vector<double> upper_bounds);
  // A gauge read at scrape time; nullopt leaves the sample out (say, when the store is down).
  void AddGauge(const std::string& name, const std::string& help,
                std::function<std::optional<double>()> read);

  // Every family in registration order, in the Prometheus text format.
  std::string Render() const;

 private:
  struct Family;
  Family& FamilyFor(const std::string& name, const std::string& help, const char* type)
      REQUIRES(mu_);

  mutable Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ GUARDED_BY(mu_);
};

// The content type of Render()'s output.
inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace imgproc::metrics

#endif  // IMGPROC_METRICS_METRICS_H_#include "common/mutex.h"
