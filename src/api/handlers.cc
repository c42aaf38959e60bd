#include "api/handlers.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string_view>

#include "api/assets.h"
#include "common/logging.h"
#include "net/address.h"
#include "report/report.h"
#include "request/request.h"

namespace imgproc::api {
namespace {

using json = nlohmann::ordered_json;

Response JsonResponse(int status, const json& body) {
  Response r;
  r.status = status;
  // Replace rather than throw on invalid UTF-8 (say, in a remote server's error text).
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

// "/status/<id>/" and "/status/<id>" both name <id>; returns nullopt when `path` is not
// prefix + one segment (+ optional slash).
std::optional<std::string> SegmentAfter(const std::string& path, std::string_view prefix,
                                        std::string_view suffix = "/") {
  if (path.rfind(prefix, 0) != 0) return std::nullopt;
  std::string rest = path.substr(prefix.size());
  if (rest.size() >= suffix.size() &&
      rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0) {
    rest.resize(rest.size() - suffix.size());
  } else if (suffix != "/") {
    return std::nullopt;
  }
  if (rest.empty() || rest.find('/') != std::string::npos) return std::nullopt;
  return rest;
}

// RFC 3339 UTC with milliseconds: 2026-01-31T12:00:00.000Z.
std::string FormatTime(request::Millis millis) {
  const std::time_t seconds = static_cast<std::time_t>(millis / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  const size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(millis % 1000));
  return text;
}

// A status response sending `body`, or `gzip_body` when the client accepts gzip and it is not
// empty, from where `keeper` keeps it: pointers into the kept entry that keep it alive, not copies.
template <typename Kept>
Response SharedStatus(const std::shared_ptr<const Kept>& keeper, const std::string& body,
                      const std::string& gzip_body, bool accepts_gzip) {
  Response response;
  response.headers["Vary"] = "Accept-Encoding";
  if (accepts_gzip && !gzip_body.empty()) {
    response.headers["Content-Encoding"] = "gzip";
    response.shared_body = std::shared_ptr<const std::string>(keeper, &gzip_body);
  } else {
    response.shared_body = std::shared_ptr<const std::string>(keeper, &body);
  }
  return response;
}

}  // namespace

bool AcceptsGzip(const Request& request) {
  auto it = request.headers.find("accept-encoding");
  if (it == request.headers.end()) return false;
  std::istringstream list(it->second);
  for (std::string item; std::getline(list, item, ',');) {  // e.g. "gzip;q=0.8"
    std::erase_if(item, [](unsigned char c) { return std::isspace(c); });
    std::transform(item.begin(), item.end(), item.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const std::string coding = item.substr(0, item.find(';'));
    const size_t q = item.find(";q=");
    const bool refused = q != std::string::npos && std::strtod(item.c_str() + q + 3, nullptr) == 0;
    if ((coding == "gzip" || coding == "*") && !refused) return true;
  }
  return false;
}

Response JsonError(int status, const std::string& message) {
  return JsonResponse(status, {{"error", message}});
}

std::string KeyDigest(const std::string& key) { return request::Sha256Hex(key); }

Api::Api(store::RequestWriter& writer, store::RequestReader& reader, ApiOptions options,
         std::function<void()> on_created)
    : writer_(writer),
      reader_(reader),
      options_(std::move(options)),
      on_created_(std::move(on_created)) {}

Response Api::Handle(const Request& request) {
  const std::string& path = request.path;
  const bool get = request.method == "GET" || request.method == "HEAD";
  if (path == "/healthz") return get ? Health() : JsonError(405, "Method not allowed");
  if (path == "/readyz") return get ? Ready() : JsonError(405, "Method not allowed");
  if (path == "/metrics") return get ? Metrics() : JsonError(405, "Method not allowed");
  // The web page and the OpenAPI document: public, like the API's shape; the page asks for an
  // API key itself when keys are on.
  if (auto asset = FindAsset(path)) {
    if (!get) return JsonError(405, "Method not allowed");
    Response r;
    r.content_type = std::string(asset->content_type);
    r.body = std::string(asset->body);
    r.headers["X-Content-Type-Options"] = "nosniff";
    r.headers["Cache-Control"] = "no-cache";
    if (r.content_type.rfind("text/html", 0) == 0) {
      // Only our own script and style; thumbnails come from the image hosts and our media.
      r.headers["Content-Security-Policy"] =
          "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
          "img-src 'self' http: https: data: blob:; base-uri 'none'; form-action 'none'; "
          "frame-ancestors 'none'";
      r.headers["Referrer-Policy"] = "no-referrer";
    }
    return r;
  }

  const bool list = path == "/api/p/requests/" || path == "/api/p/requests";
  const bool upload = path == "/api/p/upload/" || path == "/api/p/upload";
  // Anything under /status/ that is not one UUID is an unknown request, not an unknown route.
  const bool status = path.rfind("/status/", 0) == 0;
  const auto csv_id = SegmentAfter(path, "/api/p/requests/", "/output.csv");
  auto cancel_id = SegmentAfter(path, "/api/p/requests/", "/cancel");
  if (!cancel_id) cancel_id = SegmentAfter(path, "/api/p/requests/", "/cancel/");
  auto retry_id = SegmentAfter(path, "/api/p/requests/", "/retry");
  if (!retry_id) retry_id = SegmentAfter(path, "/api/p/requests/", "/retry/");
  const bool media = path.rfind("/media/", 0) == 0;
  const bool presets = path == "/api/p/presets" || path == "/api/p/presets/";
  if (!upload && !status && !csv_id && !cancel_id && !retry_id && !media && !list && !presets) {
    return JsonError(404, "Not found");
  }
  if (upload || cancel_id || retry_id ? request.method != "POST" : !get) {
    return JsonError(405, "Method not allowed");
  }

  auto caller = Caller(request);
  if (!caller.ok()) return Unauthorized(caller.status(), upload);
  if (upload) return Upload(request, *caller);
  if (cancel_id) return Cancel(*cancel_id, *caller);
  if (retry_id) return Retry(*retry_id, *caller);
  if (list) return ListRequests(request, *caller);
  if (presets) {
    Response r;
    r.content_type = "application/json";
    r.body = report::PresetsJson(options_.presets);
    return r;
  }
  if (status) {
    const std::string id = SegmentAfter(path, "/status/").value_or("");
    if (!request.query.contains("offset") && !request.query.contains("limit")) {
      return RequestStatus(id, *caller, AcceptsGzip(request));
    }
    return StatusPage(id, request, *caller);
  }
  if (csv_id) {
    auto it = request.query.find("errors");
    const bool with_errors =
        it != request.query.end() && (it->second == "1" || it->second == "true");
    return OutputCsv(*csv_id, with_errors, *caller);
  }
  return Media(path.substr(7), *caller);
}

std::optional<Response> Api::Admit(const Request& head) {
  const bool upload = head.path == "/api/p/upload/" || head.path == "/api/p/upload";
  // Only the upload reads its body: anything else is answered from its head.
  if (!upload || head.method != "POST") return Handle(head);
  if (auto caller = Caller(head); !caller.ok()) return Unauthorized(caller.status(), upload);
  return std::nullopt;
}

Response Api::Unauthorized(const imgproc::Status& why, bool upload) {
  if (upload) Rejected(metrics::RejectReason::kUnauthorized);
  Response r = JsonError(401, why.message());
  r.headers["WWW-Authenticate"] = "Bearer";
  return r;
}

Result<std::optional<std::string>> Api::Caller(const Request& request) const {
  if (options_.api_key_digests.empty()) return std::optional<std::string>();
  // "Bearer <key>", the scheme in any case (RFC 7235), one or more spaces before the key.
  const auto it = request.headers.find("authorization");
  const std::string_view value = it == request.headers.end() ? "" : std::string_view(it->second);
  const size_t space = value.find(' ');
  const size_t key_start = value.find_first_not_of(' ', space);
  if (space != 6 || key_start == std::string_view::npos ||
      !std::equal(value.begin(), value.begin() + 6, "bearer", [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == b;
      })) {
    return InvalidArgument("Unauthorized: send Authorization: Bearer <API key>");
  }
  std::string digest = KeyDigest(std::string(value.substr(key_start)));
  if (!options_.api_key_digests.contains(digest)) {
    return InvalidArgument("Unauthorized: unknown API key");
  }
  return std::optional<std::string>(std::move(digest));
}

void Api::CountTransportRejection(const std::string& path, int status) {
  if (status == 413 && (path == "/api/p/upload/" || path == "/api/p/upload")) {
    Rejected(metrics::RejectReason::kTooLarge);
  }
}

void Api::Rejected(metrics::RejectReason reason) const {
  if (options_.metrics != nullptr) options_.metrics->UploadRejected(reason);
}

Response Api::Upload(const Request& request, const std::optional<std::string>& owner) {
  const auto file = request.form.find("csv_file");
  if (file == request.form.end()) {
    Rejected(metrics::RejectReason::kNoFile);
    if (request.form_problem.empty()) return JsonError(400, "No CSV file provided");
    return JsonResponse(400, {{"error", "No CSV file provided"},
                              {"details", "multipart body: " + request.form_problem}});
  }
  const std::string& data = file->second.content;
  if (data.size() > options_.csv_limits.max_bytes) {
    Rejected(metrics::RejectReason::kTooLarge);
    return JsonError(
        413, "CSV file is larger than " + std::to_string(options_.csv_limits.max_bytes) + " bytes");
  }

  std::optional<std::string> webhook_url;
  if (auto w = request.form.find("webhook_url"); w != request.form.end()) {
    std::string url = w->second.content;
    const auto first = url.find_first_not_of(" \t\r\n");
    const auto last = url.find_last_not_of(" \t\r\n");
    url = first == std::string::npos ? "" : url.substr(first, last - first + 1);
    if (!url.empty()) {
      if (url.size() > 2048 || !net::IsHttpUrl(url)) {
        Rejected(metrics::RejectReason::kInvalidWebhook);
        return JsonError(400, "Invalid webhook_url");
      }
      webhook_url = url;
    }
  }

  // refresh=true: the image cache is not read for this request's images (they are made anew).
  bool refresh = false;
  if (auto r = request.form.find("refresh"); r != request.form.end()) {
    const std::string& value = r->second.content;
    if (value == "true" || value == "1") {
      refresh = true;
    } else if (!value.empty() && value != "false" && value != "0") {
      return JsonError(400, "Invalid refresh: use true or false");
    }
  }

  // What the images become: the seed's JPEG unless the form asks for other settings or presets.
  const auto field = [&](const char* name) -> std::optional<std::string> {
    auto it = request.form.find(name);
    if (it == request.form.end()) return std::nullopt;
    return it->second.content;
  };
  const request::OutputChoice outputs =
      request::ChooseOutputs({field("format"), field("quality"), field("max_width"),
                              field("max_height"), field("progressive"), field("presets")},
                             options_.presets);
  if (!outputs.plan) {
    Rejected(metrics::RejectReason::kInvalidOutputs);
    return JsonResponse(400, {{"error", "Invalid " + outputs.field},
                              {"field", outputs.field},
                              {"details", outputs.error}});
  }

  csv::ParseResult parsed = csv::ParseProducts(data, options_.csv_limits);
  if (!parsed.ok()) {
    json details = json::array();
    for (const auto& p : parsed.problems) {
      details.push_back({{"row", p.row}, {"column", p.column}, {"message", p.message}});
    }
    Rejected(metrics::RejectReason::kInvalidCsv);
    return JsonResponse(400, {{"error", "Invalid CSV format"}, {"details", details}});
  }

  const std::string id = request::NewRequestId();
  const logging::ScopedRequestId log_scope(id);
  size_t images = 0;
  for (const auto& row : parsed.rows) images += row.input_urls.size();
  const size_t products = parsed.rows.size();
  store::NewRequest stored{id,
                           webhook_url,
                           owner,
                           owner ? *owner : "ip:" + request.remote_address,
                           options_.max_client_images,
                           csv::ToProducts(std::move(parsed.rows)),
                           refresh,
                           request::EncodePlan(*outputs.plan)};
  if (auto s = writer_.CreateRequest(stored); !s.ok()) {
    if (s.code() == StatusCode::kResourceExhausted) {
      Rejected(metrics::RejectReason::kTooManyQueued);
      Response r = JsonError(429, s.message());
      r.headers["Retry-After"] = "60";
      return r;
    }
    spdlog::error("upload: cannot store request: {}", s.message());
    return JsonError(503, "Service unavailable: cannot store the request, try again");
  }
  spdlog::info("request {}: accepted {} products, {} URL entries", id, products, images);
  if (options_.metrics != nullptr) options_.metrics->UploadAccepted();
  if (on_created_) on_created_();
  return JsonResponse(202, {{"request_id", id}});
}

Result<request::RequestView> Api::LoadRequest(const std::string& request_id,
                                              const std::optional<std::string>& caller,
                                              const request::ProductRange& range) {
  if (!request::IsUuid(request_id)) return NotFound("Request ID not found");
  auto view = reader_.GetRequestPage(request_id, range);
  if (view.ok() && caller && view->owner != caller) return NotFound("Request ID not found");
  return view;
}

Response Api::Cancel(const std::string& request_id, const std::optional<std::string>& caller) {
  auto verdict = writer_.CancelRequest(request_id, caller);
  if (!verdict.ok()) {
    if (verdict.status().code() == StatusCode::kNotFound) {
      return JsonError(404, "Request ID not found");
    }
    const logging::ScopedRequestId log_scope(request_id);
    spdlog::error("request {}: cancel: {}", request_id, verdict.status().message());
    return JsonError(503, "Service unavailable: cannot cancel the request, try again");
  }
  switch (*verdict) {
    case request::CancelVerdict::kAlreadyCompleted:
      return JsonError(409, "Request already completed: nothing to cancel");
    case request::CancelVerdict::kCancel: {
      const logging::ScopedRequestId log_scope(request_id);
      spdlog::info("request {}: cancelled", request_id);
      if (options_.metrics != nullptr) options_.metrics->RequestCancelled();
      break;
    }
    case request::CancelVerdict::kAlreadyCancelled:
      break;
  }
  // As GET /status/<id>/ shows it now: cancelled, with what was done before.
  return RequestStatus(request_id, caller, /*accepts_gzip=*/false);
}

Response Api::Retry(const std::string& request_id, const std::optional<std::string>& caller) {
  auto verdict = writer_.RetryRequest(request_id, caller);
  if (!verdict.ok()) {
    if (verdict.status().code() == StatusCode::kNotFound) {
      return JsonError(404, "Request ID not found");
    }
    const logging::ScopedRequestId log_scope(request_id);
    spdlog::error("request {}: retry: {}", request_id, verdict.status().message());
    return JsonError(503, "Service unavailable: cannot retry the request, try again");
  }
  switch (*verdict) {
    case request::RetryVerdict::kStillRunning:
      return JsonError(409, "Request still running: retry it once it has finished");
    case request::RetryVerdict::kNothingFailed:
      return JsonError(409, "Request has no failed images: nothing to retry");
    case request::RetryVerdict::kRetry:
      break;
  }
  {
    const logging::ScopedRequestId log_scope(request_id);
    spdlog::info("request {}: retrying its failed images", request_id);
  }
  if (options_.metrics != nullptr) options_.metrics->RequestRetried();
  finished_statuses_.Erase(request_id);
  // The answer is the status the retry made (`processing`), read before the workers are woken:
  // a quick image could otherwise complete the request before it is read.
  Response answer = RequestStatus(request_id, caller, /*accepts_gzip=*/false);
  if (on_created_) on_created_();  // its images are queued again
  return answer;
}

Response Api::LoadError(const std::string& request_id, const imgproc::Status& status) {
  if (status.code() == StatusCode::kNotFound) return JsonError(404, "Request ID not found");
  const logging::ScopedRequestId log_scope(request_id);
  spdlog::error("request {}: {}", request_id, status.message());
  return JsonError(503, "Service unavailable: cannot read the request, try again");
}

Response Api::RequestStatus(const std::string& request_id, const std::optional<std::string>& caller,
                            bool accepts_gzip) {
  if (auto cached = finished_statuses_.Find(request_id)) {
    if (caller && cached->owner != caller) return JsonError(404, "Request ID not found");
    // Still its status unless it was retried since (by any API process).
    auto round = reader_.RequestRound(request_id);
    if (round.ok() && *round == cached->round) {
      return SharedStatus(cached, cached->body, cached->gzip_body, accepts_gzip);
    }
    finished_statuses_.Erase(request_id);
  }
  const auto built = BuildStatusOnce(request_id);
  if (!built->loaded) return built->response;
  if (caller && built->owner != caller) return JsonError(404, "Request ID not found");
  if (accepts_gzip) {
    std::call_once(built->gzip_once, [&] { built->gzip_body = Gzip(built->response.body); });
  }
  return SharedStatus(built, built->response.body, built->gzip_body, accepts_gzip);
}

std::shared_ptr<const Api::BuiltStatus> Api::BuildStatusOnce(const std::string& request_id) {
  std::promise<std::shared_ptr<const BuiltStatus>> promise;
  std::shared_future<std::shared_ptr<const BuiltStatus>> under_way;
  {
    MutexLock lock(&building_mu_);
    auto [it, first] = building_.try_emplace(request_id);
    if (first) {
      it->second = promise.get_future().share();
    } else {
      under_way = it->second;
      ++sharing_builds_;
    }
  }
  if (under_way.valid()) {
    struct Leave {
      Api* api;
      ~Leave() {
        MutexLock lock(&api->building_mu_);
        --api->sharing_builds_;
      }
    } leave{this};
    return under_way.get();
  }
  // Out of the map before the result is handed out: a caller arriving after the build starts a
  // new one, so a poll's status is never older than the build under way when it arrived.
  auto done = [&] {
    MutexLock lock(&building_mu_);
    building_.erase(request_id);
  };
  try {
    auto built = std::make_shared<BuiltStatus>();
    BuildStatus(request_id, *built);
    done();
    promise.set_value(built);
    return built;
  } catch (...) {
    done();
    promise.set_exception(std::current_exception());
    throw;
  }
}

void Api::BuildStatus(const std::string& request_id, BuiltStatus& built) {
  auto view = LoadRequest(request_id, std::nullopt);
  if (!view.ok()) {
    built.response = LoadError(request_id, view.status());
    return;
  }
  built.loaded = true;
  built.owner = view->owner;
  Response response;
  response.body = report::StatusJson(*view);
  const bool webhook_settled = !view->webhook || view->webhook->settled();
  if (request::IsFinished(view->status) && webhook_settled) {
    finished_statuses_.Put(request_id, {view->owner, view->round, response.body, {}});
    // Put encoded it: the callers sharing this build take that encoding instead of making another.
    if (auto kept = finished_statuses_.Find(request_id)) {
      std::call_once(built.gzip_once, [&] { built.gzip_body = kept->gzip_body; });
    }
  }
  built.response = std::move(response);
}

namespace {
constexpr int64_t kCsvPage = 500;  // products read and sent at a time (Api::OutputCsv)
}  // namespace

Response Api::OutputCsv(const std::string& request_id, bool with_errors,
                        const std::optional<std::string>& caller) {
  // Read and sent a page of products at a time (kCsvPage), so memory does not grow with the
  // request; the first page is read here, so an unknown id or a store error is still a 404 or a
  // 503. Each page is its own snapshot: of a request still running, a later page may show more
  // outputs than an earlier one did.
  auto first = LoadRequest(request_id, caller, {0, kCsvPage});
  if (!first.ok()) return LoadError(request_id, first.status());
  Response r;
  r.content_type = "text/csv; charset=utf-8";
  r.headers["Content-Disposition"] = "attachment; filename=\"output-" + request_id + ".csv\"";
  r.stream = [this, request_id, with_errors, outputs = std::move(first->outputs),
              page = std::move(first->products), read = true, next = int64_t{0}, header = true,
              done = false]() mutable -> Result<std::string> {
    if (done) return std::string();  // the end
    std::string piece = header ? report::OutputCsvHeader(outputs, with_errors) : std::string();
    header = false;
    if (!read) {
      auto more = reader_.GetRequestPage(request_id, {next, kCsvPage});
      if (!more.ok()) return more.status();
      page = std::move(more->products);
    }
    read = false;
    piece += report::OutputCsvLines(page, outputs, with_errors);
    next += static_cast<int64_t>(page.size());
    done = static_cast<int64_t>(page.size()) < kCsvPage;  // a short page is the last
    page.clear();
    return piece;
  };
  return r;
}

Response Api::Media(const std::string& relative, const std::optional<std::string>& caller) {
  if (!options_.media) return JsonError(404, "Not found");
  // A request's own files are its owner's. The image cache's objects/ are named by the SHA-256 of
  // their input, which only someone holding that input can name: any valid key may read them (it
  // already has the image they were made from).
  const std::string folder = relative.substr(0, relative.find('/'));
  // Its owner is all that is asked: none of its products are read.
  if (caller && folder != "objects" && !LoadRequest(folder, caller, {0, 0}).ok()) {
    return JsonError(404, "Not found");
  }
  const auto file = options_.media(relative);
  if (!file) return JsonError(404, "Not found");
  std::ifstream in(*file, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  if (!in) return JsonError(404, "Not found");
  Response r;
  r.content_type = request::ContentTypeOfName(relative);
  r.body = content.str();
  r.headers["Cache-Control"] = "public, max-age=31536000, immutable";
  r.headers["X-Content-Type-Options"] = "nosniff";
  r.ranges = true;
  return r;
}

namespace {

// A query parameter that must be a whole number from 0 to kMaxPageNumber, when present.
constexpr int64_t kMaxPageNumber = 1'000'000'000;
Result<std::optional<int64_t>> PageNumber(const Request& request, const std::string& name) {
  const auto it = request.query.find(name);
  if (it == request.query.end()) return std::optional<int64_t>();
  const std::string& text = it->second;
  if (text.empty() || text.size() > 10 ||
      text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoll(text) > kMaxPageNumber) {
    return InvalidArgument(name + " must be a whole number from 0 to " +
                           std::to_string(kMaxPageNumber));
  }
  return std::optional<int64_t>(std::stoll(text));
}

}  // namespace

Status ReadWholeBody(Response& response) {
  if (!response.stream) return Status::Ok();
  while (true) {
    Result<std::string> piece = response.stream();
    if (!piece.ok()) return piece.status();
    if (piece->empty()) break;
    response.body += *piece;
  }
  response.stream = nullptr;
  return Status::Ok();
}

Response Api::StatusPage(const std::string& request_id, const Request& request,
                         const std::optional<std::string>& caller) {
  auto offset = PageNumber(request, "offset");
  if (!offset.ok()) return JsonError(400, offset.status().message());
  auto limit = PageNumber(request, "limit");
  if (!limit.ok()) return JsonError(400, limit.status().message());
  const request::ProductRange range{offset->value_or(0), *limit};
  auto view = LoadRequest(request_id, caller, range);
  if (!view.ok()) return LoadError(request_id, view.status());
  Response response;
  response.body = report::StatusJson(*view, range);
  return response;
}

Response Api::ListRequests(const Request& request, const std::optional<std::string>& caller) {
  int limit = 20;
  if (auto it = request.query.find("limit"); it != request.query.end()) {
    const std::string& text = it->second;
    if (text.empty() || text.size() > 3 ||
        text.find_first_not_of("0123456789") != std::string::npos) {
      return JsonError(400, "limit must be an integer from 1 to 100");
    }
    limit = std::stoi(text);
    if (limit < 1 || limit > 100) return JsonError(400, "limit must be an integer from 1 to 100");
  }
  auto listed = reader_.ListRequests(caller, limit);
  if (!listed.ok()) {
    spdlog::error("list requests: {}", listed.status().message());
    return JsonError(503, "Service unavailable: cannot read the requests, try again");
  }
  json requests = json::array();
  for (const auto& r : *listed) {
    requests.push_back({{"request_id", r.request_id},
                        {"status", request::ToString(r.status)},
                        {"created_at", FormatTime(r.created_at)},
                        {"progress",
                         {{"images_total", r.images_total},
                          {"images_done", r.images_done},
                          {"images_failed", r.images_failed},
                          {"images_reused", r.images_reused}}}});
  }
  return JsonResponse(200, {{"requests", std::move(requests)}});
}

Response Api::Health() { return JsonResponse(200, {{"status", "ok"}}); }

Response Api::Ready() {
  auto depth = reader_.CountUnfinishedImages();
  if (!depth.ok()) {
    spdlog::warn("readyz: store unavailable: {}", depth.status().message());
    return JsonResponse(503, {{"status", "unavailable"}, {"error", "Store unavailable"}});
  }
  if (options_.broker_ready) {
    if (Status s = options_.broker_ready(); !s.ok()) {
      spdlog::warn("readyz: broker unavailable: {}", s.message());
      return JsonResponse(503, {{"status", "unavailable"}, {"error", "Broker unavailable"}});
    }
  }
  if (options_.storage_ready) {
    if (Status s = options_.storage_ready(); !s.ok()) {
      spdlog::warn("readyz: storage unavailable: {}", s.message());
      return JsonResponse(503, {{"status", "unavailable"}, {"error", "Storage unavailable"}});
    }
  }
  return JsonResponse(200, {{"status", "ready"}});
}

Response Api::Metrics() const {
  Response r;
  r.content_type = metrics::kContentType;
  if (options_.metrics != nullptr) r.body = options_.metrics->Render();
  return r;
}

}  // namespace imgproc::api
