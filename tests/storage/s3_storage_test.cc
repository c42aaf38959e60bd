// S3Storage without an S3 server: the requests it makes (through the fake HTTP client), how it
// reads S3's answers, and the signature libcurl puts on a real request (through a local fixture
// server, recomputed with our own SigV4 code). s3_server_test.cc runs it against a real server.
#include "storage/s3_storage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "fake_clock.h"
#include "fake_http_client.h"
#include "fixture_server.h"
#include "request/request.h"
#include "storage/sigv4.h"

namespace imgproc::storage {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

S3Config Aws() {
  S3Config c;
  c.region = "eu-west-1";
  c.bucket = "shop-images";
  c.access_key_id = "AKIDEXAMPLE";
  c.secret_access_key = "secret/EXAMPLE";
  return c;
}

S3Config Minio() {
  S3Config c = Aws();
  c.endpoint = "http://minio.internal:9000/";
  c.force_path_style = true;
  c.prefix = "/imports/";
  return c;
}

TEST(S3Keys, VirtualHostByDefaultAtAwsRegionalEndpoint) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Storage s3(Aws(), http, clock);
  EXPECT_EQ(s3.Key("req-1", "3_0.jpg"), "req-1/3_0.jpg");
  EXPECT_EQ(s3.ObjectUrl("req-1/3_0.jpg"),
            "https://shop-images.s3.eu-west-1.amazonaws.com/req-1/3_0.jpg");
}

TEST(S3Keys, PathStyleWithPrefixAtAnotherEndpoint) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Storage s3(Minio(), http, clock);
  EXPECT_EQ(s3.Key("objects", "ab12_jpeg-q50.jpg"), "imports/objects/ab12_jpeg-q50.jpg");
  EXPECT_EQ(s3.ObjectUrl("imports/objects/ab12_jpeg-q50.jpg"),
            "http://minio.internal:9000/shop-images/imports/objects/ab12_jpeg-q50.jpg");
  // Keys are URI-encoded once in the URL, slashes kept.
  EXPECT_EQ(s3.ObjectUrl("a b/c+d.jpg"), "http://minio.internal:9000/shop-images/a%20b/c%2Bd.jpg");
}

TEST(S3Keys, AnIpEndpointOrADottedBucketOverHttpsIsAlwaysPathStyle) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Config ip = Aws();
  ip.endpoint = "http://127.0.0.1:9000";
  EXPECT_EQ(S3Storage(ip, http, clock).ObjectUrl("k.jpg"),
            "http://127.0.0.1:9000/shop-images/k.jpg");
  S3Config dotted = Aws();
  dotted.bucket = "images.shop.example";
  EXPECT_EQ(S3Storage(dotted, http, clock).ObjectUrl("k.jpg"),
            "https://s3.eu-west-1.amazonaws.com/images.shop.example/k.jpg");
}

TEST(S3Put, SendsOneSignedPutWithTheObjectHeaders) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Config config = Minio();
  config.acl = "public-read";
  config.session_token = "TOKEN";
  config.public_base_url = "https://cdn.example.com/";
  S3Storage s3(config, http, clock);
  const std::string url = "http://minio.internal:9000/shop-images/imports/req-1/3_0.jpg";
  http.Respond(url, 200);
  auto put = s3.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_TRUE(put.ok()) << put.status().message();
  EXPECT_EQ(*put, "https://cdn.example.com/imports/req-1/3_0.jpg");
  const auto calls = http.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "PUT");
  EXPECT_EQ(calls[0].url, url);
  EXPECT_EQ(calls[0].body, "JPEGDATA");
  EXPECT_EQ(calls[0].aws_sigv4, "aws:amz:eu-west-1:s3");
  EXPECT_THAT(calls[0].headers, Contains("Content-Type: image/jpeg"));
  EXPECT_THAT(calls[0].headers, Contains("Cache-Control: max-age=31536000"));
  EXPECT_THAT(calls[0].headers, Contains("x-amz-acl: public-read"));
  EXPECT_THAT(calls[0].headers, Contains("x-amz-security-token: TOKEN"));
  EXPECT_THAT(calls[0].headers,
              Contains("x-amz-content-sha256: " + request::Sha256Hex("JPEGDATA")));
}

TEST(S3Put, WithoutAPublicBaseUrlReturnsAPresignedUrlDatedByTheClock) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;  // 2026-01-01T00:00:00Z
  S3Config config = Minio();
  config.presign_seconds = 3600;
  S3Storage s3(config, http, clock);
  http.Respond("http://minio.internal:9000/shop-images/imports/req-1/3_0.jpg", 200);
  auto put = s3.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_TRUE(put.ok()) << put.status().message();
  EXPECT_EQ(*put,
            sigv4::PresignGet({"AKIDEXAMPLE", "secret/EXAMPLE", ""}, "eu-west-1",
                              "http://minio.internal:9000", "/shop-images/imports/req-1/3_0.jpg",
                              clock.WallMillis(), 3600));
  EXPECT_THAT(*put, HasSubstr("X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&"));
}

struct Answer {
  long status;
  std::string code;  // S3's <Code>, or none
  StatusCode expected;
  std::string hint;  // in the message
};

TEST(S3Put, ThrottlingAndServerErrorsAreTransientSetUpErrorsPermanent) {
  const Answer answers[] = {
      {503, "SlowDown", StatusCode::kTransient, ""},
      {500, "InternalError", StatusCode::kTransient, ""},
      {429, "", StatusCode::kTransient, ""},
      {400, "RequestTimeout", StatusCode::kTransient, ""},
      {404, "NoSuchBucket", StatusCode::kPermanent, "the bucket does not exist (S3_BUCKET)"},
      {403, "InvalidAccessKeyId", StatusCode::kPermanent, "AWS_ACCESS_KEY_ID"},
      {403, "SignatureDoesNotMatch", StatusCode::kPermanent, "AWS_SECRET_ACCESS_KEY"},
      {403, "AccessDenied", StatusCode::kPermanent, "refuses these credentials"},
      {400, "AuthorizationHeaderMalformed", StatusCode::kPermanent, "S3_REGION"},
  };
  for (const Answer& a : answers) {
    testing::FakeHttpClient http;
    testing::FakeClock clock;
    S3Storage s3(Minio(), http, clock);
    const std::string body =
        a.code.empty() ? ""
                       : "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + a.code +
                             "</Code><Message>m</Message><RequestId>1</RequestId></Error>";
    http.Respond("http://minio.internal:9000/shop-images/imports/req-1/3_0.jpg", a.status, body,
                 {{"retry-after", "7"}});
    auto put = s3.Put("req-1", "3_0.jpg", "JPEGDATA");
    ASSERT_FALSE(put.ok()) << a.code;
    EXPECT_EQ(put.status().code(), a.expected) << a.code << ": " << put.status().message();
    const std::string message = put.status().message();
    EXPECT_THAT(message, StartsWith("upload of imports/req-1/3_0.jpg failed: S3 "));
    EXPECT_THAT(message, HasSubstr("(HTTP " + std::to_string(a.status) + ")"));
    EXPECT_THAT(message, HasSubstr(a.code));
    EXPECT_THAT(message, HasSubstr("for bucket 'shop-images'"));
    EXPECT_THAT(message, HasSubstr(a.hint));
    EXPECT_EQ(put.status().retry_after(), a.expected == StatusCode::kTransient ? 7000ms : 0ms)
        << a.code;
  }
}

TEST(S3Put, ATransportErrorKeepsItsCode) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Storage s3(Minio(), http, clock);
  http.On("http://minio.internal:9000/shop-images/imports/req-1/3_0.jpg",
          [](const auto&, const auto&) -> Result<net::HttpResponse> {
            return Transient("Connection refused");
          });
  auto put = s3.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_FALSE(put.ok());
  EXPECT_TRUE(put.status().transient());
  EXPECT_THAT(put.status().message(), HasSubstr("Connection refused"));
}

TEST(S3Holds, AsksWithAHeadForItsOwnUrlsOnly) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Config config = Minio();
  config.public_base_url = "https://cdn.example.com";
  S3Storage s3(config, http, clock);
  const std::string object = "http://minio.internal:9000/shop-images/imports/req-1/3_0.jpg";
  http.Respond(object, 200);
  EXPECT_TRUE(s3.Holds("https://cdn.example.com/imports/req-1/3_0.jpg"));
  EXPECT_TRUE(s3.Holds(object));  // a URL of the endpoint (another setting before) is ours too
  ASSERT_EQ(http.calls().size(), 2u);
  EXPECT_EQ(http.calls()[0].method, "HEAD");
  EXPECT_EQ(http.calls()[0].url, object);
  EXPECT_EQ(http.calls()[0].aws_sigv4, "aws:amz:eu-west-1:s3");
  EXPECT_FALSE(s3.Holds("https://cdn.example.com/imports/req-1/4_0.jpg"));  // 404
  EXPECT_FALSE(s3.Holds("http://127.0.0.1:8000/media/req-1/3_0.jpg"));
  EXPECT_FALSE(s3.Holds("https://i.ibb.co/x/3_0.jpg"));
  EXPECT_EQ(http.calls().size(), 3u);  // the foreign URLs were not asked about
}

TEST(S3Holds, APresignedUrlPastHalfItsLifetimeDoesNotCount) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Config config = Minio();
  config.presign_seconds = 7 * 24 * 3600;
  S3Storage s3(config, http, clock);
  http.Respond("http://minio.internal:9000/shop-images/imports/req-1/3_0.jpg", 200);
  auto url = s3.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_TRUE(url.ok());
  EXPECT_TRUE(s3.Holds(*url));
  clock.Advance(std::chrono::hours(3 * 24));
  EXPECT_TRUE(s3.Holds(*url));
  clock.Advance(std::chrono::hours(24));  // 4 of 7 days gone
  EXPECT_FALSE(s3.Holds(*url));
  EXPECT_EQ(http.calls().size(), 3u);  // the PUT and two HEADs
}

TEST(S3Ready, HeadsTheBucket) {
  testing::FakeHttpClient http;
  testing::FakeClock clock;
  S3Storage s3(Minio(), http, clock);
  const std::string bucket = "http://minio.internal:9000/shop-images";
  http.Respond(bucket, 200);
  EXPECT_TRUE(s3.Ready().ok());
  ASSERT_EQ(http.calls().size(), 1u);
  EXPECT_EQ(http.calls()[0].method, "HEAD");
  http.Respond(bucket, 404);  // a HEAD answer has no body
  Status missing = s3.Ready();
  EXPECT_EQ(missing.code(), StatusCode::kPermanent);
  EXPECT_THAT(missing.message(), HasSubstr("NoSuchBucket (HTTP 404) for bucket 'shop-images'"));
  http.Respond(bucket, 403);
  EXPECT_THAT(s3.Ready().message(), HasSubstr("AccessDenied (HTTP 403)"));
  http.Respond(bucket, 503);
  EXPECT_TRUE(s3.Ready().transient());
  // Virtual-host: the bucket is the host, its path "/".
  testing::FakeHttpClient aws_http;
  S3Storage aws(Aws(), aws_http, clock);
  aws_http.Respond("https://shop-images.s3.eu-west-1.amazonaws.com/", 200);
  EXPECT_TRUE(aws.Ready().ok());
}

// ---- With libcurl, against a local server
// --------------------------------------------------------

// What the fixture server received.
struct Received {
  std::string method;
  std::string target;
  std::string body;
  httplib::Headers headers;
};

class S3SignatureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net::InitHttpClient();
    server_.server().Put(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(mu_);
        received_.push_back({req.method, req.target, req.body, req.headers});
      }
      res.status = status_;
      if (status_ != 200) res.set_content(error_body_, "application/xml");
      if (!retry_after_.empty()) res.set_header("Retry-After", retry_after_);
    });
    server_.Start();
  }

  S3Config Config() const {
    S3Config c;
    c.endpoint = server_.Url("");
    c.bucket = "imgproc-test";
    c.prefix = "shop";
    c.acl = "public-read";
    c.access_key_id = "AKIDEXAMPLE";
    c.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    c.session_token = "SESSION";
    return c;
  }

  testing::FixtureServer server_;
  std::mutex mu_;
  std::vector<Received> received_;
  int status_ = 200;
  std::string error_body_;
  std::string retry_after_;
};

// The signature a server would compute for `r`, with the headers the request says it signed.
std::string Recompute(const Received& r, const std::string& signed_headers,
                      const std::string& secret) {
  sigv4::CanonicalRequest canonical;
  canonical.method = r.method;
  canonical.path = r.target;
  canonical.payload_hash = r.headers.find("x-amz-content-sha256")->second;
  for (size_t at = 0; at < signed_headers.size();) {
    const size_t end = std::min(signed_headers.find(';', at), signed_headers.size());
    const std::string name = signed_headers.substr(at, end - at);
    const auto it = r.headers.find(name);  // httplib's header names are case-insensitive
    canonical.headers.emplace_back(name, it == r.headers.end() ? "" : it->second);
    at = end + 1;
  }
  return sigv4::Sign(canonical, r.headers.find("x-amz-date")->second, "us-east-1", "s3", secret);
}

TEST_F(S3SignatureTest, LibcurlSignsThePutAsSigV4Says) {
  S3Storage s3(Config());
  auto put = s3.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_TRUE(put.ok()) << put.status().message();
  std::lock_guard lock(mu_);
  ASSERT_EQ(received_.size(), 1u);
  const Received& r = received_[0];
  EXPECT_EQ(r.target, "/imgproc-test/shop/req-1/3_0.jpg");
  EXPECT_EQ(r.body, "JPEGDATA");
  EXPECT_EQ(r.headers.find("x-amz-content-sha256")->second, request::Sha256Hex("JPEGDATA"));
  EXPECT_EQ(r.headers.find("Content-Type")->second, "image/jpeg");
  ASSERT_EQ(r.headers.count("Authorization"), 1u);
  const std::string authorization = r.headers.find("Authorization")->second;
  const std::regex shape(
      R"(AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/(\d{8})/us-east-1/s3/aws4_request, )"
      R"(SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64}))");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(authorization, m, shape)) << authorization;
  EXPECT_EQ(m[1].str(), r.headers.find("x-amz-date")->second.substr(0, 8));
  // Everything that says what is stored, and the token, is signed.
  EXPECT_EQ(m[2].str(),
            "cache-control;content-type;host;x-amz-acl;x-amz-content-sha256;x-amz-date;"
            "x-amz-security-token");
  EXPECT_EQ(Recompute(r, m[2], "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), m[3].str());
  EXPECT_NE(Recompute(r, m[2], "another secret"), m[3].str());
}

// Above 1 MiB libcurl adds "Expect: 100-continue" after signing: it must not be a signed header.
TEST_F(S3SignatureTest, ALargePutIsSignedAsWell) {
  const std::string large(2 * 1024 * 1024, 'j');
  S3Storage s3(Config());
  auto put = s3.Put("req-1", "3_0.jpg", large);
  ASSERT_TRUE(put.ok()) << put.status().message();
  std::lock_guard lock(mu_);
  ASSERT_EQ(received_.size(), 1u);
  const Received& r = received_[0];
  EXPECT_EQ(r.body.size(), large.size());
  const std::string authorization = r.headers.find("Authorization")->second;
  const std::regex shape(R"(.*SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64}))");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(authorization, m, shape)) << authorization;
  EXPECT_EQ(m[1].str().find("expect"), std::string::npos) << m[1];
  EXPECT_EQ(Recompute(r, m[1], "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), m[2].str());
}

TEST_F(S3SignatureTest, SlowDownThroughLibcurlIsTransientWithItsRetryAfter) {
  status_ = 503;
  error_body_ =
      "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
      "</Error>";
  retry_after_ = "2";
  S3Storage s3(Config());
  auto put = s3.Put("req-1", "3_0.jpg", "JPEGDATA");
  ASSERT_FALSE(put.ok());
  EXPECT_TRUE(put.status().transient()) << put.status().message();
  EXPECT_THAT(put.status().message(), HasSubstr("SlowDown (HTTP 503)"));
  EXPECT_EQ(put.status().retry_after(), 2000ms);
}

}  // namespace
}  // namespace imgproc::storage
