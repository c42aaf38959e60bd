#include "metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace imgproc::metrics {
namespace {

// Label values escape backslash, double quote and newline; HELP text backslash and newline.
std::string Escape(const std::string& s, bool quotes) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatLabels(const Labels& labels, const std::string& extra_name = "",
                         const std::string& extra_value = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  auto add = [&](const std::string& k, const std::string& v) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + Escape(v, true) + '"';
  };
  for (const auto& [k, v] : labels) add(k, v);
  if (!extra_name.empty()) add(extra_name, extra_value);
  return out + "}";
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that reads back exactly
  return std::string(buf, r.ptr);
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_([&] {
        std::sort(upper_bounds.begin(), upper_bounds.end());
        upper_bounds.erase(std::unique(upper_bounds.begin(), upper_bounds.end()),
                           upper_bounds.end());
        return upper_bounds;
      }()),
      buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double value) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                       bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.upper_bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  // The +Inf bucket is the count, so the two agree even while observations race the scrape.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> DurationBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

struct Registry::Family {
  std::string name;
  std::string help;
  std::string type;  // counter | histogram | gauge
  std::vector<std::pair<Labels, std::unique_ptr<Counter>>> counters;
  std::vector<std::pair<Labels, std::unique_ptr<Histogram>>> histograms;
  std::function<std::optional<double>()> gauge;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::FamilyFor(const std::string& name, const std::string& help,
                                      const char* type) {
  for (auto& f : families_) {
    if (f->name == name) return *f;
  }
  families_.push_back(std::make_unique<Family>());
  families_.back()->name = name;
  families_.back()->help = help;
  families_.back()->type = type;
  return *families_.back();
}

Counter& Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  MutexLock lock(&mu_);
  Family& f = FamilyFor(name, help, "counter");
  for (auto& [l, c] : f.counters) {
    if (l == labels) return *c;
  }
  f.counters.emplace_back(labels, std::make_unique<Counter>());
  return *f.counters.back().second;
}

Histogram& Registry::GetHistogram(const std::string& name, const std::string& help,
                                  const Labels& labels, std::vector<double> upper_bounds) {
  MutexLock lock(&mu_);
  Family& f = FamilyFor(name, help, "histogram");
  for (auto& [l, h] : f.histograms) {
    if (l == labels) return *h;
  }
  f.histograms.emplace_back(labels, std::make_unique<Histogram>(std::move(upper_bounds)));
  return *f.histograms.back().second;
}

void Registry::AddGauge(const std::string& name, const std::string& help,
                        std::function<std::optional<double>()> read) {
  MutexLock lock(&mu_);
  FamilyFor(name, help, "gauge").gauge = std::move(read);
}

std::string Registry::Render() const {
  MutexLock lock(&mu_);
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f->name + " " + Escape(f->help, false) + "\n";
    out += "# TYPE " + f->name + " " + f->type + "\n";
    for (const auto& [labels, c] : f->counters) {
      out += f->name + FormatLabels(labels) + " " + std::to_string(c->Value()) + "\n";
    }
    for (const auto& [labels, h] : f->histograms) {
      const Histogram::Snapshot s = h->Read();
      for (size_t i = 0; i < s.cumulative.size(); ++i) {
        const std::string le =
            i < s.upper_bounds.size() ? FormatValue(s.upper_bounds[i]) : std::string("+Inf");
        out += f->name + "_bucket" + FormatLabels(labels, "le", le) + " " +
               std::to_string(s.cumulative[i]) + "\n";
      }
      out += f->name + "_sum" + FormatLabels(labels) + " " + FormatValue(s.sum) + "\n";
      out += f->name + "_count" + FormatLabels(labels) + " " + std::to_string(s.count) + "\n";
    }
    if (f->gauge) {
      if (auto v = f->gauge()) out += f->name + " " + FormatValue(*v) + "\n";
    }
  }
  return out;
}

}  // namespace imgproc::metrics
