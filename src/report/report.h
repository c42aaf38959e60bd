// What users read about a request, made in one place for the status API, the webhook and
// `imgproc process`: the product objects (the original design's four keys, with our extensions
// where they are shown), the status body, the webhook body and the output CSV.
#ifndef IMGPROC_REPORT_REPORT_H_
#define IMGPROC_REPORT_REPORT_H_

#include <optional>
#include <string>

#include "request/request.h"

namespace imgproc::report {

// The body of GET /status/<id>/: request_id, status, progress, products (the four keys, and
// "Image Errors", "Image Retries" and "Image Sizes"), and the webhook's delivery when there is one.
// With a `page` (the products of the view are that range): "page" with its offset, limit and the
// total of products. A request that asked for other outputs than the seed's has "outputs" (its
// settings), and with variants each product has "Variants": per variant, its URLs as "Output
// Image Urls" has the main ones (and each size in "Image Sizes" its variants).
std::string StatusJson(const request::RequestView& request,
                       const std::optional<request::ProductRange>& page = std::nullopt);

// The webhook's body: the JSON list of the four-key product objects, in file order ("Variants"
// too when the request has variants).
std::string WebhookJson(const request::RequestView& request);

// The output CSV: Serial Number, Product Name, Input Image Urls, Output Image Urls, a column
// "<variant> Image Urls" per variant of `outputs` (OutputPlan::variants), and Errors
// ("#<index> <url>: <error>; ...") when `with_errors`; CRLF lines, cells escaped against CSV
// injection. Whole, or in pieces: its header line, then the lines of the products in turn.
std::string OutputCsv(const request::RequestView& request, bool with_errors);
std::string OutputCsvHeader(const request::OutputPlan& outputs, bool with_errors);
std::string OutputCsvLines(const std::vector<request::ProductView>& products,
                           const request::OutputPlan& outputs, bool with_errors);

// The settings of an output as the API shows them:
// {"format": "webp", "quality": 70, "max_width": 400, "max_height": 400, "progressive": false}
// (0 for no bound). The body of GET /api/p/presets: {"presets": {"<name>": <settings>, ...}}; and
// the object alone, the form PRESETS takes.
std::string PresetsJson(const request::Presets& presets);
std::string PresetsObjectJson(const request::Presets& presets);

}  // namespace imgproc::report

#endif  // IMGPROC_REPORT_REPORT_H_
