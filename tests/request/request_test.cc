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

TEST(PlanRequest, ASlotNamingAnEarlierSlotsUrlWaitsForThatOne) {
  const RequestPlan plan = PlanRequest({{1, "A", {"http://a/0", "keep", "http://a/1"}},
                                        {2, "B", {"http://a/1", "http://a/0", "http://a/2"}},
                                        {3, "C", {"http://a/0", "HTTP://a/0"}}},
                                       false, 1000);
  EXPECT_EQ(plan.images_total, 7);  // every slot is an image of its own: counted, shown, composed
  EXPECT_EQ(plan.products[0].same_as,
            (std::vector<std::optional<SlotRef>>{std::nullopt, std::nullopt}));
  EXPECT_EQ(plan.products[1].same_as,
            (std::vector<std::optional<SlotRef>>{SlotRef{0, 2}, SlotRef{0, 0}, std::nullopt}));
  // The first slot of a URL, not the latest: and URLs compare exactly (the path is case-sensitive).
  EXPECT_EQ(plan.products[2].same_as,
            (std::vector<std::optional<SlotRef>>{SlotRef{0, 0}, std::nullopt}));
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

TEST(TallyOf, FollowersReuseADoneOutputAndShareAFailure) {
  ImageOutcome made;
  made.ok = true;
  ImageTally t = TallyOf(made, 3);  // made once, two waiting slots take it
  EXPECT_EQ(t.done, 3);
  EXPECT_EQ(t.failed, 0);
  EXPECT_EQ(t.reused, 2);
  ImageOutcome cached = made;
  cached.reused = true;
  EXPECT_EQ(TallyOf(cached, 1).reused, 1);
  ImageOutcome failed;
  failed.error = "download failed";
  t += TallyOf(failed, 2);
  EXPECT_EQ(t.done, 3);
  EXPECT_EQ(t.failed, 2);
  EXPECT_EQ(t.reused, 2);
  EXPECT_EQ(t.done + t.failed, 5);
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

TEST(FairPick, SharesTheWorkersEquallyBetweenRunningRequests) {
  // A big request with 8 in flight and a small one just sent: the small one is served until it
  // has as many in flight, then they alternate, the older first on ties.
  const std::vector<DueImages> requests = {{8, {100, 101, 102, 103, 104, 105}},
                                           {0, {200, 201, 202, 203, 204, 205, 206, 207, 208, 209}}};
  EXPECT_EQ(FairPick(requests, 4), (std::vector<int64_t>{200, 201, 202, 203}));
  EXPECT_EQ(FairPick(requests, 12),
            (std::vector<int64_t>{200, 201, 202, 203, 204, 205, 206, 207, 100, 208, 101, 209}));
  // Ties go to the request listed first (the older), then alternate.
  EXPECT_EQ(FairPick({{0, {1, 2, 3}}, {0, {4, 5, 6}}, {0, {7}}}, 6),
            (std::vector<int64_t>{1, 4, 7, 2, 5, 3}));
}

TEST(FairPick, ARequestAloneTakesEveryWorkerAndNothingDueGivesNothing) {
  EXPECT_EQ(FairPick({{3, {1, 2, 3}}}, 8), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(FairPick({{3, {1, 2, 3}}}, 2), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(FairPick({{5, {}}, {0, {}}}, 4).empty());
  EXPECT_TRUE(FairPick({{0, {1}}}, 0).empty());
  EXPECT_TRUE(FairPick({}, 4).empty());
}

TEST(DecideCancel, CancelsWhatRunsIsIdempotentAndRefusesWhatCompleted) {
  EXPECT_EQ(DecideCancel(RequestStatus::kPending), CancelVerdict::kCancel);
  EXPECT_EQ(DecideCancel(RequestStatus::kProcessing), CancelVerdict::kCancel);
  EXPECT_EQ(DecideCancel(RequestStatus::kCancelled), CancelVerdict::kAlreadyCancelled);
  EXPECT_EQ(DecideCancel(RequestStatus::kCompleted), CancelVerdict::kAlreadyCompleted);
}

TEST(DecideRetry, RetriesTheFailedImagesOfAFinishedRequestOnly) {
  EXPECT_EQ(DecideRetry(RequestStatus::kCompleted, 2), RetryVerdict::kRetry);
  EXPECT_EQ(DecideRetry(RequestStatus::kCancelled, 5), RetryVerdict::kRetry);
  EXPECT_EQ(DecideRetry(RequestStatus::kCompleted, 0), RetryVerdict::kNothingFailed);
  EXPECT_EQ(DecideRetry(RequestStatus::kProcessing, 3), RetryVerdict::kStillRunning);
  EXPECT_EQ(DecideRetry(RequestStatus::kPending, 0), RetryVerdict::kStillRunning);
}

TEST(Webhooks, EachRoundHasItsOwnIdAndTheFirstKeepsTheOriginalOne) {
  EXPECT_EQ(WebhookId("abc", 0), "msg_abc");
  EXPECT_EQ(WebhookId("abc", 1), "msg_abc_1");
  EXPECT_EQ(WebhookId("abc", 2), "msg_abc_2");
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

TEST(ImageCache, OutputsAreReusableWithinTheMaxAgeOrSinceARefresh) {
  EXPECT_EQ(ReusableSince(10'000, 3'000, std::nullopt), 7'000);
  EXPECT_EQ(ReusableSince(10'000, 3'000, 9'500), 9'500);  // refresh: only what it made itself
  // Through DecideContent: an output as old as the max age is made anew.
  const ContentRow stored{"u", 1, 7'000, std::nullopt, 0};
  EXPECT_EQ(DecideContent(stored, "w", 10'000, ReusableSince(10'000, 3'000, std::nullopt)),
            ContentVerdict::kReuse);
  EXPECT_EQ(DecideContent(stored, "w", 10'001, ReusableSince(10'001, 3'000, std::nullopt)),
            ContentVerdict::kStore);
}

TEST(ImageCache, ConditionalHeadersCarryTheValidatorsTheHostGave) {
  CachedSource both{"ab", "\"v1\"", "Tue, 01 Dec 2026 10:00:00 GMT", 0, "u", 1, 1};
  EXPECT_EQ(ConditionalHeaders(both),
            (std::vector<std::string>{"If-None-Match: \"v1\"",
                                      "If-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT"}));
  CachedSource none{"ab", std::nullopt, std::nullopt, 0, "u", 1, 1};
  EXPECT_TRUE(ConditionalHeaders(none).empty());
}

TEST(ImageCache, NoStoreInAnyCaseAndPositionIsRespected) {
  EXPECT_TRUE(MayCache(""));
  EXPECT_TRUE(MayCache("public, max-age=3600"));
  EXPECT_TRUE(MayCache("no-cache"));  // may be kept, revalidated before use: which we do
  EXPECT_FALSE(MayCache("no-store"));
  EXPECT_FALSE(MayCache("max-age=0, No-Store"));
  EXPECT_FALSE(MayCache("private,no-store ,must-revalidate"));
  EXPECT_TRUE(MayCache("no-storey"));
}

TEST(ImageCache, ContentIsStoredOnceAndWaitedForWhileAnotherWorkerStoresIt) {
  const Millis now = 10'000;
  EXPECT_EQ(DecideContent(std::nullopt, "w1", now, 0), ContentVerdict::kStore);
  ContentRow claimed{std::nullopt, 0, 0, "w1", now + 500};
  EXPECT_EQ(DecideContent(claimed, "w2", now, 0), ContentVerdict::kWait);
  EXPECT_EQ(DecideContent(claimed, "w1", now, 0), ContentVerdict::kStore);  // its own claim
  claimed.claimed_until = now;  // w1 died: its claim ran out
  EXPECT_EQ(DecideContent(claimed, "w2", now, 0), ContentVerdict::kStore);
  ContentRow stored{"http://out/x.jpg", 10, 9'000, std::nullopt, 0};
  EXPECT_EQ(DecideContent(stored, "w2", now, 9'000), ContentVerdict::kReuse);
  // Stored before what the request accepts (older than the max age, or before a refresh).
  EXPECT_EQ(DecideContent(stored, "w2", now, 9'001), ContentVerdict::kStore);
  stored.owner = "w1";  // and being stored again by another worker now
  stored.claimed_until = now + 1;
  EXPECT_EQ(DecideContent(stored, "w2", now, 9'001), ContentVerdict::kWait);
}

}  // namespace
}  // namespace imgproc::request
