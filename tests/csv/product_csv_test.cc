#include "csv/product_csv.h"

#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

using imgproc::csv::EscapeField;
using imgproc::csv::kMaxProblems;
using imgproc::csv::Limits;
using imgproc::csv::ParseProducts;
using imgproc::csv::ParseResult;
using imgproc::csv::Problem;
using imgproc::csv::ProductRow;

namespace {

using Urls = std::vector<std::string>;

constexpr char kHeader[] = "Serial Number,Product Name,Input Image Urls\n";
constexpr char kSerial[] = "Serial Number";
constexpr char kName[] = "Product Name";
constexpr char kUrls[] = "Input Image Urls";

ParseResult Parse(std::string_view data, const Limits& limits = {}) {
  return ParseProducts(data, limits);
}

std::string Describe(const ParseResult& result) {
  std::ostringstream out;
  for (const auto& p : result.problems) {
    out << "\n  row " << p.row << " [" << p.column << "] " << p.message;
  }
  return out.str();
}

testing::AssertionResult IsProblem(const Problem& p, size_t row, std::string_view column,
                                   std::string_view text) {
  if (p.row == row && p.column == column && p.message.find(text) != std::string::npos) {
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure()
         << "got row " << p.row << " [" << p.column << "] " << p.message << "; want row " << row
         << " [" << column << "] containing \"" << text << "\"";
}

// The file is rejected with exactly one problem, at `row` in `column`, mentioning `text`.
testing::AssertionResult HasOnlyProblem(const ParseResult& result, size_t row,
                                        std::string_view column, std::string_view text) {
  if (result.problems.size() != 1) {
    return testing::AssertionFailure()
           << result.problems.size() << " problems, want 1:" << Describe(result);
  }
  if (!result.rows.empty()) return testing::AssertionFailure() << "rows kept despite a problem";
  return IsProblem(result.problems[0], row, column, text);
}

// The rows' (serial, name, URLs, line) as one comparable value.
struct Row {
  int64_t serial;
  std::string name;
  Urls urls;
  size_t line;
  bool operator==(const Row&) const = default;
};

void PrintTo(const Row& r, std::ostream* os) {
  *os << "{" << r.serial << ", '" << r.name << "', [" << imgproc::request::JoinEntries(r.urls)
      << "], line " << r.line << "}";
}

std::vector<Row> Rows(const ParseResult& result) {
  std::vector<Row> rows;
  for (const ProductRow& r : result.rows) {
    rows.push_back({r.serial_no, r.product_name, r.input_urls, r.line});
  }
  return rows;
}

// Parses a file that must be valid and returns its rows.
std::vector<Row> ValidRows(std::string_view data, const Limits& limits = {}) {
  const ParseResult result = Parse(data, limits);
  EXPECT_TRUE(result.ok()) << Describe(result);
  return Rows(result);
}

// ---- Accepted files ------------------------------------------------------------------------

TEST(ProductCsv, OriginalDesignExampleSpillsUnquotedUrls) {
  const char data[] =
      "S. No.,Product Name,Input Image Urls\n"
      "1,SKU1,https://example.com/img1.jpg,https://example.com/img2.jpg\n"
      "2,SKU2,https://example.com/img3.jpg,https://example.com/img4.jpg\n";
  EXPECT_EQ(ValidRows(data),
            (std::vector<Row>{
                {1, "SKU1", {"https://example.com/img1.jpg", "https://example.com/img2.jpg"}, 2},
                {2, "SKU2", {"https://example.com/img3.jpg", "https://example.com/img4.jpg"}, 3},
            }));
}

TEST(ProductCsv, QuotedUrlList) {
  const std::string data = std::string(kHeader) +
                           "1,SKU1,\"https://a/1.jpg, https://a/2.jpg\"\n"
                           "2,SKU2,https://a/3.jpg\n";
  EXPECT_EQ(ValidRows(data),
            (std::vector<Row>{{1, "SKU1", {"https://a/1.jpg", "https://a/2.jpg"}, 2},
                              {2, "SKU2", {"https://a/3.jpg"}, 3}}));
}

TEST(ProductCsv, QuotedListAndSpilledFieldsCombine) {
  const std::string data = std::string(kHeader) + "1,SKU1,\"u1,u2\",u3,\"u4\"\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1", "u2", "u3", "u4"}, 2}}));
}

TEST(ProductCsv, EveryAliasIsAccepted) {
  for (const char* serial : {"Serial Number", "S. No.", "S.No.", "S No", "Sr No", "Serial No"}) {
    for (const char* urls : {"Input Image Urls", "Input Image URLs", "Image Urls"}) {
      const std::string data = std::string(serial) + ",Product Name," + urls + "\n1,SKU1,u1\n";
      EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1"}, 2}})) << data;
    }
  }
}

TEST(ProductCsv, HeaderMatchIgnoresCaseAndSurroundingSpaces) {
  const char data[] = "  serial NUMBER ,\tPRODUCT name,  \"input image urls \" \n7,SKU7,u1\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{7, "SKU7", {"u1"}, 2}}));
}

TEST(ProductCsv, ColumnsInAnotherOrderWithAnUnknownColumn) {
  const char data[] =
      "Input Image Urls,Notes,Product Name,S No\n"
      "\"u1,u2\",ignored,SKU1,1\n"
      "u3,,SKU2,2\n";
  EXPECT_EQ(ValidRows(data),
            (std::vector<Row>{{1, "SKU1", {"u1", "u2"}, 2}, {2, "SKU2", {"u3"}, 3}}));
}

TEST(ProductCsv, UrlColumnInTheMiddleTakesOnlyItsField) {
  const char data[] = "Serial Number,Input Image Urls,Product Name\n1,\"u1,u2\",SKU1\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1", "u2"}, 2}}));
}

TEST(ProductCsv, ByteOrderMarkIsStripped) {
  const std::string data = "\xEF\xBB\xBF" + std::string(kHeader) + "1,SKU1,u1\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1"}, 2}}));
}

TEST(ProductCsv, CrlfLineEnds) {
  const char data[] =
      "S. No.,Product Name,Input Image Urls\r\n"
      "1,SKU1,u1,u2\r\n"
      "\r\n"
      "2,SKU2,u3\r\n";
  EXPECT_EQ(ValidRows(data),
            (std::vector<Row>{{1, "SKU1", {"u1", "u2"}, 2}, {2, "SKU2", {"u3"}, 4}}));
}

TEST(ProductCsv, LoneCarriageReturnsEndLines) {
  const char data[] = "S. No.,Product Name,Input Image Urls\r1,SKU1,u1\r\r2,SKU2,u2";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1"}, 2}, {2, "SKU2", {"u2"}, 4}}));
}

TEST(ProductCsv, QuotedNewlinesKeepLaterLineNumbersRight) {
  const std::string data = std::string(kHeader) +
                           "1,\"Two\nline name\",\"u1,\r\nu2\"\n"  // lines 2-4
                           "2,SKU2,u3\n"                           // line 5
                           "3,\"a\n\nb\",u4\n"                     // lines 6-8
                           "x,SKU4,u5\n";                          // line 9
  EXPECT_TRUE(HasOnlyProblem(Parse(data), 9, kSerial, "'x'"));

  const std::string valid = data.substr(0, data.rfind("x,"));
  EXPECT_EQ(ValidRows(valid), (std::vector<Row>{{1, "Two\nline name", {"u1", "u2"}, 2},
                                                {2, "SKU2", {"u3"}, 5},
                                                {3, "a\n\nb", {"u4"}, 6}}));
}

TEST(ProductCsv, DoubledQuotesAndCommasInsideQuotes) {
  const std::string data = std::string(kHeader) + "1,\"The \"\"Best\"\", Ever\",u1\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "The \"Best\", Ever", {"u1"}, 2}}));
}

TEST(ProductCsv, BlankLinesAreSkipped) {
  const std::string data = "\n  \n" + std::string(kHeader) +  // header on line 3
                           "\n"
                           "1,SKU1,u1\n"  // line 5
                           " , ,\n"
                           "\t\n"
                           "\"\",\"  \"\n"
                           "2,SKU2,u2\n"  // line 9
                           "\n\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1"}, 5}, {2, "SKU2", {"u2"}, 9}}));
}

TEST(ProductCsv, FieldsAndEntriesAreTrimmed) {
  const std::string data = std::string(kHeader) + "  1 ,  SKU 1\t, \" u1 ,\tu2 \" ,  u3  \n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU 1", {"u1", "u2", "u3"}, 2}}));
}

TEST(ProductCsv, EmptyEntriesAndTrailingCommasAreDropped) {
  const std::string data = std::string(kHeader) +
                           "1,SKU1,u1,u2,,\n"
                           "2,SKU2,\"u3,,u4,\",\n"
                           "3,SKU3,,u5\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1", "u2"}, 2},
                                               {2, "SKU2", {"u3", "u4"}, 3},
                                               {3, "SKU3", {"u5"}, 4}}));
}

TEST(ProductCsv, PaddedHeaderStillSpills) {
  // Spreadsheets pad the header with empty cells to the widest row.
  const char data[] = "S. No.,Product Name,Input Image Urls,,\n1,SKU1,u1,u2,u3\n";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{1, "SKU1", {"u1", "u2", "u3"}, 2}}));
}

TEST(ProductCsv, NonHttpEntriesPassThrough) {
  const std::string data =
      std::string(kHeader) + "1,SKU1,\"not a url,ftp://x/y.png,https://a/b\"\n";
  EXPECT_EQ(ValidRows(data),
            (std::vector<Row>{{1, "SKU1", {"not a url", "ftp://x/y.png", "https://a/b"}, 2}}));
}

TEST(ProductCsv, NoFinalNewlineAndLeadingZeros) {
  const std::string data = std::string(kHeader) + "007,SKU7,u1";
  EXPECT_EQ(ValidRows(data), (std::vector<Row>{{7, "SKU7", {"u1"}, 2}}));
}

TEST(ProductCsv, LimitsAreInclusive) {
  const std::string url(2048, 'u');
  std::string urls;
  for (int i = 0; i < 50; ++i) urls += "," + url;
  std::string name;
  for (int i = 0; i < 255; ++i) name += "\xC3\xA9";  // 255 characters, 510 bytes
  const std::string data = std::string(kHeader) + "9223372036854775807," + name + urls + "\n";
  const std::vector<Row> rows = ValidRows(data);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].serial, INT64_MAX);
  EXPECT_EQ(rows[0].name, name);
  EXPECT_EQ(rows[0].urls, Urls(50, url));
}

TEST(ProductCsv, MaxRowsIsInclusive) {
  Limits limits;
  limits.max_rows = 3;
  const std::string data = std::string(kHeader) + "1,a,u\n2,b,u\n3,c,u\n";
  EXPECT_EQ(ValidRows(data, limits).size(), 3u);
}

// ---- Rejected files ------------------------------------------------------------------------

TEST(ProductCsv, MissingColumns) {
  EXPECT_TRUE(HasOnlyProblem(Parse("Serial,Product Name,Input Image Urls\n1,a,u\n"), 1, kSerial,
                             "missing column"));
  EXPECT_TRUE(HasOnlyProblem(Parse("Serial Number,Name,Input Image Urls\n1,a,u\n"), 1, kName,
                             "missing column"));
  EXPECT_TRUE(HasOnlyProblem(Parse("Serial Number,Product Name,Urls\n1,a,u\n"), 1, kUrls,
                             "missing column"));
  // Data without a header: every column is missing, reported on the first non-blank line.
  const ParseResult result = Parse("\n1,SKU1,https://a/1.jpg\n");
  ASSERT_EQ(result.problems.size(), 3u) << Describe(result);
  EXPECT_TRUE(IsProblem(result.problems[0], 2, kSerial, "missing column"));
  EXPECT_TRUE(IsProblem(result.problems[1], 2, kName, "missing column"));
  EXPECT_TRUE(IsProblem(result.problems[2], 2, kUrls, "missing column"));
}

TEST(ProductCsv, DuplicateColumn) {
  EXPECT_TRUE(HasOnlyProblem(Parse("S. No.,Product Name,Serial Number,Image Urls\n1,a,1,u\n"), 1,
                             kSerial, "'Serial Number'"));
}

TEST(ProductCsv, NoHeaderRow) {
  EXPECT_TRUE(HasOnlyProblem(Parse(""), 0, "", "no header row"));
  EXPECT_TRUE(HasOnlyProblem(Parse("\xEF\xBB\xBF"), 0, "", "no header row"));
  EXPECT_TRUE(HasOnlyProblem(Parse("\r\n  \n,,\n"), 0, "", "no header row"));
}

TEST(ProductCsv, NoDataRows) {
  EXPECT_TRUE(HasOnlyProblem(Parse(kHeader), 0, "", "no data rows"));
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "\n , \n"), 0, "", "no data rows"));
}

TEST(ProductCsv, SerialNumberMustBeAPositiveInteger) {
  for (const char* bad :
       {"x", "-1", "0", "000", "1.5", "+3", "1e3", "12 3", "", "\xD9\xA3" /* Arabic-Indic 3 */}) {
    const std::string data = std::string(kHeader) + "1,SKU1,u1\n" + bad + ",SKU2,u2\n";
    EXPECT_TRUE(HasOnlyProblem(Parse(data), 3, kSerial,
                               "not a positive integer: '" + std::string(bad) + "'"))
        << bad;
  }
}

TEST(ProductCsv, SerialNumberTooLarge) {
  const std::string data = std::string(kHeader) + "9223372036854775808,SKU1,u1\n";
  EXPECT_TRUE(HasOnlyProblem(Parse(data), 2, kSerial, "too large: '9223372036854775808'"));
}

TEST(ProductCsv, DuplicateSerialNumberCitesTheFirstLine) {
  const std::string data = std::string(kHeader) + "3,a,u\n4,b,u\n03,c,u\n";
  EXPECT_TRUE(
      HasOnlyProblem(Parse(data), 4, kSerial, "duplicate serial number 3 (first on line 2)"));
}

TEST(ProductCsv, EmptyProductName) {
  EXPECT_TRUE(
      HasOnlyProblem(Parse(std::string(kHeader) + "1,  ,u1\n"), 2, kName, "empty product name"));
  EXPECT_TRUE(
      HasOnlyProblem(Parse(std::string(kHeader) + "1,\"\",u1\n"), 2, kName, "empty product name"));
}

TEST(ProductCsv, ProductNameLongerThan255Characters) {
  std::string name = "x";  // 256 characters, 511 bytes
  for (int i = 0; i < 255; ++i) name += "\xC3\xA9";
  const ParseResult result = Parse(std::string(kHeader) + "1," + name + ",u1\n");
  // The quoted value is cut on a character boundary: 49 bytes, not 50 that would split an é.
  EXPECT_TRUE(HasOnlyProblem(result, 2, kName,
                             "longer than 255 characters: '" + name.substr(0, 49) + "...'"));
  EXPECT_TRUE(Parse(std::string(kHeader) + "1," + name.substr(1) + ",u1\n").ok());
}

TEST(ProductCsv, RowNeedsAtLeastOneUrl) {
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,SKU1,\n"), 2, kUrls, "no image URLs"));
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,SKU1,\" , ,\",,\n"), 2, kUrls,
                             "no image URLs"));
}

TEST(ProductCsv, TooManyUrlEntries) {
  std::string urls;
  for (int i = 0; i < 51; ++i) urls += ",u" + std::to_string(i);
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,SKU1" + urls + "\n"), 2, kUrls,
                             "more than 50 URL entries (51): the limit is MAX_URLS_PER_ROW, raised "
                             "where imgproc runs with MAX_URLS_PER_ROW=<n> (or "
                             "--max-urls-per-row)"));
  Limits limits;
  limits.max_urls_per_row = 2;
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,SKU1,\"a,b\",c\n", limits), 2, kUrls,
                             "more than 2 URL entries (3): the limit is MAX_URLS_PER_ROW, raised "
                             "where imgproc runs with MAX_URLS_PER_ROW=<n> (or "
                             "--max-urls-per-row)"));
}

TEST(ProductCsv, UrlTooLong) {
  const std::string url = "https://example.com/" + std::string(2029, 'a');  // 2049 characters
  const ParseResult result = Parse(std::string(kHeader) + "1,SKU1,u0," + url + "\n");
  EXPECT_TRUE(HasOnlyProblem(result, 2, kUrls,
                             "URL longer than 2048 characters: '" + url.substr(0, 50) + "...'"));
}

TEST(ProductCsv, FileTooLarge) {
  Limits limits;
  limits.max_bytes = 20;
  EXPECT_TRUE(
      HasOnlyProblem(Parse(std::string(kHeader) + "1,a,u\n", limits), 0, "",
                     "file is larger than 20 bytes: the limit is MAX_CSV_BYTES, raised where "
                     "imgproc runs with MAX_CSV_BYTES=<n> (or --max-csv-bytes)"));
}

TEST(ProductCsv, TooManyRowsStopsParsing) {
  Limits limits;
  limits.max_rows = 2;
  // Line 5 is the third data row; the bad row after it is never looked at.
  const std::string data = std::string(kHeader) + "1,a,u\n\n2,b,u\n3,c,u\nx,,\n";
  EXPECT_TRUE(HasOnlyProblem(Parse(data, limits), 5, "",
                             "more than 2 rows: the limit is MAX_ROWS, raised where imgproc runs "
                             "with MAX_ROWS=<n> (or --max-rows)"));
}

TEST(ProductCsv, TooFewFields) {
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,SKU1,u\n2,SKU2\n"), 3, "",
                             "too few fields: 2 (expected 3)"));
}

TEST(ProductCsv, TooManyFieldsWhenUrlColumnIsNotLast) {
  const char data[] = "Serial Number,Input Image Urls,Product Name\n1,u1,u2,SKU1\n2,u3,SKU2,,\n";
  EXPECT_TRUE(HasOnlyProblem(Parse(data), 2, "", "too many fields: 4 (header has 3)"));
}

TEST(ProductCsv, MalformedQuoting) {
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,SKU1,u\n2,SK\"U2,u\n"), 3, "",
                             "malformed quoting"));
  EXPECT_TRUE(
      HasOnlyProblem(Parse(std::string(kHeader) + "1,\"SKU1\"x,u\n"), 2, "", "malformed quoting"));
  // A record that starts on line 2 and goes wrong on line 3 is reported on line 2.
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,\"SKU1\n2,\"x,u\n"), 2, "",
                             "malformed quoting"));
}

TEST(ProductCsv, UnterminatedQuoteCitesWhereTheRecordStarts) {
  EXPECT_TRUE(HasOnlyProblem(Parse(std::string(kHeader) + "1,a,u\n2,\"SKU2,u\n3,c,u\n\n"), 3, "",
                             "unterminated quoted field"));
}

TEST(ProductCsv, InvalidUtf8) {
  EXPECT_TRUE(
      HasOnlyProblem(Parse(std::string(kHeader) + "1,a,u\n\n2,b\xFF,u\n"), 4, "", "invalid UTF-8"));
  for (const char* bad : {"\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xC3",
                          "\xE2\x82", "\x80"}) {
    EXPECT_TRUE(
        HasOnlyProblem(Parse(std::string(kHeader) + "1,a" + bad + ",u\n"), 2, "", "invalid UTF-8"))
        << testing::PrintToString(bad);
  }
  EXPECT_TRUE(Parse(std::string(kHeader) + "1,\xF0\x9F\x98\x80\xE2\x82\xAC,u\n").ok());
}

TEST(ProductCsv, NulByte) {
  const std::string data = std::string(kHeader) + std::string("1,a\0b,u\n", 8);
  EXPECT_TRUE(HasOnlyProblem(Parse(data), 2, "", "NUL byte"));
}

TEST(ProductCsv, EveryProblemOfEveryRowIsReportedInOrder) {
  const ParseResult result = Parse(std::string(kHeader) + "1,a,u\n0,,\n2,b,u\n1,,u\n");
  ASSERT_EQ(result.problems.size(), 5u) << Describe(result);
  EXPECT_TRUE(IsProblem(result.problems[0], 3, kSerial, "'0'"));
  EXPECT_TRUE(IsProblem(result.problems[1], 3, kName, "empty product name"));
  EXPECT_TRUE(IsProblem(result.problems[2], 3, kUrls, "no image URLs"));
  EXPECT_TRUE(IsProblem(result.problems[3], 5, kSerial, "duplicate serial number 1"));
  EXPECT_TRUE(IsProblem(result.problems[4], 5, kName, "empty product name"));
  EXPECT_TRUE(result.rows.empty());
}

TEST(ProductCsv, ProblemsAreCappedAtOneHundred) {
  std::string data = kHeader;
  for (int i = 0; i < 300; ++i) data += "x,SKU,u\n";
  const ParseResult result = Parse(data);
  ASSERT_EQ(result.problems.size(), kMaxProblems);
  EXPECT_TRUE(IsProblem(result.problems.back(), 101, kSerial, "'x'"));
  EXPECT_TRUE(result.rows.empty());
}

// ---- EscapeField --------------------------------------------------------------

TEST(ProductCsv, EscapeFieldQuotesWhenNeeded) {
  EXPECT_EQ(EscapeField(""), "");
  EXPECT_EQ(EscapeField("plain text"), "plain text");
  EXPECT_EQ(EscapeField("a,b"), "\"a,b\"");
  EXPECT_EQ(EscapeField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(EscapeField("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(EscapeField("cr\rhere"), "\"cr\rhere\"");
  EXPECT_EQ(EscapeField(" padded"), "\" padded\"");
  EXPECT_EQ(EscapeField("padded "), "\"padded \"");
  EXPECT_EQ(EscapeField("https://a/1.jpg,,https://a/3.jpg"),
            "\"https://a/1.jpg,,https://a/3.jpg\"");
}

TEST(ProductCsv, EscapeFieldNeutralisesFormulas) {
  EXPECT_EQ(EscapeField("=1+2"), "'=1+2");
  EXPECT_EQ(EscapeField("+1"), "'+1");
  EXPECT_EQ(EscapeField("-1"), "'-1");
  EXPECT_EQ(EscapeField("@SUM(A1)"), "'@SUM(A1)");
  EXPECT_EQ(EscapeField("\tx"), "'\tx");
  EXPECT_EQ(EscapeField("\rx"), "\"'\rx\"");
  EXPECT_EQ(EscapeField("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"");
  EXPECT_EQ(EscapeField("a=b"), "a=b");
  EXPECT_EQ(EscapeField("=1+2", /*neutralise_formulas=*/false), "=1+2");
  EXPECT_EQ(EscapeField("=1,2", /*neutralise_formulas=*/false), "\"=1,2\"");
}

TEST(ProductCsv, EscapedFieldsParseBack) {
  const std::vector<std::string> names = {"a,b", "say \"hi\"", "two\r\nlines", "x\"\"y", "é, ü"};
  std::string data = kHeader;
  for (size_t i = 0; i < names.size(); ++i) {
    data += std::to_string(i + 1) + "," + EscapeField(names[i], false) + ",u\r\n";
  }
  std::vector<std::string> parsed;
  for (const Row& row : ValidRows(data)) parsed.push_back(row.name);
  EXPECT_EQ(parsed, names);
}

// ---- Robustness ----------------------------------------------------------------------------

void ExpectSane(const std::string& data) {
  const ParseResult result = Parse(data);
  ASSERT_LE(result.problems.size(), kMaxProblems);
  ASSERT_TRUE(result.ok() || result.rows.empty());
  for (const auto& row : result.rows) ASSERT_FALSE(row.input_urls.empty());
}

TEST(ProductCsv, SurvivesGarbage) {
  std::mt19937 rng(20240229);
  constexpr char kAlphabet[] = "\"\",,,\r\n\n \tab1\xC3\xA9\xFF\0";  // NUL included
  const std::string alphabet(kAlphabet, sizeof(kAlphabet) - 1);
  const std::string valid = std::string(kHeader) + "1,\"SKU, 1\",\"u1,u2\"\r\n2,SKU2,u3,u4\n";
  for (int i = 0; i < 2000; ++i) {
    std::string data;
    switch (i % 3) {
      case 0:  // arbitrary bytes
        data.resize(rng() % 300);
        for (auto& c : data) c = static_cast<char>(rng());
        break;
      case 1:  // CSV-ish characters, where the state machine is busiest
        data = i % 2 ? kHeader : "";
        for (size_t n = rng() % 300; n > 0; --n) data += alphabet[rng() % alphabet.size()];
        break;
      default:  // a valid file with a few bytes changed
        data = valid;
        for (int n = 1 + static_cast<int>(rng() % 4); n > 0; --n) {
          data[rng() % data.size()] = alphabet[rng() % alphabet.size()];
        }
    }
    ExpectSane(data);
    if (testing::Test::HasFatalFailure()) {
      FAIL() << "input #" << i << ": " << testing::PrintToString(data);
    }
  }
}

TEST(ProductCsv, SurvivesHugeRecords) {
  const std::string commas = std::string(kHeader) + "1,a," + std::string(2'000'000, ',') + "u\n";
  const std::vector<Row> rows = ValidRows(commas);
  EXPECT_EQ(rows, (std::vector<Row>{{1, "a", {"u"}, 2}}));

  const std::string one_field =
      std::string(kHeader) + "1,\"" + std::string(5'000'000, 'n') + "\",u\n";
  EXPECT_TRUE(HasOnlyProblem(Parse(one_field), 2, kName, "longer than 255 characters"));

  std::string blank_lines = kHeader;
  for (int i = 0; i < 50'000; ++i) blank_lines += "\n";
  blank_lines += "x";
  EXPECT_TRUE(HasOnlyProblem(Parse(blank_lines), 50'002, "", "too few fields: 1 (expected 3)"));
}

}  // namespace
