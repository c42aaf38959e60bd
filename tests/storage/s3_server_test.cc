// S3Storage against a real S3 server, the one scripts/services.sh starts (s3rver, from npm): the
// bytes stored come back through the output URLs with their headers, and the server's own errors
// are read as they should be. s3rver checks the access key but not SigV4 signatures:
// s3_storage_test.cc recomputes libcurl's signatures, and sigv4_test.cc checks the presigner
// against AWS's published examples.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>

#include "services.h"
#include "storage/s3_storage.h"

namespace imgproc::storage {
namespace {

using ::testing::HasSubstr;

class S3ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto endpoint = testing::S3Endpoint();
    IMGPROC_NEED_SERVICE(endpoint, "the S3 server (IMGPROC_TEST_S3_ENDPOINT)");
    net::InitHttpClient();
    config_.endpoint = *endpoint;
    config_.bucket = testing::kS3Bucket;
    config_.prefix = "tests";
    config_.cache_control = "public, max-age=600";
    config_.access_key_id = testing::kS3AccessKey;
    config_.secret_access_key = testing::kS3SecretKey;
    // Request ids of their own: the server's data outlives a test run.
    static std::atomic<int> counter{0};
    request_id_ = "r" + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" +
                  std::to_string(RealClock().WallMillis());
  }

  // GET of an output URL, as a browser or CDN would (no credentials).
  static Result<net::HttpResponse> Fetch(const std::string& url) {
    net::FetchOptions options;
    options.allow_private = true;
    return net::CurlHttpClient().Get(url, options, nullptr);
  }

  S3Config config_;
  std::string request_id_;
};

const std::string kJpeg = std::string("\xff\xd8\xff\xe0", 4) + std::string(3000, 'x') + "\xff\xd9";

TEST_F(S3ServerTest, PutThenGetBackThroughThePublicBaseUrl) {
  config_.public_base_url = config_.endpoint + "/" + config_.bucket;  // a public bucket
  S3Storage s3(config_);
  ASSERT_TRUE(s3.Ready().ok()) << s3.Ready().message();
  auto url = s3.Put(request_id_, "3_0.jpg", kJpeg);
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(*url, config_.public_base_url + "/tests/" + request_id_ + "/3_0.jpg");
  auto got = Fetch(*url);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, kJpeg);
  EXPECT_EQ(got->headers["content-type"], "image/jpeg");
  EXPECT_EQ(got->headers["cache-control"], "public, max-age=600");
  EXPECT_TRUE(s3.Holds(*url));
  EXPECT_FALSE(s3.Holds(config_.public_base_url + "/tests/" + request_id_ + "/4_0.jpg"));
}

TEST_F(S3ServerTest, PutThenGetBackThroughAPresignedUrl) {
  config_.presign_seconds = 600;
  S3Storage s3(config_);
  auto url = s3.Put(request_id_, "1_2.jpg", kJpeg);
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_THAT(*url, HasSubstr("/imgproc-test/tests/" + request_id_ + "/1_2.jpg?X-Amz-Algorithm="));
  EXPECT_THAT(*url, HasSubstr("&X-Amz-Expires=600&"));
  auto got = Fetch(*url);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->status, 200) << got->body;
  EXPECT_EQ(got->body, kJpeg);
  EXPECT_TRUE(s3.Holds(*url));
  // A second Put of the name (a retried image) replaces the object.
  ASSERT_TRUE(s3.Put(request_id_, "1_2.jpg", "other").ok());
  got = Fetch(*url);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->body, "other");
}

// Above 1 MiB libcurl asks the server for a 100-continue first (not a signed header).
TEST_F(S3ServerTest, ALargeObjectGoesThroughToo) {
  config_.public_base_url = config_.endpoint + "/" + config_.bucket;
  S3Storage s3(config_);
  std::string large(3 * 1024 * 1024, '\0');
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 7919 % 251);
  auto url = s3.Put(request_id_, "9_9.jpg", large);
  ASSERT_TRUE(url.ok()) << url.status().message();
  auto got = Fetch(*url);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->status, 200);
  EXPECT_TRUE(got->body == large) << got->body.size();
}

TEST_F(S3ServerTest, AMissingBucketIsAPermanentErrorNamingIt) {
  config_.bucket = "imgproc-no-such-bucket";
  S3Storage s3(config_);
  auto put = s3.Put(request_id_, "3_0.jpg", kJpeg);
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kPermanent) << put.status().message();
  EXPECT_THAT(put.status().message(),
              HasSubstr("NoSuchBucket (HTTP 404) for bucket 'imgproc-no-such-bucket'"));
  const Status ready = s3.Ready();
  EXPECT_EQ(ready.code(), StatusCode::kPermanent);
  EXPECT_THAT(ready.message(), HasSubstr("NoSuchBucket"));
}

// s3rver knows one access key; it does not check V4 signatures, so a wrong secret key is not
// tested here (the signature itself is, in s3_storage_test.cc).
TEST_F(S3ServerTest, AnUnknownAccessKeyIsAPermanentErrorSayingSo) {
  config_.access_key_id = "AKIAWRONGKEY";
  S3Storage s3(config_);
  auto put = s3.Put(request_id_, "3_0.jpg", kJpeg);
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kPermanent) << put.status().message();
  EXPECT_THAT(put.status().message(), HasSubstr("InvalidAccessKeyId (HTTP 403)"));
  EXPECT_THAT(put.status().message(), HasSubstr("AWS_ACCESS_KEY_ID"));
}

}  // namespace
}  // namespace imgproc::storage
