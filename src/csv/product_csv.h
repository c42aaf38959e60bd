// Parsing and validation of the products CSV (docs/api.md, "CSV").
//
// The bytes are tokenised by libcsv (RFC 4180); this module adds header aliases, the "spill" rule
// for unquoted URL lists, trimming and the validation rules and limits. It never throws and never
// reads past `data`.
#ifndef IMGPROC_CSV_PRODUCT_CSV_H_
#define IMGPROC_CSV_PRODUCT_CSV_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "request/request.h"

namespace imgproc::csv {

struct Limits {
  size_t max_bytes = 10 * 1024 * 1024;
  size_t max_rows = 10000;  // data rows, header excluded
  size_t max_urls_per_row = 50;
  size_t max_url_length = 2048;
};

// One product row as it will be stored. `input_urls` holds the URL entries in input order
// (trimmed, empty entries dropped); they are joined with "," for the API.
struct ProductRow {
  int64_t serial_no = 0;
  std::string product_name;
  std::vector<std::string> input_urls;
  size_t line = 0;  // 1-based line of the file where the row starts (header = 1)
};

// One validation problem, reported to the user in the 400 response's `details`.
struct Problem {
  size_t row = 0;      // 1-based line of the file; 0 when it concerns the whole file
  std::string column;  // "Serial Number", "Product Name", "Input Image Urls" or "" (whole row/file)
  std::string message;
};

struct ParseResult {
  std::vector<ProductRow> rows;   // empty when problems is non-empty
  std::vector<Problem> problems;  // at most kMaxProblems entries
  bool ok() const { return problems.empty(); }
};

inline constexpr size_t kMaxProblems = 100;

// Parses and validates a whole CSV file.
ParseResult ParseProducts(std::string_view data, const Limits& limits);

// The rows as the request's products (moved out of `rows`).
std::vector<request::NewProduct> ToProducts(std::vector<ProductRow>&& rows);

// Writes one CSV field, quoting it when needed (RFC 4180). With `neutralise_formulas`, a cell that
// starts with =, +, -, @, TAB or CR gets a leading apostrophe (OWASP CSV-injection advice).
std::string EscapeField(std::string_view field, bool neutralise_formulas = true);

}  // namespace imgproc::csv

#endif  // IMGPROC_CSV_PRODUCT_CSV_H_
