#include "storage/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>

#include "request/request.h"

namespace imgproc::storage::sigv4 {
namespace {

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const unsigned char b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

// The raw 32-byte HMAC-SHA256 of `data` under `key`.
std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<const char*>(out), size);
}

// A header value as SigV4 canonicalises it: no leading or trailing blanks, and each run of
// blanks inside one space.
std::string TrimValue(std::string_view value) {
  std::string out;
  bool blank = false;
  for (const char ch : value) {
    if (ch == ' ' || ch == '\t') {
      blank = !out.empty();
      continue;
    }
    if (blank) out.push_back(' ');
    blank = false;
    out.push_back(ch);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> SortedHeaders(const CanonicalRequest& request) {
  auto headers = request.headers;
  std::sort(headers.begin(), headers.end());
  return headers;
}

}  // namespace

std::string UriEncode(std::string_view text, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const unsigned char ch : text) {
    const bool unreserved = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
                            ch == '~';
    if (unreserved || (keep_slash && ch == '/')) {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(kDigits[ch >> 4]);
      out.push_back(kDigits[ch & 15]);
    }
  }
  return out;
}

std::string AmzDate(int64_t wall_millis) {
  const std::time_t seconds = static_cast<std::time_t>(wall_millis / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[17];
  std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &tm);
  return text;
}

std::string SignedHeaders(const CanonicalRequest& request) {
  std::string out;
  for (const auto& [name, value] : SortedHeaders(request)) {
    if (!out.empty()) out += ';';
    out += name;
  }
  return out;
}

std::string CanonicalRequestText(const CanonicalRequest& request) {
  std::string headers;
  for (const auto& [name, value] : SortedHeaders(request)) {
    headers += name + ":" + TrimValue(value) + "\n";
  }
  return request.method + "\n" + request.path + "\n" + request.query + "\n" + headers + "\n" +
         SignedHeaders(request) + "\n" + request.payload_hash;
}

std::string Sign(const CanonicalRequest& request, const std::string& amz_date,
                 const std::string& region, const std::string& service,
                 const std::string& secret_key) {
  const std::string date = amz_date.substr(0, 8);
  const std::string scope = date + "/" + region + "/" + service + "/aws4_request";
  const std::string string_to_sign = "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" +
                                     imgproc::request::Sha256Hex(CanonicalRequestText(request));
  std::string key = HmacSha256("AWS4" + secret_key, date);
  key = HmacSha256(key, region);
  key = HmacSha256(key, service);
  key = HmacSha256(key, "aws4_request");
  return Hex(HmacSha256(key, string_to_sign));
}

std::string PresignGet(const Credentials& credentials, const std::string& region,
                       const std::string& origin, const std::string& path, int64_t wall_millis,
                       int64_t expires_seconds) {
  const std::string amz_date = AmzDate(wall_millis);
  const std::string scope = amz_date.substr(0, 8) + "/" + region + "/s3/aws4_request";
  // Sorted by name, as the canonical query string must be (upper case sorts before lower).
  std::vector<std::pair<std::string, std::string>> params = {
      {"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
      {"X-Amz-Credential", credentials.access_key + "/" + scope},
      {"X-Amz-Date", amz_date},
      {"X-Amz-Expires", std::to_string(expires_seconds)},
      {"X-Amz-SignedHeaders", "host"},
  };
  if (!credentials.session_token.empty()) {
    params.emplace_back("X-Amz-Security-Token", credentials.session_token);
  }
  std::sort(params.begin(), params.end());
  std::string query;
  for (const auto& [name, value] : params) {
    if (!query.empty()) query += '&';
    query += UriEncode(name, false) + "=" + UriEncode(value, false);
  }
  const size_t scheme_end = origin.find("://");
  const std::string host = scheme_end == std::string::npos ? origin : origin.substr(scheme_end + 3);
  CanonicalRequest request;
  request.method = "GET";
  request.path = path;
  request.query = query;
  request.headers = {{"host", host}};
  request.payload_hash = "UNSIGNED-PAYLOAD";
  const std::string signature = Sign(request, amz_date, region, "s3", credentials.secret_key);
  return origin + path + "?" + query + "&X-Amz-Signature=" + signature;
}

}  // namespace imgproc::storage::sigv4
