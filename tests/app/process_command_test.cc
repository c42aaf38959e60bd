// `imgproc process`: the real binary against an image host the test owns, on 127.0.0.1.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixture_server.h"
#include "net/http_client.h"
#include "process_client.h"
#include "services.h"
#include "test_images.h"

namespace imgproc::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line);
  }
  return out;
}

class ProcessCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    photo_ = MakeImage(TestImage::kJpegRgb, 320, 200);
    png_ = MakeImage(TestImage::kPngRgb, 300, 180);
    host_.server().Get("/photo.jpg", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(photo_, "image/jpeg");
    });
    host_.server().Get("/pic.png", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(png_, "image/png");
    });
    host_.Start();
  }
  void TearDown() override { host_.Stop(); }

  void WriteCsv(const std::string& text) { std::ofstream(dir_.path() / "in.csv") << text; }
  CommandResult Process(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"process", "in.csv", "-o", "out.csv"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunImgproc(args,
                      {{"ALLOW_PRIVATE_URLS", "1"},
                       {"DATA_DIR", (dir_.path() / "data").string()},
                       {"RETRY_BASE_MS", "10"}},
                      dir_.path());
  }

  TempDir dir_{"process"};
  FixtureServer host_;
  std::string photo_;
  std::string png_;
};

TEST_F(ProcessCommandTest, WritesTheOutputCsvWithFileUrlsAndASummary) {
  WriteCsv("S. No.,Product Name,Input Image Urls\n1,SKU1," + host_.Url("/photo.jpg") + "," +
           host_.Url("/pic.png") + "\n2,SKU2,keep-me.jpg," + host_.Url("/photo.jpg") + "\n");
  const CommandResult r = Process();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const auto lines = Lines(ReadAll(dir_.path() / "out.csv"));
  ASSERT_EQ(lines.size(), 3u) << ReadAll(dir_.path() / "out.csv");
  EXPECT_EQ(lines[0], "Serial Number,Product Name,Input Image Urls,Output Image Urls");
  // Every output URL is a file:// URL of a JPEG under DATA_DIR/media that exists.
  const std::string prefix = "file://" + (fs::absolute(dir_.path()) / "data" / "media").string();
  size_t found = 0;
  for (size_t at = lines[1].find("file://"); at != std::string::npos;
       at = lines[1].find("file://", at + 1)) {
    const size_t end = lines[1].find_first_of(",\"", at);
    const std::string url = lines[1].substr(at, end - at);
    EXPECT_EQ(url.rfind(prefix, 0), 0u) << url;
    const std::string jpeg = ReadAll(url.substr(7));
    auto info = InspectJpeg(jpeg);
    ASSERT_TRUE(info.has_value()) << url;
    EXPECT_EQ(*info->luma_table, StandardLumaTable(50));
    ++found;
  }
  EXPECT_EQ(found, 2u) << lines[1];
  EXPECT_NE(lines[2].find("2,SKU2,\"keep-me.jpg,http"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find(",\"keep-me.jpg,file://"), std::string::npos) << lines[2];

  // photo.jpg is named twice: made once.
  EXPECT_NE(r.out.find("2 products, 3 images: 3 ok (1 reused), 0 failed"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("bytes: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("% smaller)"), std::string::npos) << r.out;
  // Not a terminal: plain progress lines, no carriage returns or escape codes.
  EXPECT_NE(r.err.find("progress: 3/3 images"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos);
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  // The scratch store is gone; only the media stay.
  EXPECT_FALSE(fs::exists(dir_.path() / "data" / "imgproc.db"));
}

// The image cache lives in DATA_DIR: the same CSV again reuses every output; --refresh makes
// them anew (the slot naming photo.jpg a second time still waits for the first).
TEST_F(ProcessCommandTest, ASecondRunReusesTheOutputsUnlessRefreshed) {
  WriteCsv("S. No.,Product Name,Input Image Urls\n1,SKU1," + host_.Url("/photo.jpg") + "," +
           host_.Url("/pic.png") + "\n2,SKU2," + host_.Url("/photo.jpg") + "\n");
  ASSERT_EQ(Process().exit_code, 0);
  const std::string first = ReadAll(dir_.path() / "out.csv");
  const CommandResult again = Process();
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("3 images: 3 ok (3 reused)"), std::string::npos) << again.out;
  EXPECT_EQ(ReadAll(dir_.path() / "out.csv"), first);  // the same outputs
  EXPECT_TRUE(fs::exists(dir_.path() / "data" / "process-cache.db"));
  const CommandResult refreshed = Process({"--refresh"});
  ASSERT_EQ(refreshed.exit_code, 0) << refreshed.err;
  EXPECT_NE(refreshed.out.find("3 images: 3 ok (1 reused)"), std::string::npos) << refreshed.out;
}

TEST_F(ProcessCommandTest, AFailedImageMakesTheExitCodeOneUnlessAllowed) {
  WriteCsv("Serial Number,Product Name,Input Image Urls\n1,A," + host_.Url("/photo.jpg") +
           "\n2,B," + host_.Url("/missing.jpg") + "\n");
  CommandResult r = Process({"--errors"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("2 images: 1 ok, 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("failed: product 2 image #0 " + host_.Url("/missing.jpg") +
                       ": download failed: HTTP 404"),
            std::string::npos)
      << r.err;
  const auto lines = Lines(ReadAll(dir_.path() / "out.csv"));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "Serial Number,Product Name,Input Image Urls,Output Image Urls,Errors");
  EXPECT_EQ(lines[2], "2,B," + host_.Url("/missing.jpg") + ",,#0 " + host_.Url("/missing.jpg") +
                          ": download failed: HTTP 404");

  r = Process({"--allow-failures", "--quiet"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find("progress:"), std::string::npos) << r.err;
}

TEST_F(ProcessCommandTest, AnInvalidCsvIsExitTwoWithItsProblemsRowByRow) {
  WriteCsv("Serial Number,Product Name,Input Image Urls\nx,A,http://a/1.jpg\n3,,http://a/2.jpg\n");
  const CommandResult r = Process();
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("row 2, Serial Number: not a positive integer: 'x'"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("row 3, Product Name:"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_.path() / "out.csv"));
  EXPECT_EQ(host_.requests().size(), 0u);
}

TEST_F(ProcessCommandTest, UsageErrorsAndHelp) {
  CommandResult r = RunImgproc({"process", "in.csv"}, {}, dir_.path());
  EXPECT_NE(r.exit_code, 0);  // -o is required (and in.csv does not exist)
  r = RunImgproc({"process", "--help"}, {}, dir_.path());
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--output", "--allow-failures", "--errors", "--storage", "--workers",
                           "--log-format", "DATA_DIR", "PUBLIC_BASE_URL"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag << "\n" << r.out;
  }
}

// A run with STORAGE=s3 against the S3 server of scripts/services.sh: the output URLs are the
// objects' under the public base URL (content-addressed keys, the image cache being on), they
// serve the JPEGs, and a second run finds them there (a HEAD each) and reuses them.
TEST_F(ProcessCommandTest, StoresInAnS3BucketAndReusesWhatIsThere) {
  const auto endpoint = S3Endpoint();
  IMGPROC_NEED_SERVICE(endpoint, "the S3 server (IMGPROC_TEST_S3_ENDPOINT)");
  WriteCsv("S. No.,Product Name,Input Image Urls\n1,SKU1," + host_.Url("/photo.jpg") + "," +
           host_.Url("/pic.png") + "\n");
  const std::string prefix =
      "process-" + std::to_string(getpid()) + "-" +
      std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  const std::string base = *endpoint + "/" + kS3Bucket;
  const std::vector<std::string> s3 = {"--storage=s3",
                                       "--s3-endpoint=" + *endpoint,
                                       std::string("--s3-bucket=") + kS3Bucket,
                                       "--s3-prefix=" + prefix,
                                       "--s3-public-base-url=" + base,
                                       std::string("--aws-access-key-id=") + kS3AccessKey,
                                       std::string("--aws-secret-access-key=") + kS3SecretKey};
  const CommandResult r = Process(s3);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto lines = Lines(ReadAll(dir_.path() / "out.csv"));
  ASSERT_EQ(lines.size(), 2u);
  const std::string objects = base + "/" + prefix + "/objects/";
  net::FetchOptions options;
  options.allow_private = true;
  size_t found = 0;
  for (size_t at = lines[1].find(objects); at != std::string::npos;
       at = lines[1].find(objects, at + 1)) {
    const size_t end = lines[1].find_first_of(",\"", at);
    const std::string url = lines[1].substr(at, end - at);
    EXPECT_TRUE(url.ends_with("_jpeg-q50.jpg")) << url;
    auto got = net::CurlHttpClient().Get(url, options, nullptr);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(got->status, 200) << url;
    EXPECT_EQ(got->headers["content-type"], "image/jpeg");
    auto info = InspectJpeg(got->body);
    ASSERT_TRUE(info.has_value()) << url;
    EXPECT_EQ(*info->luma_table, StandardLumaTable(50));
    ++found;
  }
  EXPECT_EQ(found, 2u) << lines[1];
  const CommandResult again = Process(s3);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("2 images: 2 ok (2 reused)"), std::string::npos) << again.out;
  EXPECT_EQ(Lines(ReadAll(dir_.path() / "out.csv")), lines);
}

}  // namespace
}  // namespace imgproc::testing
