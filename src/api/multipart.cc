#include "api/multipart.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

namespace imgproc::api {
namespace {

namespace http = boost::beast::http;

constexpr std::string_view kCrlf = "\r\n";
// A part's headers: Content-Disposition and Content-Type are a few hundred bytes at most.
constexpr size_t kMaxPartHeadBytes = 8 * 1024;
constexpr size_t kMaxParts = 1000;

std::string_view View(boost::beast::string_view s) { return {s.data(), s.size()}; }

bool IEquals(std::string_view a, std::string_view b) {
  return boost::beast::iequals(boost::beast::string_view(a.data(), a.size()),
                               boost::beast::string_view(b.data(), b.size()));
}

// A parameter's value as written: a token, or a quoted-string with its quotes and escapes undone.
std::string Unquote(std::string_view value) {
  if (value.size() < 2 || value.front() != '"') return std::string(value);
  std::string out;
  for (size_t i = 1; i + 1 < value.size(); ++i) {
    if (value[i] == '\\' && i + 2 < value.size()) ++i;
    out += value[i];
  }
  return out;
}

// The media type of a Content-Type value (before its parameters), and its parameters.
std::pair<std::string_view, http::param_list> SplitMediaType(std::string_view value) {
  const size_t semi = value.find(';');
  std::string_view type = value.substr(0, semi);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  const std::string_view params = semi == std::string_view::npos ? "" : value.substr(semi);
  return {type, http::param_list({params.data(), params.size()})};
}

// Parses one part's head ("Name: value" lines, each ending in CRLF) into `part` and its name.
Status ParsePartHead(std::string_view head, std::string& name, FormFile& part) {
  bool form_data = false;
  while (!head.empty()) {
    const size_t end = head.find(kCrlf);
    const std::string_view line = head.substr(0, end);
    head.remove_prefix(end == std::string_view::npos ? head.size() : end + kCrlf.size());
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return InvalidArgument("a part header is not 'Name: value'");
    }
    const std::string_view field = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    if (IEquals(field, "Content-Disposition")) {
      const auto [type, params] = SplitMediaType(value);
      form_data = IEquals(type, "form-data");
      for (const auto& [key, raw] : params) {
        if (IEquals(View(key), "name")) name = Unquote(View(raw));
        if (IEquals(View(key), "filename")) part.filename = Unquote(View(raw));
      }
    } else if (IEquals(field, "Content-Type")) {
      part.content_type = std::string(value);
    }
  }
  if (!form_data || name.empty()) {
    return InvalidArgument("a part has no Content-Disposition: form-data with a name");
  }
  return Status::Ok();
}

// The next "\r\n--boundary" from `from` that is a delimiter line: followed by "--" (the last)
// or by optional spaces and CRLF. The same text followed by anything else is content.
size_t FindDelimiter(std::string_view body, std::string_view delimiter, size_t from) {
  for (size_t at = body.find(delimiter, from); at != std::string_view::npos;
       at = body.find(delimiter, at + 1)) {
    size_t after = at + delimiter.size();
    if (body.substr(after, 2) == "--") return at;
    while (after < body.size() && (body[after] == ' ' || body[after] == '\t')) ++after;
    if (body.substr(after, kCrlf.size()) == kCrlf) return at;
  }
  return std::string_view::npos;
}

}  // namespace

std::string MultipartBoundary(std::string_view content_type) {
  const auto [type, params] = SplitMediaType(content_type);
  if (!IEquals(type, "multipart/form-data")) return {};
  for (const auto& [key, value] : params) {
    if (IEquals(View(key), "boundary")) {
      std::string boundary = Unquote(View(value));
      // RFC 2046: 1 to 70 characters.
      return boundary.size() <= 70 ? boundary : std::string();
    }
  }
  return {};
}

Result<std::map<std::string, FormFile>> ParseMultipart(std::string_view boundary,
                                                       std::string_view body) {
  if (boundary.empty()) return InvalidArgument("no multipart boundary");
  const std::string delimiter = "--" + std::string(boundary);
  const std::string next_delimiter = "\r\n" + delimiter;
  // The first delimiter starts the body or a line (after a preamble).
  size_t at = 0;
  if (body.substr(0, delimiter.size()) != delimiter) {
    at = body.find(next_delimiter);
    if (at == std::string_view::npos) return InvalidArgument("no multipart boundary in the body");
    at += kCrlf.size();
  }
  std::map<std::string, FormFile> parts;
  for (size_t count = 0;; ++count) {
    at += delimiter.size();
    if (body.substr(at, 2) == "--") return parts;  // the close delimiter; the epilogue is ignored
    if (count == kMaxParts) return InvalidArgument("more than 1000 parts");
    while (at < body.size() && (body[at] == ' ' || body[at] == '\t')) ++at;  // transport padding
    if (body.substr(at, kCrlf.size()) != kCrlf) {
      return InvalidArgument("a boundary line does not end in CRLF");
    }
    at += kCrlf.size();
    // The part's headers end at an empty line; a part without headers starts with it.
    size_t head_end = body.substr(at, 2) == kCrlf ? at : body.find("\r\n\r\n", at);
    if (head_end == std::string_view::npos || head_end - at > kMaxPartHeadBytes) {
      return InvalidArgument("a part's headers do not end");
    }
    if (head_end != at) head_end += kCrlf.size();  // keep the last header's CRLF in the head
    std::string name;
    FormFile part;
    if (Status s = ParsePartHead(body.substr(at, head_end - at), name, part); !s.ok()) return s;
    const size_t content = head_end + kCrlf.size();
    const size_t end = FindDelimiter(body, next_delimiter, content);
    if (end == std::string_view::npos) return InvalidArgument("a part does not end in a boundary");
    part.content = std::string(body.substr(content, end - content));
    parts.emplace(std::move(name), std::move(part));
    at = end + kCrlf.size();
  }
}

}  // namespace imgproc::api
