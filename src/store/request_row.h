// The row of `requests` that both stores read for a request, mapped to its view in one place.
// Internal to src/store: each store selects these columns, in this order, with its own SQL:
//   status, created_at, webhook_url, images_total, images_done, images_failed,
//   webhook_state, webhook_attempts, webhook_last_status, owner
#ifndef IMGPROC_STORE_REQUEST_ROW_H_
#define IMGPROC_STORE_REQUEST_ROW_H_

#include <optional>
#include <string>

#include "request/request.h"

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
  if (!row.IsNull(6)) {
    view.webhook = request::ViewOfWebhook(
        row.Text(6), static_cast<int>(row.Int(7)),
        row.IsNull(8) ? std::nullopt : std::optional<int>(static_cast<int>(row.Int(8))));
  }
  return view;
}

}  // namespace imgproc::store

#endif  // IMGPROC_STORE_REQUEST_ROW_H_
