#include "csv/product_csv.h"

#include <csv.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>

namespace imgproc::csv {
namespace {

enum Column { kSerial, kName, kUrls };
constexpr const char* kColumnNames[] = {"Serial Number", "Product Name", "Input Image Urls"};
constexpr size_t kNone = static_cast<size_t>(-1);
constexpr size_t kMaxNameChars = 255;
constexpr size_t kMaxShownBytes = 50;
constexpr std::string_view kWhitespace = " \t\r\n\v\f";

// Follows the problem of a file past one of the service's limits: which setting that is, and how
// whoever runs imgproc raises it (docs/security.md lists them).
std::string RaiseHint(std::string_view setting, std::string_view flag) {
  return ": the limit is " + std::string(setting) + ", raised where imgproc runs with " +
         std::string(setting) + "=<n> (or " + std::string(flag) + ")";
}

std::string_view Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(kWhitespace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kWhitespace) - begin + 1);
}

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Length in code points; only called on valid UTF-8.
size_t Chars(std::string_view s) {
  return s.size() - static_cast<size_t>(std::count_if(s.begin(), s.end(), IsContinuationByte));
}

// A value as quoted in a message, cut on a character boundary so the message stays valid UTF-8.
std::string Shown(std::string_view value) {
  if (value.size() <= kMaxShownBytes) return "'" + std::string(value) + "'";
  size_t cut = kMaxShownBytes;
  while (cut > 0 && IsContinuationByte(value[cut])) --cut;
  return "'" + std::string(value.substr(0, cut)) + "...'";
}

// Offset of the first NUL byte or ill-formed UTF-8 sequence (Unicode table 3-7: no overlong
// forms, surrogates or code points past U+10FFFF), or npos.
size_t FirstInvalidByte(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return i;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;  // continuation bytes
    unsigned lo = 0x80;
    unsigned hi = 0xBF;  // allowed range of the first continuation byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (s.size() - i <= n) return i;
    for (size_t k = 1; k <= n; ++k, lo = 0x80, hi = 0xBF) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < lo || b > hi) return i;
    }
    i += n + 1;
  }
  return std::string_view::npos;
}

// End of the line that starts at `pos`, past its terminator. Like libcsv, a lone CR ends a line.
size_t LineEnd(std::string_view s, size_t pos) {
  const size_t t = s.find_first_of("\r\n", pos);
  if (t == std::string_view::npos) return s.size();
  return t + (s.compare(t, 2, "\r\n") == 0 ? 2 : 1);
}

size_t LineOf(std::string_view s, size_t offset) {
  size_t line = 1;
  for (size_t end = LineEnd(s, 0); end <= offset; end = LineEnd(s, end)) ++line;
  return line;
}

char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

size_t ColumnOf(std::string_view header) {
  static constexpr std::pair<std::string_view, Column> kAliases[] = {
      {"serial number", kSerial}, {"s. no.", kSerial},         {"s.no.", kSerial},
      {"s no", kSerial},          {"sr no", kSerial},          {"serial no", kSerial},
      {"product name", kName},    {"input image urls", kUrls}, {"image urls", kUrls}};
  for (const auto& [alias, column] : kAliases) {
    if (std::equal(header.begin(), header.end(), alias.begin(), alias.end(),
                   [](char a, char b) { return AsciiLower(a) == b; })) {
      return column;
    }
  }
  return kNone;
}

// Applies the rules to libcsv's fields and records as they arrive. Only the three columns are
// kept, so a record with millions of fields costs no memory.
class Builder {
 public:
  Builder(const Limits& limits, ParseResult* result) : limits_(limits), result_(*result) {}

  bool done() const { return done_; }

  // Called with each line before libcsv sees it. A record starts on the first line since the
  // last record that holds more than libcsv's skipped blanks and line ends.
  void NextLine(size_t line, std::string_view text) {
    line_ = line;
    if (!in_record_ && text.find_first_not_of(" \t\r\n") != std::string_view::npos) {
      in_record_ = true;
      record_line_ = line;
    }
  }

  void Field(std::string_view raw) {
    if (done_) return;
    const size_t i = fields_++;
    const std::string_view value = Trim(raw);
    if (value.empty()) return;
    width_ = i + 1;
    if (!header_done_) {
      HeaderField(i, value);
    } else if (i == columns_[kSerial]) {
      serial_ = value;
    } else if (i == columns_[kName]) {
      name_ = value;
    } else if (i == columns_[kUrls] || (spill_ && i > columns_[kUrls])) {
      AddUrlEntries(value);
    }
  }

  void EndRecord() {
    if (!done_ && width_ > 0) {  // else a blank line
      if (header_done_) {
        DataRecord();
      } else {
        EndHeader();
      }
    }
    in_record_ = false;
    fields_ = width_ = url_count_ = 0;
    serial_.clear();
    name_.clear();
    urls_.clear();
    long_url_.clear();
  }

  void Malformed(const std::string& message) {
    Add(in_record_ ? record_line_ : line_, "", message);
    done_ = true;
  }

  void Finish() {
    if (done_) return;
    if (!header_done_) {
      Add(0, "", "file has no header row");
    } else if (rows_ == 0) {
      Add(0, "", "no data rows");
    }
  }

 private:
  void Add(size_t row, const char* column, std::string message) {
    if (result_.problems.size() < kMaxProblems) {
      result_.problems.push_back({row, column, std::move(message)});
    }
    if (result_.problems.size() >= kMaxProblems) done_ = true;
  }

  void HeaderField(size_t i, std::string_view value) {
    const size_t column = ColumnOf(value);
    if (column == kNone) return;  // other columns are allowed and ignored
    if (columns_[column] != kNone) {
      Add(record_line_, kColumnNames[column], "duplicate column " + Shown(value));
    } else {
      columns_[column] = i;
    }
  }

  void EndHeader() {
    header_done_ = true;
    header_width_ = width_;  // trailing empty header cells (spreadsheet padding) do not count
    for (int c : {kSerial, kName, kUrls}) {
      if (columns_[c] == kNone) Add(record_line_, kColumnNames[c], "missing column");
    }
    done_ = done_ || !result_.problems.empty();  // rows cannot be read without their columns
    spill_ = columns_[kUrls] + 1 == header_width_;
  }

  void AddUrlEntries(std::string_view field) {
    for (size_t start = 0; start <= field.size();) {
      const size_t comma = std::min(field.find(',', start), field.size());
      const std::string_view entry = Trim(field.substr(start, comma - start));
      start = comma + 1;
      if (entry.empty()) continue;
      ++url_count_;
      if (long_url_.empty() && Chars(entry) > limits_.max_url_length) long_url_ = Shown(entry);
      if (urls_.size() < limits_.max_urls_per_row) urls_.emplace_back(entry);
    }
  }

  void DataRecord() {
    if (++rows_ > limits_.max_rows) {
      Add(record_line_, "",
          "more than " + std::to_string(limits_.max_rows) + " rows" +
              RaiseHint("MAX_ROWS", "--max-rows"));
      done_ = true;
      return;
    }
    const size_t needed = 1 + std::max({columns_[kSerial], columns_[kName], columns_[kUrls]});
    if (fields_ < needed) {
      Add(record_line_, "",
          "too few fields: " + std::to_string(fields_) + " (expected " + std::to_string(needed) +
              ")");
      return;
    }
    if (!spill_ && width_ > header_width_) {
      Add(record_line_, "",
          "too many fields: " + std::to_string(width_) + " (header has " +
              std::to_string(header_width_) + ")");
    }
    const int64_t serial = CheckSerial();
    if (name_.empty()) {
      Add(record_line_, kColumnNames[kName], "empty product name");
    } else if (Chars(name_) > kMaxNameChars) {
      Add(record_line_, kColumnNames[kName],
          "product name longer than " + std::to_string(kMaxNameChars) +
              " characters: " + Shown(name_));
    }
    if (url_count_ == 0) {
      Add(record_line_, kColumnNames[kUrls], "no image URLs");
    } else if (url_count_ > limits_.max_urls_per_row) {
      Add(record_line_, kColumnNames[kUrls],
          "more than " + std::to_string(limits_.max_urls_per_row) + " URL entries (" +
              std::to_string(url_count_) + ")" +
              RaiseHint("MAX_URLS_PER_ROW", "--max-urls-per-row"));
    }
    if (!long_url_.empty()) {
      Add(record_line_, kColumnNames[kUrls],
          "URL longer than " + std::to_string(limits_.max_url_length) +
              " characters: " + long_url_);
    }
    // Valid rows are only worth keeping while the file as a whole can still be valid.
    if (result_.problems.empty()) {
      result_.rows.push_back({serial, std::move(name_), std::move(urls_), record_line_});
    }
  }

  // Returns the serial number, 0 after reporting a problem with it.
  int64_t CheckSerial() {
    const char* column = kColumnNames[kSerial];
    int64_t value = 0;
    const bool digits =
        !serial_.empty() && serial_.find_first_not_of("0123456789") == std::string::npos;
    if (digits &&
        std::from_chars(serial_.data(), serial_.data() + serial_.size(), value).ec != std::errc()) {
      Add(record_line_, column, "serial number too large: " + Shown(serial_));
    } else if (!digits || value == 0) {
      Add(record_line_, column, "not a positive integer: " + Shown(serial_));
    } else if (auto [it, inserted] = serials_.try_emplace(value, record_line_); !inserted) {
      Add(record_line_, column,
          "duplicate serial number " + std::to_string(value) + " (first on line " +
              std::to_string(it->second) + ")");
    } else {
      return value;
    }
    return 0;
  }

  const Limits& limits_;
  ParseResult& result_;
  bool done_ = false;

  // File state.
  bool header_done_ = false;
  size_t columns_[3] = {kNone, kNone, kNone};
  size_t header_width_ = 0;
  bool spill_ = false;  // the URL column is the last one, so later fields continue its list
  size_t rows_ = 0;
  std::unordered_map<int64_t, size_t> serials_;  // serial number -> line
  size_t line_ = 0;

  // Record state.
  bool in_record_ = false;
  size_t record_line_ = 0;
  size_t fields_ = 0;
  size_t width_ = 0;  // up to the last non-empty field
  std::string serial_;
  std::string name_;
  std::vector<std::string> urls_;  // the first max_urls_per_row entries
  size_t url_count_ = 0;
  std::string long_url_;  // the first over-long entry, as shown in the message
};

void OnField(void* data, size_t len, void* builder) {
  static_cast<Builder*>(builder)->Field(data ? std::string_view(static_cast<const char*>(data), len)
                                             : std::string_view());
}

void OnRecord(int /*terminator*/, void* builder) { static_cast<Builder*>(builder)->EndRecord(); }

}  // namespace

ParseResult ParseProducts(std::string_view data, const Limits& limits) {
  ParseResult result;
  if (data.size() > limits.max_bytes) {
    result.problems.push_back({0, "",
                               "file is larger than " + std::to_string(limits.max_bytes) +
                                   " bytes" + RaiseHint("MAX_CSV_BYTES", "--max-csv-bytes")});
    return result;
  }
  if (data.starts_with("\xEF\xBB\xBF")) data.remove_prefix(3);
  if (const size_t bad = FirstInvalidByte(data); bad != std::string_view::npos) {
    result.problems.push_back(
        {LineOf(data, bad), "", data[bad] == '\0' ? "NUL byte in the file" : "invalid UTF-8"});
    return result;
  }

  Builder builder(limits, &result);
  csv_parser parser;
  // Strict: a quote inside an unquoted field, text after a closing quote and an unterminated
  // quoted field are errors rather than guesses.
  csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI);
  // libcsv grows its field buffer by a fixed step; scale the step with the input so that one huge
  // field needs few reallocations.
  csv_set_blk_size(&parser, std::max<size_t>(4096, data.size() / 64));
  // Fed line by line so that every record knows the line it starts on.
  size_t line = 1;
  for (size_t pos = 0, end; pos < data.size() && !builder.done(); pos = end, ++line) {
    end = LineEnd(data, pos);
    const std::string_view text = data.substr(pos, end - pos);
    builder.NextLine(line, text);
    if (csv_parse(&parser, text.data(), text.size(), OnField, OnRecord, &builder) != text.size()) {
      const int error = csv_error(&parser);
      builder.Malformed(error == CSV_EPARSE
                            ? "malformed quoting: a quote inside an unquoted field or text after "
                              "a closing quote"
                            : csv_strerror(error));
    }
  }
  if (!builder.done()) {
    if (csv_fini(&parser, OnField, OnRecord, &builder) != 0) {
      builder.Malformed("unterminated quoted field");
    }
    builder.Finish();
  }
  csv_free(&parser);
  if (!result.problems.empty()) result.rows.clear();
  return result;
}

std::vector<request::NewProduct> ToProducts(std::vector<ProductRow>&& rows) {
  std::vector<request::NewProduct> products;
  products.reserve(rows.size());
  for (ProductRow& row : rows) {
    products.push_back({row.serial_no, std::move(row.product_name), std::move(row.input_urls)});
  }
  return products;
}

std::string EscapeField(std::string_view field, bool neutralise_formulas) {
  std::string value;
  if (neutralise_formulas && !field.empty() &&
      std::string_view("=+-@\t\r").find(field.front()) != std::string_view::npos) {
    value = "'";  // spreadsheets then show the cell as text instead of evaluating it
  }
  value += field;
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  if (value.find_first_of(",\"\r\n") == std::string::npos &&
      (value.empty() || (!blank(value.front()) && !blank(value.back())))) {
    return value;
  }
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

}  // namespace imgproc::csv
