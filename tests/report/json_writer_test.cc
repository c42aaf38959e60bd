#include "report/json_writer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace imgproc::report {
namespace {

// What the status body was before JsonWriter, and what it must stay: nlohmann's text.
std::string NlohmannString(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Written(std::string_view text) {
  std::string out;
  AppendJsonString(out, text);
  return out;
}

TEST(JsonWriter, EscapesAsNlohmannDoes) {
  for (const std::string& text : {
           std::string(""),
           std::string("plain ascii, with / and ~"),
           std::string("quote \" backslash \\ tab \t newline \n cr \r bs \b ff \f"),
           std::string("nul \0 unit \x1f del \x7f", 19),
           std::string("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),
           std::string("lone \xFF byte"),
           std::string("cut \xE2\x82"),
           std::string("cut at the end \xF0"),
           std::string("overlong \xC0\xAF and \xE0\x80\xAF"),
           std::string("surrogate \xED\xA0\x80"),
           std::string("above U+10FFFF \xF4\x90\x80\x80"),
           std::string("\xE2\x82"
                       "A then valid"),
       }) {
    EXPECT_EQ(Written(text), NlohmannString(text)) << text;
  }
}

// Random strings, most of them made of pieces of UTF-8 (whole, cut, or with a wrong byte), so
// every way a sequence can go wrong meets every way the next one can start.
TEST(JsonWriter, EscapesRandomBytesAsNlohmannDoes) {
  std::mt19937 random(20261206);
  const std::string pieces[] = {"a",
                                "\"",
                                "\\",
                                "\n",
                                "\x01",
                                "\x7f",
                                "\xC3\xA9",
                                "\xE2\x82\xAC",
                                "\xF0\x9F\x98\x80",
                                "\xED\x9F\xBF",
                                "\xF4\x8F\xBF\xBF"};
  for (int round = 0; round < 20000; ++round) {
    std::string text;
    const int length = static_cast<int>(random() % 12);
    for (int k = 0; k < length; ++k) {
      switch (random() % 4) {
        case 0:  // any byte
          text += static_cast<char>(random() % 256);
          break;
        case 1: {  // a piece cut short
          const std::string& piece = pieces[random() % std::size(pieces)];
          text += piece.substr(0, random() % (piece.size() + 1));
          break;
        }
        default:
          text += pieces[random() % std::size(pieces)];
      }
    }
    ASSERT_EQ(Written(text), NlohmannString(text)) << "round " << round;
  }
}

TEST(JsonWriter, SeparatesValuesAndKeys) {
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.String("s", "x");
  w.Int("i", -42);
  w.Bool("b", true);
  w.Null("n");
  w.StringOrNull("so", std::nullopt);
  w.StringOrNull("ss", std::string("y"));
  w.IntOrNull("io", std::nullopt);
  w.IntOrNull("ii", int64_t{9007199254740993});
  w.BeginArray("a");
  w.Int(1);
  w.BeginObject();
  w.EndObject();
  w.BeginArray();
  w.EndArray();
  w.String("z");
  w.EndArray();
  w.BeginObject("o");
  w.Key("k");
  w.Int(0);
  w.EndObject();
  w.EndObject();
  EXPECT_EQ(out, R"({"s":"x","i":-42,"b":true,"n":null,"so":null,"ss":"y","io":null,)"
                 R"("ii":9007199254740993,"a":[1,{},[],"z"],"o":{"k":0}})");
  EXPECT_EQ(nlohmann::ordered_json::parse(out).dump(), out);
}

}  // namespace
}  // namespace imgproc::report
