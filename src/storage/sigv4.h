// AWS Signature Version 4, the parts libcurl does not do for us: presigned GET URLs (query
// signing), and the canonical request and signature that the tests use to recompute the signature
// libcurl put on a request (CURLOPT_AWS_SIGV4 signs the uploads themselves).
// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html
#ifndef IMGPROC_STORAGE_SIGV4_H_
#define IMGPROC_STORAGE_SIGV4_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imgproc::storage::sigv4 {

// Percent-encodes every byte but RFC 3986's unreserved ones (A-Z a-z 0-9 - . _ ~), upper-case hex,
// as SigV4 wants; '/' is kept when `keep_slash` (an object key in a path).
std::string UriEncode(std::string_view text, bool keep_slash);

// "20130524T000000Z": the ISO 8601 basic form of a Unix time in milliseconds (UTC).
std::string AmzDate(int64_t wall_millis);

// The request as SigV4 sees it.
struct CanonicalRequest {
  std::string method;
  std::string path;   // URI-encoded once, as sent ("/bucket/a%20b.jpg")
  std::string query;  // canonical: encoded name=value pairs sorted by name, '&'-joined
  // Lower-case names with their values as sent, in any order; sorted and trimmed when signed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_hash;  // request::Sha256Hex of the body, or "UNSIGNED-PAYLOAD"
};

// "host;x-amz-content-sha256;x-amz-date": the names of `request.headers`, sorted.
std::string SignedHeaders(const CanonicalRequest& request);
// The six lines of the canonical request.
std::string CanonicalRequestText(const CanonicalRequest& request);

// The hex signature of `request` made at `amz_date` (AmzDate) for `region` and `service` with
// the secret access key.
std::string Sign(const CanonicalRequest& request, const std::string& amz_date,
                 const std::string& region, const std::string& service,
                 const std::string& secret_key);

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // temporary credentials only
};

// A presigned GET URL for an object: `origin` is "scheme://host[:port]" as the URL gives it,
// `path` the URI-encoded path ("/bucket/key" or "/key"), valid for `expires_seconds` (1..604800)
// from `wall_millis`.
std::string PresignGet(const Credentials& credentials, const std::string& region,
                       const std::string& origin, const std::string& path, int64_t wall_millis,
                       int64_t expires_seconds);

}  // namespace imgproc::storage::sigv4

#endif  // IMGPROC_STORAGE_SIGV4_H_
