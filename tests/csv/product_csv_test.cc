#include "csv/product_csv.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace imgproc::csv {
namespace {

using Urls = std::vector<std::string>;

const char kHeader[] = "Serial Number,Product Name,Input Image Urls\n";

ParseResult Parse(std::string_view data, const Limits& limits = {}) {
  return ParseProducts(data, limits);
}

// Parses `data`, expects exactly one problem and returns it.
Problem OnlyProblem(std::string_view data, const Limits& limits = {}) {
  const ParseResult result = Parse(data, limits);
  EXPECT_TRUE(result.rows.empty());
  EXPECT_EQ(result.problems.size(), 1u);
  for (const auto& p : result.problems) {
    ADD_FAILURE() << "problem: row " << p.row << " [" << p.column << "] " << p.message;
  }
  return result.problems.empty() ? Problem{99999, "none", "none"} : result.problems.front();
}

#define EXPECT_PROBLEM(problem, row_, column_, text)  \
  do {                                                \
    const Problem p_ = (problem);                     \
    EXPECT_EQ(p_.row, row_size_t(row_));              \
    EXPECT_EQ(p_.column, column_);                    \
    EXPECT_NE(p_.message.find(text), std::string::npos) << p_.message; \
  } while (0)

size_t row_size_t(int row) { return static_cast<size_t>(row); }

}  // namespace
}  // namespace imgproc::csv
