#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture_server.h"
#include "storage/imgbb_storage.h"
#include "storage/local_storage.h"

namespace imgproc::storage {
namespace {

namespace fs = std::filesystem;

class LocalStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("imgproc-storage-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "media");
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(LocalStorageTest, PutWritesTheFileAndReturnsItsPublicUrl) {
  LocalStorage storage(dir_ / "media", "http://127.0.0.1:8000/");
  auto url = storage.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(*url, "http://127.0.0.1:8000/media/req-1/3_0.jpg");
  std::ifstream in(dir_ / "media" / "req-1" / "3_0.jpg", std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "JPEGDATA");
  // Storing again replaces, and leaves no temporary files behind.
  ASSERT_TRUE(storage.Put("req-1", "3_0.jpg", "NEW").ok());
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "media" / "req-1"), {}), 1);
}

TEST_F(LocalStorageTest, HoldsOnlyItsOwnUrlsWhoseFileIsThere) {
  LocalStorage storage(dir_ / "media", "http://127.0.0.1:8000");
  auto url = storage.Put("objects", "ab12_jpeg-q50.jpg", "JPEG");
  ASSERT_TRUE(url.ok());
  EXPECT_TRUE(storage.Holds(*url));
  EXPECT_FALSE(storage.Holds("http://127.0.0.1:9999/media/objects/ab12_jpeg-q50.jpg"));
  EXPECT_FALSE(storage.Holds("http://127.0.0.1:8000/media/../media/objects/ab12_jpeg-q50.jpg"));
  EXPECT_FALSE(storage.Holds(""));
  fs::remove(dir_ / "media" / "objects" / "ab12_jpeg-q50.jpg");  // deleted by hand
  EXPECT_FALSE(storage.Holds(*url));
}

// A Put that cannot store its file (here: a folder stands where the file would go, so the rename
// fails) is a transient error and leaves no temporary file behind.
TEST_F(LocalStorageTest, AFailedPutLeavesNoTemporaryFile) {
  LocalStorage storage(dir_ / "media", "http://127.0.0.1:8000");
  fs::create_directories(dir_ / "media" / "req-1" / "3_0.jpg" / "in-the-way");
  auto url = storage.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_FALSE(url.ok());
  EXPECT_TRUE(url.status().transient()) << url.status().message();
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir_ / "media" / "req-1")) {
    left.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(left, std::vector<std::string>{"3_0.jpg"}) << "a temporary file stayed";
}

TEST_F(LocalStorageTest, ResolveMediaPathStaysInsideTheFolder) {
  LocalStorage storage(dir_ / "media", "http://x");
  ASSERT_TRUE(storage.Put("req-1", "1_0.jpg", "x").ok());
  std::ofstream(dir_ / "secret.txt") << "secret";
  fs::create_symlink(dir_ / "secret.txt", dir_ / "media" / "req-1" / "link.jpg");

  EXPECT_TRUE(ResolveMediaPath(dir_ / "media", "req-1/1_0.jpg").has_value());
  for (const char* bad :
       {"../secret.txt", "req-1/../../secret.txt", "req-1/..", "..", "req-1", "req-1/",
        "/etc/passwd", "req-1//1_0.jpg", "req-1/1_0.jpg/x", "req-1/.1_0.jpg", "req-1/%2e%2e",
        "req-1/link.jpg", "req-1/missing.jpg", "", "req-1\\..\\x"}) {
    EXPECT_FALSE(ResolveMediaPath(dir_ / "media", bad).has_value()) << bad;
  }
}

TEST(ImgbbResponse, SuccessGivesDataUrl) {
  auto url = ParseImgbbResponse(
      200, R"({"data":{"id":"2ndCYJK","url":"https://i.ibb.co/w04Prt6/c1f64245afb2.jpg"},)"
           R"("success":true,"status":200})");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(*url, "https://i.ibb.co/w04Prt6/c1f64245afb2.jpg");
}

TEST(ImgbbResponse, InvalidKeyIsAPermanentErrorWithImgbbsMessage) {
  auto url = ParseImgbbResponse(
      400, R"({"status_code":400,"error":{"message":"Invalid API v1 key.","code":100},)"
           R"("status_txt":"Bad Request"})");
  ASSERT_FALSE(url.ok());
  EXPECT_EQ(url.status().code(), StatusCode::kPermanent);
  EXPECT_NE(url.status().message().find("Invalid API v1 key."), std::string::npos);
}

TEST(ImgbbResponse, RateLimitsAndServerErrorsAreTransient) {
  EXPECT_TRUE(
      ParseImgbbResponse(
          400, R"({"status_code":400,"error":{"message":"Rate limit reached.","code":100}})")
          .status()
          .transient());
  EXPECT_TRUE(ParseImgbbResponse(429, "Too Many Requests").status().transient());
  EXPECT_TRUE(ParseImgbbResponse(502, "<html>bad gateway</html>").status().transient());
  EXPECT_FALSE(ParseImgbbResponse(200, "not json").ok());
  EXPECT_FALSE(ParseImgbbResponse(200, R"({"data":{}})").ok());
  EXPECT_FALSE(ParseImgbbResponse(200, R"({"data":{"url":42}})").ok());
}

TEST(ImgbbStorage, UploadsKeyAndImageAsMultipart) {
  net::InitHttpClient();
  testing::FixtureServer fake;
  std::string got_key, got_image, got_filename;
  fake.server().Post("/1/upload", [&](const httplib::Request& req, httplib::Response& res) {
    got_key = req.get_file_value("key").content;
    got_image = req.get_file_value("image").content;
    got_filename = req.get_file_value("image").filename;
    res.set_content(R"({"data":{"url":"https://i.ibb.co/abc/1_0.jpg"},"success":true})",
                    "application/json");
  });
  fake.Start();
  ImgbbStorage storage("secret-key", fake.Url("/1/upload"));
  auto url = storage.Put("req", "1_0.jpg", std::string("\xff\xd8\xff\x00jpeg", 8));
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(*url, "https://i.ibb.co/abc/1_0.jpg");
  EXPECT_EQ(got_key, "secret-key");
  EXPECT_EQ(got_image, std::string("\xff\xd8\xff\x00jpeg", 8));
  EXPECT_EQ(got_filename, "1_0.jpg");
}

TEST(ImgbbStorage, HoldsTheUrlsImgbbGivesOnly) {
  ImgbbStorage storage("key", "http://127.0.0.1:1/1/upload");
  EXPECT_TRUE(storage.Holds("https://i.ibb.co/x/1.jpg"));
  // A local output cached before STORAGE changed is made again, not reused.
  EXPECT_FALSE(storage.Holds("http://127.0.0.1:8000/media/objects/ab_jpeg-q50.jpg"));
  EXPECT_FALSE(storage.Holds(""));
}

TEST(MakeStorage, ChecksItsConfiguration) {
  EXPECT_TRUE(MakeStorage({"local", "/tmp/m", "http://x", "", "", {}}).ok());
  EXPECT_FALSE(MakeStorage({"imgbb", "", "", "", "https://api.imgbb.com/1/upload", {}}).ok());
  EXPECT_FALSE(MakeStorage({"gcs", "", "", "", "", {}}).ok());
  S3Config s3;
  s3.access_key_id = "AKID";
  s3.secret_access_key = "secret";
  const auto no_bucket = MakeStorage({"s3", "", "", "", "", s3});
  ASSERT_FALSE(no_bucket.ok());
  EXPECT_NE(no_bucket.status().message().find("S3_BUCKET"), std::string::npos);
  s3.bucket = "shop-images";
  EXPECT_TRUE(MakeStorage({"s3", "", "", "", "", s3}).ok());
  s3.secret_access_key = "";
  EXPECT_FALSE(MakeStorage({"s3", "", "", "", "", s3}).ok());
}

}  // namespace
}  // namespace imgproc::storage
