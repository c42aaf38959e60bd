// libFuzzer target: CSV parsing and validation, and CSV escaping of what it produced.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "csv/product_csv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  imgproc::csv::Limits limits;
  limits.max_rows = 200;  // keep single runs fast; the limits themselves are under test too
  limits.max_urls_per_row = 8;
  limits.max_url_length = 64;
  const auto result = imgproc::csv::ParseProducts(input, limits);
  if (result.problems.size() > imgproc::csv::kMaxProblems) __builtin_trap();
  if (!result.ok() && !result.rows.empty()) __builtin_trap();
  for (const auto& row : result.rows) {
    if (row.serial_no <= 0 || row.product_name.empty() || row.input_urls.empty()) __builtin_trap();
    if (row.input_urls.size() > limits.max_urls_per_row) __builtin_trap();
    imgproc::csv::EscapeField(row.product_name);
  }
  imgproc::csv::EscapeField(input);
  return 0;
}
