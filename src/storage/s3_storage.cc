#include "storage/s3_storage.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>

#include "net/address.h"
#include "request/request.h"

namespace imgproc::storage {
namespace {

std::string TrimSlashes(std::string text) {
  while (!text.empty() && text.front() == '/') text.erase(text.begin());
  while (!text.empty() && text.back() == '/') text.pop_back();
  return text;
}

// The text between <tag> and </tag> in `xml`, or "" (S3's error bodies are flat and small: no
// XML parser needed for the two fields we read).
std::string XmlField(const std::string& xml, const std::string& tag) {
  const std::string open = "<" + tag + ">";
  const size_t start = xml.find(open);
  if (start == std::string::npos) return "";
  const size_t from = start + open.size();
  const size_t end = xml.find("</" + tag + ">", from);
  if (end == std::string::npos) return "";
  return xml.substr(from, std::min<size_t>(end - from, 200));
}

// The value of query parameter `name` in `url`, or "".
std::string QueryParam(const std::string& url, const std::string& name) {
  const size_t query = url.find('?');
  if (query == std::string::npos) return "";
  const std::string needle = name + "=";
  for (size_t at = query + 1; at < url.size();) {
    const size_t end = std::min(url.find('&', at), url.size());
    if (url.compare(at, needle.size(), needle) == 0) {
      return url.substr(at + needle.size(), end - at - needle.size());
    }
    at = end + 1;
  }
  return "";
}

// Seconds since the Unix epoch of an AmzDate ("20130524T000000Z"), or -1.
int64_t ParseAmzDate(const std::string& text) {
  std::tm tm{};
  if (text.size() != 16 || strptime(text.c_str(), "%Y%m%dT%H%M%SZ", &tm) == nullptr) return -1;
  return static_cast<int64_t>(timegm(&tm));
}

bool Throttled(const std::string& code) {
  static constexpr std::array<std::string_view, 8> kCodes = {
      "SlowDown",      "Throttling",           "ThrottlingException", "RequestTimeout",
      "InternalError", "RequestLimitExceeded", "ServiceUnavailable",  "TooManyRequestsException"};
  return std::find(kCodes.begin(), kCodes.end(), code) != kCodes.end();
}

// What an operator should look at for the permanent errors people meet when setting up.
std::string Hint(const std::string& code, long http_status) {
  if (code == "InvalidAccessKeyId") return ": the access key (AWS_ACCESS_KEY_ID) is not known";
  if (code == "SignatureDoesNotMatch") {
    return ": the secret key (AWS_SECRET_ACCESS_KEY) does not match the access key";
  }
  if (code == "NoSuchBucket") return ": the bucket does not exist (S3_BUCKET)";
  if (code == "AccessDenied") return ": the bucket refuses these credentials";
  if (code == "ExpiredToken" || code == "InvalidToken") {
    return ": the session token (AWS_SESSION_TOKEN) is expired or invalid";
  }
  if (code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect" || http_status == 301) {
    return ": the bucket is in another region or at another endpoint (S3_REGION, S3_ENDPOINT)";
  }
  return "";
}

}  // namespace

std::string S3ErrorCode(const std::string& body) { return XmlField(body, "Code"); }

Status S3Failure(long http_status, const std::string& code,
                 const std::map<std::string, std::string>& headers, const std::string& what,
                 const std::string& bucket) {
  const std::string answer =
      (code.empty() ? "" : code + " ") + "(HTTP " + std::to_string(http_status) + ")";
  std::string text = what + " failed: S3 " + answer + " for bucket '" + bucket + "'";
  if (http_status >= 500 || http_status == 429 || Throttled(code)) {
    Status status = Transient(std::move(text));
    if (auto it = headers.find("retry-after"); it != headers.end()) {
      status.set_retry_after(RetryAfter(it->second));
    }
    return status;
  }
  return Permanent(text + Hint(code, http_status));
}

S3Storage::S3Storage(S3Config config, net::HttpClient& http, Clock& clock)
    : config_(std::move(config)), http_(http), clock_(clock) {
  // The endpoint is the operator's configuration, not user input: no SSRF restriction (a MinIO
  // on the private network is the usual case).
  options_.allow_private = true;
  options_.total_timeout = std::chrono::seconds(60);
  options_.max_redirects = 0;
  // libcurl checks a HEAD's Content-Length (the object's size) against this too.
  options_.max_body_bytes = uint64_t{1} << 40;
  credentials_ = {config_.access_key_id, config_.secret_access_key, config_.session_token};
  config_.prefix = TrimSlashes(config_.prefix);
  while (!config_.public_base_url.empty() && config_.public_base_url.back() == '/') {
    config_.public_base_url.pop_back();
  }

  std::string endpoint = config_.endpoint.empty()
                             ? "https://s3." + config_.region + ".amazonaws.com"
                             : config_.endpoint;
  const size_t scheme_end = endpoint.find("://");
  const std::string scheme =
      scheme_end == std::string::npos ? "https" : endpoint.substr(0, scheme_end);
  const std::string rest =
      scheme_end == std::string::npos ? endpoint : endpoint.substr(scheme_end + 3);
  const size_t slash = std::min(rest.find('/'), rest.size());
  const std::string authority = rest.substr(0, slash);
  const std::string base_path = rest.size() > slash ? TrimSlashes(rest.substr(slash)) : "";
  const std::string base = base_path.empty() ? "" : "/" + base_path;
  // The host without its port ("[::1]:9000" -> "::1"), to tell an IP address.
  std::string host = authority;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else if (const size_t colon = host.rfind(':'); colon != std::string::npos) {
    host.resize(colon);
  }
  // As the AWS SDKs do: an IP address has no subdomains, and a bucket name with dots would not
  // match the endpoint's TLS certificate as a subdomain.
  const bool path_style = config_.force_path_style || net::IsIpLiteral(host) ||
                          host == "localhost" ||
                          (scheme == "https" && config_.bucket.find('.') != std::string::npos);
  if (path_style) {
    origin_ = scheme + "://" + authority;
    bucket_path_ = base + "/" + sigv4::UriEncode(config_.bucket, false);
    key_path_ = bucket_path_ + "/";
  } else {
    origin_ = scheme + "://" + config_.bucket + "." + authority;
    bucket_path_ = base + "/";
    key_path_ = bucket_path_;
  }
}

std::string S3Storage::Key(const std::string& request_id, const std::string& name) const {
  const std::string key = request_id + "/" + name;
  return config_.prefix.empty() ? key : config_.prefix + "/" + key;
}

std::string S3Storage::ObjectUrl(const std::string& key) const {
  return origin_ + key_path_ + sigv4::UriEncode(key, /*keep_slash=*/true);
}

std::string S3Storage::OutputUrl(const std::string& key) const {
  const std::string encoded = sigv4::UriEncode(key, /*keep_slash=*/true);
  if (!config_.public_base_url.empty()) return config_.public_base_url + "/" + encoded;
  return sigv4::PresignGet(credentials_, config_.region, origin_, key_path_ + encoded,
                           clock_.WallMillis(), config_.presign_seconds);
}

Result<net::HttpResponse> S3Storage::Send(const std::string& method, const std::string& url,
                                          std::vector<std::string> headers,
                                          const std::string& body) {
  net::HttpRequest request;
  request.method = method;
  request.url = url;
  // S3 wants the payload's hash (or UNSIGNED-PAYLOAD) in this header, and libcurl signs with it.
  headers.push_back("x-amz-content-sha256: " + request::Sha256Hex(body));
  if (!config_.session_token.empty()) {
    headers.push_back("x-amz-security-token: " + config_.session_token);
  }
  request.headers = std::move(headers);
  request.body = body;
  request.aws_sigv4 = "aws:amz:" + config_.region + ":s3";
  request.user = config_.access_key_id;
  request.password = config_.secret_access_key;
  return http_.Send(request, options_);
}

Result<std::string> S3Storage::Put(const std::string& request_id, const std::string& name,
                                   const std::string& bytes) {
  const std::string key = Key(request_id, name);
  std::vector<std::string> headers = {std::string("Content-Type: ") +
                                      request::ContentTypeOfName(name)};
  if (!config_.cache_control.empty()) headers.push_back("Cache-Control: " + config_.cache_control);
  if (!config_.acl.empty()) headers.push_back("x-amz-acl: " + config_.acl);
  auto response = Send("PUT", ObjectUrl(key), std::move(headers), bytes);
  if (!response.ok()) {
    return Status(response.status().code(),
                  "upload of " + key + " to S3 failed: " + response.status().message());
  }
  if (response->status < 200 || response->status >= 300) {
    return S3Failure(response->status, S3ErrorCode(response->body), response->headers,
                     "upload of " + key, config_.bucket);
  }
  return OutputUrl(key);
}

std::string S3Storage::EncodedKeyOf(const std::string& url) const {
  const std::string path = url.substr(0, url.find('?'));
  for (const std::string& prefix :
       {config_.public_base_url.empty() ? std::string() : config_.public_base_url + "/",
        origin_ + key_path_}) {
    if (!prefix.empty() && path.size() > prefix.size() && path.starts_with(prefix)) {
      return path.substr(prefix.size());
    }
  }
  return "";
}

bool S3Storage::FreshEnough(const std::string& url) const {
  const std::string date = QueryParam(url, "X-Amz-Date");
  const std::string expires_text = QueryParam(url, "X-Amz-Expires");
  if (date.empty() && expires_text.empty()) return true;  // not presigned: does not expire
  int64_t expires = 0;
  std::from_chars(expires_text.data(), expires_text.data() + expires_text.size(), expires);
  const int64_t signed_at = ParseAmzDate(date);
  if (signed_at < 0 || expires <= 0) return false;
  const int64_t left = signed_at + expires - clock_.WallMillis() / 1000;
  return left * 2 >= expires;
}

bool S3Storage::Holds(const std::string& url) {
  const std::string encoded_key = EncodedKeyOf(url);
  if (encoded_key.empty() || !FreshEnough(url)) return false;
  auto response = Send("HEAD", origin_ + key_path_ + encoded_key, {}, "");
  return response.ok() && response->status >= 200 && response->status < 300;
}

Status S3Storage::Ready() {
  auto response = Send("HEAD", origin_ + bucket_path_, {}, "");
  if (!response.ok()) {
    return Status(response.status().code(),
                  "S3 bucket check failed: " + response.status().message());
  }
  if (response->status >= 200 && response->status < 300) return Status::Ok();
  // A HEAD answer has no body to read a code from: the status tells the usual ones.
  std::string code = S3ErrorCode(response->body);
  if (code.empty() && response->status == 404) code = "NoSuchBucket";
  if (code.empty() && response->status == 403) code = "AccessDenied";
  return S3Failure(response->status, code, response->headers, "bucket check", config_.bucket);
}

}  // namespace imgproc::storage
