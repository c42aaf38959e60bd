#include "report/json_writer.h"

#include <charconv>

namespace imgproc::report {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// For a byte of 0x80 or more at text[i]: the length (2 to 4) of the well-formed UTF-8 character
// that starts there; or 0, with `skip` set to the length of the ill-formed part to replace: the
// lead byte and the continuation bytes accepted before the first wrong one (Unicode's "maximal
// subpart", as nlohmann's decoder takes it). The wrong byte is read again as a start.
size_t Utf8Length(std::string_view text, size_t i, size_t& skip) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  unsigned char low = 0x80;  // the range of the second byte (Unicode's table 3-7)
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // no overlong forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    skip = 1;
    return 0;
  }
  for (size_t k = 1; k < length; ++k) {
    const bool ok = i + k < text.size() && (k == 1 ? byte(i + k) >= low && byte(i + k) <= high
                                                   : byte(i + k) >= 0x80 && byte(i + k) <= 0xBF);
    if (!ok) {
      skip = k;
      return 0;
    }
  }
  return length;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view text) {
  out += '"';
  size_t copied = 0;  // text before this is in `out`
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      size_t skip = 0;
      if (const size_t length = Utf8Length(text, i, skip); length > 0) {
        i += length;
        continue;
      }
      out.append(text.substr(copied, i - copied)).append(kReplacement);
      i += skip;
      copied = i;
      continue;
    }
    out.append(text.substr(copied, i - copied));
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        constexpr char kHex[] = "0123456789abcdef";
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      }
    }
    copied = ++i;
  }
  out.append(text.substr(copied)).append(1, '"');
}

void JsonWriter::Separate() {
  if (comma_) out_ += ',';
  comma_ = true;
}

void JsonWriter::Key(std::string_view key) {
  Separate();
  AppendJsonString(out_, key);
  out_ += ':';
  comma_ = false;
}

void JsonWriter::BeginObject() {
  Separate();
  out_ += '{';
  comma_ = false;
}

void JsonWriter::BeginObject(std::string_view key) {
  Key(key);
  BeginObject();
}

void JsonWriter::EndObject() {
  out_ += '}';
  comma_ = true;
}

void JsonWriter::BeginArray() {
  Separate();
  out_ += '[';
  comma_ = false;
}

void JsonWriter::BeginArray(std::string_view key) {
  Key(key);
  BeginArray();
}

void JsonWriter::EndArray() {
  out_ += ']';
  comma_ = true;
}

void JsonWriter::String(std::string_view value) {
  Separate();
  AppendJsonString(out_, value);
}

void JsonWriter::String(std::string_view key, std::string_view value) {
  Key(key);
  String(value);
}

void JsonWriter::StringOrNull(std::string_view key, const std::optional<std::string>& value) {
  if (!value) return Null(key);
  String(key, *value);
}

void JsonWriter::Int(int64_t value) {
  Separate();
  char digits[24];
  out_.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

void JsonWriter::Int(std::string_view key, int64_t value) {
  Key(key);
  Int(value);
}

void JsonWriter::IntOrNull(std::string_view key, const std::optional<int64_t>& value) {
  if (!value) return Null(key);
  Int(key, *value);
}

void JsonWriter::Bool(std::string_view key, bool value) {
  Key(key);
  out_ += value ? "true" : "false";
  comma_ = true;
}

void JsonWriter::Null(std::string_view key) {
  Key(key);
  out_ += "null";
  comma_ = true;
}

}  // namespace imgproc::report
