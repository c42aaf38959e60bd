#include "request/request.h"

#include <gtest/gtest.h>

#include <set>

namespace imgproc::request {
namespace {

using std::chrono::milliseconds;

TEST(Ids, AreUniqueCanonicalVersion4Uuids) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewRequestId();
    ASSERT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id[14], '4');
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_FALSE(IsUuid("550e8400-e29b-41d4-a716-44665544000"));
  EXPECT_FALSE(IsUuid("550e8400xe29b-41d4-a716-446655440000"));
  EXPECT_FALSE(IsUuid("550e8400-e29b-41d4-a716-44665544000g"));
}

TEST(Entries, ImagesAreThoseNamingHttpInAnyCase) {
  for (const char* image :
       {"http://a/b.jpg", "HTTP://A/B.JPG", "https://x", "Https://x", "xhttpy"}) {
    EXPECT_TRUE(IsImageEntry(image)) << image;
  }
  for (const char* other : {"", "x.jpg", "ftp://a/b.jpg", "htp://a", "HTT", "h ttp"}) {
    EXPECT_FALSE(IsImageEntry(other)) << other;
  }
}

TEST(Entries, SplitAndJoinAreInverses) {
  for (const std::string& joined :
       {std::string(), std::string("a"), std::string("a,,c"), std::string(",")}) {
    EXPECT_EQ(JoinEntries(SplitEntries(joined)), joined);
  }
  EXPECT_EQ(SplitEntries("a,,c"), (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(SplitEntries(""), (std::vector<std::string>{""}));
}

TEST(PlanRequest, CountsImagesAndFinishesProductsWithoutAny) {
  const RequestPlan plan = PlanRequest(
      {{1, "A", {"http://a/0", "keep", "HTTP://a/2"}}, {2, "B", {"x", "y"}}}, true, 1000);
  ASSERT_EQ(plan.products.size(), 2u);
  EXPECT_EQ(plan.images_total, 2);
  EXPECT_EQ(plan.status, RequestStatus::kPending);
  EXPECT_FALSE(plan.completed_at);
  EXPECT_FALSE(plan.webhook_due);
  EXPECT_EQ(plan.products[0].input_urls, "http://a/0,keep,HTTP://a/2");
  EXPECT_EQ(plan.products[0].image_indices, (std::vector<int>{0, 2}));
  EXPECT_FALSE(plan.products[0].output_urls);
  EXPECT_EQ(plan.products[1].output_urls, "x,y");  // nothing to wait for
  EXPECT_TRUE(plan.products[1].image_indices.empty());
}

TEST(PlanRequest, WithoutImagesIsCompletedAtOnceAndItsWebhookDue) {
  const RequestPlan with_hook = PlanRequest({{1, "A", {"x"}}}, true, 1000);
  EXPECT_EQ(with_hook.status, RequestStatus::kCompleted);
  EXPECT_EQ(with_hook.completed_at, 1000);
  EXPECT_EQ(with_hook.webhook_due, 1000);
  const RequestPlan without = PlanRequest({{1, "A", {"x"}}}, false, 1000);
  EXPECT_EQ(without.status, RequestStatus::kCompleted);
  EXPECT_FALSE(without.webhook_due);
}

TEST(ClientQueue, AllowsUpToTheLimitOrAnyWithoutOne) {
  EXPECT_TRUE(FitsClientQueue(3, 2, 5));
  EXPECT_FALSE(FitsClientQueue(3, 3, 5));
  EXPECT_FALSE(FitsClientQueue(0, 6, 5));
  EXPECT_TRUE(FitsClientQueue(9, 0, 5));  // nothing to queue
  EXPECT_TRUE(FitsClientQueue(1'000'000, 1'000'000, 0));
  EXPECT_NE(ClientQueueMessage(3, 3, 5).find("MAX_QUEUED_IMAGES_PER_CLIENT"), std::string::npos);
}

TEST(RecordOf, ATransientFailureIsQueuedAgainWithItsError) {
  ImageOutcome retry;
  retry.error = "HTTP 503";
  retry.retry_at = 5000;
  const ImageRecord r = RecordOf(retry);
  EXPECT_EQ(r.state, ImageState::kQueued);
  EXPECT_FALSE(r.final());
  EXPECT_EQ(r.due_at, 5000);
  EXPECT_EQ(r.error, "HTTP 503");
  EXPECT_FALSE(r.output_url);
}

TEST(RecordOf, SuccessAndFailureAreFinal) {
  ImageOutcome done;
  done.ok = true;
  done.output_url = "https://o/1.jpg";
  done.input_bytes = 100;
  done.output_bytes = 10;
  const ImageRecord d = RecordOf(done);
  EXPECT_EQ(d.state, ImageState::kDone);
  EXPECT_TRUE(d.final());
  EXPECT_EQ(d.output_url, "https://o/1.jpg");
  EXPECT_EQ(d.input_bytes, 100);
  EXPECT_EQ(d.output_bytes, 10);
  EXPECT_FALSE(d.error);
  ImageOutcome failed;
  failed.error = "HTTP 404";
  const ImageRecord f = RecordOf(failed);
  EXPECT_EQ(f.state, ImageState::kFailed);
  EXPECT_EQ(f.error, "HTTP 404");
  EXPECT_FALSE(f.due_at);
  EXPECT_FALSE(f.input_bytes);
}

TEST(ComposeOutputs, KeepsInputOrderPassThroughAndEmptyForFailures) {
  EXPECT_EQ(ComposeOutputs("http://a/0,keep,http://a/2,http://a/3",
                           {{3, "o3"}, {0, "o0"}, {2, std::nullopt}}),
            "o0,keep,,o3");
  EXPECT_EQ(ComposeOutputs("keep", {}), "keep");
  EXPECT_EQ(ComposeOutputs("http://a", {{5, "out of range"}}), "http://a");
}

TEST(AfterFinalImage, CompletesOnTheLastAndThenTheWebhookIsDue) {
  EXPECT_FALSE(AfterFinalImage(2, 3, true, 10).completed);
  EXPECT_FALSE(AfterFinalImage(2, 3, true, 10).webhook_due);
  const Completion last = AfterFinalImage(3, 3, true, 10);
  EXPECT_TRUE(last.completed);
  EXPECT_EQ(last.webhook_due, 10);
  EXPECT_FALSE(AfterFinalImage(3, 3, false, 10).webhook_due);
}

TEST(RequestStatus, EveryStatusReadsBackAndOnlyCompletedAndCancelledAreFinished) {
  for (RequestStatus s : {RequestStatus::kPending, RequestStatus::kProcessing,
                          RequestStatus::kCompleted, RequestStatus::kCancelled}) {
    EXPECT_EQ(ParseRequestStatus(ToString(s)), s) << ToString(s);
  }
  EXPECT_STREQ(ToString(RequestStatus::kCancelled), "cancelled");
  EXPECT_FALSE(IsFinished(RequestStatus::kPending));
  EXPECT_FALSE(IsFinished(RequestStatus::kProcessing));
  EXPECT_TRUE(IsFinished(RequestStatus::kCompleted));
  EXPECT_TRUE(IsFinished(RequestStatus::kCancelled));
}

TEST(DecideCancel, CancelsWhatRunsIsIdempotentAndRefusesWhatCompleted) {
  EXPECT_EQ(DecideCancel(RequestStatus::kPending), CancelVerdict::kCancel);
  EXPECT_EQ(DecideCancel(RequestStatus::kProcessing), CancelVerdict::kCancel);
  EXPECT_EQ(DecideCancel(RequestStatus::kCancelled), CancelVerdict::kAlreadyCancelled);
  EXPECT_EQ(DecideCancel(RequestStatus::kCompleted), CancelVerdict::kAlreadyCompleted);
}

TEST(Webhooks, SendingShowsAsPendingUntilAFirstAttempt) {
  EXPECT_EQ(ViewOfWebhook("sending", 0, std::nullopt).state, "pending");
  EXPECT_EQ(ViewOfWebhook("sending", 2, 503).state, "retrying");
  const WebhookView delivered = ViewOfWebhook("delivered", 1, 204);
  EXPECT_EQ(delivered.state, "delivered");
  EXPECT_EQ(delivered.last_status, 204);
  EXPECT_TRUE(delivered.settled());
  EXPECT_TRUE(ViewOfWebhook("failed", 9, std::nullopt).settled());
  EXPECT_FALSE(ViewOfWebhook("retrying", 1, 500).settled());
  EXPECT_EQ(WebhookStateAfterAttempt(true, false), "delivered");
  EXPECT_EQ(WebhookStateAfterAttempt(false, true), "retrying");
  EXPECT_EQ(WebhookStateAfterAttempt(false, false), "failed");
}

DeliveryAttempt Answered(int attempt, int status) {
  DeliveryAttempt a;
  a.attempt = attempt;
  a.http_status = status;
  return a;
}

TEST(DecideDelivery, A2xxDelivers) {
  const RetrySchedule schedule = {milliseconds(1000)};
  EXPECT_TRUE(DecideDelivery(Answered(1, 204), schedule, 0, 0).delivered);
  EXPECT_FALSE(DecideDelivery(Answered(1, 302), schedule, 0, 0).delivered);
}

TEST(DecideDelivery, FailuresFollowTheScheduleWithJitterAndRetryAfter) {
  const RetrySchedule schedule = {milliseconds(1000), milliseconds(60'000)};
  EXPECT_EQ(DecideDelivery(Answered(1, 500), schedule, 10, 0).retry_at, 10 + 1000);
  EXPECT_EQ(DecideDelivery(Answered(1, 500), schedule, 10, 1).retry_at, 10 + 1100);  // +10%
  EXPECT_EQ(DecideDelivery(Answered(2, 429), schedule, 10, 0).retry_at, 10 + 60'000);
  DeliveryAttempt later = Answered(1, 503);
  later.retry_after = milliseconds(7000);  // longer than the schedule's: taken
  EXPECT_EQ(DecideDelivery(later, schedule, 0, 0).retry_at, 7000);
  later.retry_after = milliseconds(10);  // shorter: the schedule wins
  EXPECT_EQ(DecideDelivery(later, schedule, 0, 0).retry_at, 1000);
}

TEST(DecideDelivery, GoneAPermanentErrorOrASpentScheduleFail) {
  const RetrySchedule schedule = {milliseconds(1000)};
  EXPECT_FALSE(DecideDelivery(Answered(1, 410), schedule, 0, 0).retry_at);
  EXPECT_FALSE(DecideDelivery(Answered(2, 500), schedule, 0, 0).retry_at);  // schedule spent
  EXPECT_FALSE(DecideDelivery(Answered(1, 500), {}, 0, 0).retry_at);        // never retried
  DeliveryAttempt refused;
  refused.transient = false;  // e.g. a private destination
  EXPECT_FALSE(DecideDelivery(refused, schedule, 0, 0).retry_at);
  DeliveryAttempt timeout;  // no answer, may pass
  EXPECT_EQ(DecideDelivery(timeout, schedule, 0, 0).retry_at, 1000);
}

TEST(AttachImages, ShowsErrorsRetriesAndSizesOnTheirProducts) {
  std::vector<ProductView> products(3);
  const std::vector<int64_t> ids = {11, 12, 13};
  const std::vector<ImageRow> rows = {
      {11, 0, "u0", ImageState::kDone, std::nullopt, 1, 100, 10},
      {11, 2, "u2", ImageState::kFailed, "HTTP 404", 1, std::nullopt, std::nullopt},
      {13, 0, "v0", ImageState::kQueued, "HTTP 503", 2, std::nullopt, std::nullopt},
      {13, 1, "v1", ImageState::kLeased, "timeout", 3, std::nullopt, std::nullopt},
      {13, 2, "v2", ImageState::kDone, std::nullopt, 1, std::nullopt, std::nullopt},  // no sizes
  };
  AttachImages(ids, rows, products);
  ASSERT_EQ(products[0].image_sizes.size(), 1u);
  EXPECT_EQ(products[0].image_sizes[0].input_bytes, 100);
  ASSERT_EQ(products[0].image_errors.size(), 1u);
  EXPECT_EQ(products[0].image_errors[0].index, 2);
  EXPECT_EQ(products[0].image_errors[0].error, "HTTP 404");
  EXPECT_TRUE(products[1].image_errors.empty());
  ASSERT_EQ(products[2].image_retries.size(), 2u);
  EXPECT_EQ(products[2].image_retries[1].attempts, 3);
  EXPECT_TRUE(products[2].image_sizes.empty());
}

}  // namespace
}  // namespace imgproc::request
