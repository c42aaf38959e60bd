#include "storage/imgbb_storage.h"

#include <nlohmann/json.hpp>

#include "request/outputs.h"

namespace imgproc::storage {

ImgbbStorage::ImgbbStorage(std::string api_key, std::string upload_url, net::HttpClient& http)
    : api_key_(std::move(api_key)), upload_url_(std::move(upload_url)), http_(http) {
  // The upload URL is the operator's configuration, not user input: no SSRF restriction.
  options_.allow_private = true;
  options_.total_timeout = std::chrono::seconds(60);
  options_.max_body_bytes = 1 << 20;
}

Result<std::string> ImgbbStorage::Put(const std::string& /*request_id*/, const std::string& name,
                                      const std::string& bytes) {
  auto response = http_.PostForm(upload_url_,
                                 {{"key", api_key_, "", ""},
                                  {"image", bytes, name, request::ContentTypeOfName(name)},
                                  {"name", name, "", ""}},
                                 options_);
  if (!response.ok()) {
    return Status(response.status().code(), "upload failed: " + response.status().message());
  }
  auto url = ParseImgbbResponse(response->status, response->body);
  if (!url.ok() && url.status().transient()) {
    if (auto it = response->headers.find("retry-after"); it != response->headers.end()) {
      Status status = url.status();
      return status.set_retry_after(RetryAfter(it->second));
    }
  }
  return url;
}

bool ImgbbStorage::Holds(const std::string& url) { return url.rfind("https://i.ibb.co/", 0) == 0; }

Result<std::string> ParseImgbbResponse(long http_status, const std::string& body) {
  const auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  std::string message;
  if (json.is_object()) {
    if (http_status == 200) {
      const auto data = json.find("data");
      if (data != json.end() && data->is_object()) {
        const auto url = data->find("url");
        if (url != data->end() && url->is_string() && !url->get<std::string>().empty()) {
          return url->get<std::string>();
        }
      }
      return Permanent("upload failed: ImgBB answer has no data.url");
    }
    // ImgBB errors: {"status_code":400,"error":{"message":"...","code":100},"status_txt":"..."}
    const auto error = json.find("error");
    if (error != json.end() && error->is_object()) {
      const auto m = error->find("message");
      if (m != error->end() && m->is_string()) message = m->get<std::string>();
    }
  }
  if (message.empty()) message = "HTTP " + std::to_string(http_status);
  const std::string text = "upload failed: ImgBB: " + message;
  const bool rate_limited = message.find("Rate limit") != std::string::npos;
  if (rate_limited || http_status == 429 || http_status >= 500) return Transient(text);
  return Permanent(text);
}

}  // namespace imgproc::storage
