// The row of `requests` that both stores read for a request, mapped to its view in one place.
// Internal to src/store: each store selects these columns, in this order, with its own SQL:
//   status, created_at, webhook_url, images_total, images_done, images_failed,
//   webhook_state, webhook_attempts, webhook_last_status, owner, images_reused, retry_round,
//   outputs
// and the statements that are the same SQL on both, and RecordImages' answer. Their parameters are
// written $1, $2, ... and appear in that order: SQLite numbers such named parameters by first
// appearance, so both stores bind them by the same positions.
#ifndef IMGPROC_STORE_REQUEST_ROW_H_
#define IMGPROC_STORE_REQUEST_ROW_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "request/request.h"
#include "store/store.h"

namespace imgproc::store {

// `Row` is a store's result row: Text(i), OptText(i), Int(i), IsNull(i).
template <typename Row>
request::RequestView RequestViewOfRow(const std::string& request_id, const Row& row) {
  request::RequestView view;
  view.request_id = request_id;
  view.status = request::ParseRequestStatus(row.Text(0));
  view.created_at = row.Int(1);
  view.webhook_url = row.OptText(2);
  view.images_total = static_cast<int>(row.Int(3));
  view.images_done = static_cast<int>(row.Int(4));
  view.images_failed = static_cast<int>(row.Int(5));
  view.owner = row.OptText(9);
  view.images_reused = static_cast<int>(row.Int(10));
  view.round = row.Int(11);
  // A plan this version cannot read (written by a newer one) shows as the seed's.
  view.outputs = request::DecodePlan(row.Text(12)).value_or(request::OutputPlan{});
  if (!row.IsNull(6)) {
    view.webhook = request::ViewOfWebhook(
        row.Text(6), static_cast<int>(row.Int(7)),
        row.IsNull(8) ? std::nullopt : std::optional<int>(static_cast<int>(row.Int(8))));
  }
  return view;
}

// A request's products have the positions 0, 1, ... in file order (CreateRequest), so a page
// starts at its position in the product_entries_request index instead of skipping `offset` rows,
// and the count is the last position + 1: both cost the page, not the request (a page at offset
// 5,000 of 10,000 took 12 ms on PostgreSQL with OFFSET and count(*)).

// $1 request_id, $2 offset, $3 limit (numbered in the order they appear: SQLite numbers "$n"
// parameters so): the products of a ProductRange, in file order.
inline constexpr std::string_view kProductPage =
    "SELECT id, serial_no, product_name, input_urls, output_urls FROM product_entries "
    "WHERE request_id = $1 AND position >= $2 ORDER BY position LIMIT $3";

// $1 request_id: how many products it has.
inline constexpr std::string_view kProductCount =
    "SELECT coalesce(max(position) + 1, 0) FROM product_entries WHERE request_id = $1";

// $1 request_id, $2 and $3 the first and last position of a page (LastPosition): the images the
// status shows more of, failed or waiting to be retried (an error), and done with their sizes;
// for request::AttachImages. A request's products have ids ascending in file order, so the page's
// images are those between its first and last product's ids, read by product (images_product):
// the bounds come from the statement itself, so that it needs nothing from the page's products
// and can be sent with them (PostgreSQL's pipeline). "|| ''" keeps SQLite, which has no
// statistics, from reading every image of the request by images_request and sorting them (a page
// of 100 of 10,000 x 5 took 33 ms). A done image's URL is not shown (its product lists it): it
// is left out, one string fewer per image to send and copy.
inline constexpr std::string_view kShownImages =
    "SELECT product_id, idx, CASE WHEN state = 'done' THEN NULL ELSE url END, state, error, "
    "attempts, input_bytes, output_bytes, reused, variants "
    "FROM images WHERE request_id || '' = $1 AND product_id BETWEEN "
    "(SELECT id FROM product_entries WHERE request_id = $1 AND position >= $2 "
    "ORDER BY position LIMIT 1) AND "
    "(SELECT id FROM product_entries WHERE request_id = $1 AND position <= $3 "
    "ORDER BY position DESC LIMIT 1) "
    "AND ((error IS NOT NULL AND state <> 'done') OR (state = 'done' AND input_bytes IS NOT NULL)) "
    "ORDER BY product_id, idx";

// The limit that reads every product of a range without one.
inline int64_t LimitOf(const request::ProductRange& range) {
  return range.limit.value_or(std::numeric_limits<int64_t>::max());
}

// The position of a range's last product (before its offset when its limit is 0), however far
// its limit reaches: positions are INTEGER columns.
inline int64_t LastPosition(const request::ProductRange& range) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  return std::min(kMax, range.offset + std::min(kMax, LimitOf(range)) - 1);
}

// What the image cache knows of a URL ($1) in a variant ($2), with its content's stored output.
// The entry is as old as the older of its two parts: the URL's last answer and the output.
inline constexpr std::string_view kFindSource =
    "SELECT s.sha256, s.etag, s.last_modified, "
    "CASE WHEN s.checked_at < c.stored_at THEN s.checked_at ELSE c.stored_at END, c.output_url, "
    "s.input_bytes, c.output_bytes, c.variants FROM image_sources s JOIN image_contents c "
    "ON c.sha256 = s.sha256 AND c.variant = s.variant "
    "WHERE s.url = $1 AND s.variant = $2 AND c.output_url IS NOT NULL";

template <typename Row>
request::CachedSource CachedSourceOfRow(const Row& row) {
  return {row.Text(0),    row.OptText(1),
          row.OptText(2), row.Int(3),
          row.Text(4),    row.Int(5),
          row.Int(6),     request::DecodeVariantOutputs(row.OptText(7).value_or(""))};
}

// $1 url, $2 variant, $3 sha256, $4 etag, $5 last_modified, $6 input_bytes, $7 now.
inline constexpr std::string_view kRememberSource =
    "INSERT INTO image_sources (url, variant, sha256, etag, last_modified, input_bytes, "
    "checked_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (url, variant) DO UPDATE SET "
    "sha256 = excluded.sha256, etag = excluded.etag, last_modified = excluded.last_modified, "
    "input_bytes = excluded.input_bytes, checked_at = excluded.checked_at";

// $1 sha256, $2 variant, $3 owner, $4 claimed_until: the content is claimed by `owner`.
inline constexpr std::string_view kClaimContent =
    "INSERT INTO image_contents (sha256, variant, owner, claimed_until) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (sha256, variant) DO UPDATE SET owner = excluded.owner, "
    "claimed_until = excluded.claimed_until";

// $1 output_url, $2 output_bytes, $3 variants, $4 now, $5 sha256, $6 variant, $7 owner: only the
// claim's holder records its output (one whose claim ran out and was taken over lost it).
inline constexpr std::string_view kStoreContent =
    "UPDATE image_contents SET output_url = $1, output_bytes = $2, variants = $3, stored_at = $4, "
    "owner = NULL, claimed_until = 0 WHERE sha256 = $5 AND variant = $6 AND owner = $7";

// $1 sha256, $2 variant: the cache's row for some content, for request::DecideContent.
inline constexpr std::string_view kContentRow =
    "SELECT output_url, output_bytes, stored_at, owner, claimed_until, variants FROM "
    "image_contents "
    "WHERE sha256 = $1 AND variant = $2";

// $1 sha256, $2 variant, $3 owner.
inline constexpr std::string_view kReleaseContent =
    "UPDATE image_contents SET owner = NULL, claimed_until = 0 "
    "WHERE sha256 = $1 AND variant = $2 AND owner = $3";

// $1 sha256, $2 variant.
inline constexpr std::string_view kForgetContent =
    "UPDATE image_contents SET output_url = NULL, stored_at = 0 WHERE sha256 = $1 AND variant = $2";

// $1 before, $2 now: entries older than the maximum age (a content's live claim is kept).
inline constexpr std::string_view kPurgeSources = "DELETE FROM image_sources WHERE checked_at < $1";
inline constexpr std::string_view kPurgeContents =
    "DELETE FROM image_contents WHERE stored_at < $1 AND claimed_until < $2";

// $1 done, $2 failed, $3 reused (a request::ImageTally), $4 request_id: answers the final images,
// the images and the webhook URL, for request::AfterFinalImage. The row lock it takes serialises
// the last images of a request: exactly one transaction sees every image final and completes it.
inline constexpr std::string_view kCountFinalImages =
    "UPDATE requests SET images_done = images_done + $1, images_failed = images_failed + $2, "
    "images_reused = images_reused + $3 WHERE request_id = $4 "
    "RETURNING images_done + images_failed, images_total, webhook_url";

// $1 now, $2 webhook_state, $3 webhook_next_at, $4 request_id (request::Completion).
inline constexpr std::string_view kCompleteRequest =
    "UPDATE requests SET status = 'completed', completed_at = $1, webhook_state = $2, "
    "webhook_next_at = $3 WHERE request_id = $4 AND status IN ('pending', 'processing')";

// $1 images retried, $2 request_id: the request's next round (RequestWriter::RetryRequest).
inline constexpr std::string_view kRetryRequestUpdate =
    "UPDATE requests SET status = 'processing', images_failed = images_failed - $1, "
    "completed_at = NULL, retry_round = retry_round + 1, webhook_state = NULL, "
    "webhook_attempts = 0, webhook_next_at = NULL, webhook_last_status = NULL "
    "WHERE request_id = $2";

// RecordImages' answer from what its transaction did: per result, its request when it was taken
// (nothing when its lease was lost), and the requests it completed with a webhook to send.
inline std::vector<Recorded> RecordedOf(const std::vector<std::optional<std::string>>& taken,
                                        const std::set<std::string>& webhook_due) {
  std::vector<Recorded> recorded;
  recorded.reserve(taken.size());
  for (const std::optional<std::string>& request_id : taken) {
    recorded.push_back({.taken = request_id.has_value(),
                        .webhook_due = request_id && webhook_due.contains(*request_id)});
  }
  return recorded;
}

}  // namespace imgproc::store

#endif  // IMGPROC_STORE_REQUEST_ROW_H_
