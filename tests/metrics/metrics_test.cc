#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "metrics/service_metrics.h"

namespace imgproc::metrics {
namespace {

TEST(Registry, RendersCountersWithHelpTypeAndEscapedLabels) {
  Registry r;
  r.GetCounter("x_total", "Things\ncounted", {{"kind", "a\"b\\c\nd"}}).Inc(3);
  r.GetCounter("x_total", "ignored: the family has its help", {{"kind", "plain"}}).Inc();
  r.GetCounter("y_total", "Plain").Inc(0);
  EXPECT_EQ(r.Render(),
            "# HELP x_total Things\\ncounted\n"
            "# TYPE x_total counter\n"
            "x_total{kind=\"a\\\"b\\\\c\\nd\"} 3\n"
            "x_total{kind=\"plain\"} 1\n"
            "# HELP y_total Plain\n"
            "# TYPE y_total counter\n"
            "y_total 0\n");
}

TEST(Registry, SameNameAndLabelsIsTheSameCounter) {
  Registry r;
  Counter& a = r.GetCounter("c_total", "h", {{"k", "v"}});
  Counter& b = r.GetCounter("c_total", "h", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &r.GetCounter("c_total", "h", {{"k", "w"}}));
}

TEST(Registry, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry r;
  Histogram& h = r.GetHistogram("d_seconds", "Durations", {{"stage", "s"}}, {1, 0.5, 2});
  for (double v : {0.1, 0.5, 0.7, 3.0}) h.Observe(v);
  EXPECT_EQ(r.Render(),
            "# HELP d_seconds Durations\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{stage=\"s\",le=\"0.5\"} 2\n"
            "d_seconds_bucket{stage=\"s\",le=\"1\"} 3\n"
            "d_seconds_bucket{stage=\"s\",le=\"2\"} 3\n"
            "d_seconds_bucket{stage=\"s\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{stage=\"s\"} 4.3\n"
            "d_seconds_count{stage=\"s\"} 4\n");
}

TEST(Registry, GaugeIsReadAtScrapeTimeAndLeftOutWhenUnknown) {
  Registry r;
  std::optional<double> value = 7;
  r.AddGauge("q", "Queue", [&value] { return value; });
  EXPECT_EQ(r.Render(), "# HELP q Queue\n# TYPE q gauge\nq 7\n");
  value.reset();
  EXPECT_EQ(r.Render(), "# HELP q Queue\n# TYPE q gauge\n");
}

TEST(Registry, ConcurrentUpdatesAreAllCounted) {
  Registry r;
  Counter& c = r.GetCounter("n_total", "n");
  Histogram& h = r.GetHistogram("h", "h", {}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Inc();
        h.Observe(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 80000u);
  const auto s = h.Read();
  EXPECT_EQ(s.count, 80000u);
  EXPECT_EQ(s.cumulative[0], 80000u);
  EXPECT_DOUBLE_EQ(s.sum, 40000.0);
}

TEST(ServiceMetrics, NamesEverySeriesTheDocsPromise) {
  ServiceMetrics m;
  m.SetQueueDepthSource([] { return std::optional<double>(5); });
  m.UploadAccepted();
  m.UploadRejected(RejectReason::kInvalidCsv);
  m.ImageDone();
  m.ImageFailed();
  m.ImageRetried();
  m.BytesIn(1000);
  m.BytesOut(100);
  m.download_seconds().Observe(0.2);
  m.WebhookDelivery(DeliveryOutcome::kDelivered);
  const std::string text = m.Render();
  for (const char* line : {
           "imgproc_uploads_accepted_total 1\n",
           "imgproc_uploads_rejected_total{reason=\"invalid_csv\"} 1\n",
           "imgproc_uploads_rejected_total{reason=\"too_large\"} 0\n",
           "imgproc_images_total{outcome=\"done\"} 1\n",
           "imgproc_images_total{outcome=\"failed\"} 1\n",
           "imgproc_images_total{outcome=\"retried\"} 1\n",
           "imgproc_image_bytes_in_total 1000\n",
           "imgproc_image_bytes_out_total 100\n",
           "imgproc_stage_duration_seconds_count{stage=\"download\"} 1\n",
           "imgproc_stage_duration_seconds_count{stage=\"compress\"} 0\n",
           "imgproc_stage_duration_seconds_count{stage=\"upload\"} 0\n",
           "imgproc_queue_depth 5\n",
           "imgproc_webhook_deliveries_total{outcome=\"delivered\"} 1\n",
           "imgproc_webhook_deliveries_total{outcome=\"failed\"} 0\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nin:\n" << text;
  }
}

}  // namespace
}  // namespace imgproc::metrics
