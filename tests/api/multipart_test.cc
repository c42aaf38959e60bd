#include "api/multipart.h"

#include <gtest/gtest.h>

#include <vector>

namespace imgproc::api {
namespace {

TEST(MultipartBoundary, IsTheParameterOfAFormDataContentType) {
  EXPECT_EQ(MultipartBoundary("multipart/form-data; boundary=abc"), "abc");
  EXPECT_EQ(MultipartBoundary("Multipart/Form-Data;boundary=\"a b;c\""), "a b;c");
  EXPECT_EQ(MultipartBoundary("multipart/form-data; charset=utf-8; BOUNDARY=x"), "x");
  EXPECT_EQ(MultipartBoundary("multipart/mixed; boundary=abc"), "");
  EXPECT_EQ(MultipartBoundary("multipart/form-data"), "");
  EXPECT_EQ(MultipartBoundary("text/csv"), "");
  EXPECT_EQ(MultipartBoundary("multipart/form-data; boundary=" + std::string(71, 'x')), "");
}

TEST(ParseMultipart, ReadsEveryPartWithItsNameFileNameAndType) {
  const std::string body =
      "preamble, ignored\r\n"
      "--xyz\r\n"
      "Content-Disposition: form-data; name=\"csv_file\"; filename=\"p.csv\"\r\n"
      "Content-Type: text/csv\r\n\r\n"
      "a,b\r\n1,2\r\n"
      "--xyz  \r\n"  // transport padding
      "content-disposition: form-data; name=webhook_url\r\n\r\n"
      "http://h/\r\n"
      "--xyz\r\n"
      "Content-Disposition: form-data; name=\"csv_file\"\r\n\r\n"
      "second, ignored\r\n"
      "--xyz--\r\nepilogue";
  auto parts = ParseMultipart("xyz", body);
  ASSERT_TRUE(parts.ok()) << parts.status().message();
  ASSERT_EQ(parts->size(), 2u);
  const FormFile& csv = parts->at("csv_file");
  EXPECT_EQ(csv.filename, "p.csv");
  EXPECT_EQ(csv.content_type, "text/csv");
  EXPECT_EQ(csv.content, "a,b\r\n1,2");
  EXPECT_EQ(parts->at("webhook_url").content, "http://h/");
  EXPECT_EQ(parts->at("webhook_url").filename, "");
}

TEST(ParseMultipart, KeepsBinaryContentAndLookalikeBoundaries) {
  const std::string content = std::string("\0\r\n--xy\r\n--xyzz", 15);
  const std::string body =
      "--xyz\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n" + content + "\r\n--xyz--";
  auto parts = ParseMultipart("xyz", body);
  ASSERT_TRUE(parts.ok()) << parts.status().message();
  EXPECT_EQ(parts->at("f").content, content);
}

TEST(ParseMultipart, RefusesWhatIsNotMultipartWithThatBoundary) {
  const std::string part = "Content-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n";
  for (const std::string& body : std::vector<std::string>{
           "no boundary at all",
           "--xyz\r\n" + part,                                             // no close
           "--xyz\r\n" + part + "--xyz",                                   // no close either
           "--xyz\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xyz--",  // no name
           "--xyz\r\nContent-Type: text/plain\r\n\r\nv\r\n--xyz--",        // no disposition
           "--xyz\r\n\r\nv\r\n--xyz--",                                    // no headers
           "--xyz garbage\r\n" + part + "--xyz--",                         // bad boundary line
           "--xyz\r\nno colon here\r\n\r\nv\r\n--xyz--",                   // bad header
           "--xyz\r\nContent-Disposition: form-data; name=\"f\"" + std::string(9000, ' '),
       }) {
    auto parts = ParseMultipart("xyz", body);
    ASSERT_FALSE(parts.ok()) << body.substr(0, 60);
    EXPECT_EQ(parts.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(ParseMultipart("", "--\r\n").ok());
}

}  // namespace
}  // namespace imgproc::api
