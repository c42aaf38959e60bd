// Our Signature V4 code against AWS's published examples (the S3 API reference, "Authenticating
// Requests: Using Query Parameters" and "Using the Authorization Header"): the presigned URLs
// rest on it, and the S3 tests recompute libcurl's signatures with it.
#include "storage/sigv4.h"

#include <gtest/gtest.h>

#include "request/request.h"

namespace imgproc::storage::sigv4 {
namespace {

const Credentials kAws = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
constexpr int64_t k20130524 = 1369353600000;  // 2013-05-24T00:00:00Z

TEST(SigV4, PresignedGetUrlIsAwsExample) {
  EXPECT_EQ(PresignGet(kAws, "us-east-1", "https://examplebucket.s3.amazonaws.com", "/test.txt",
                       k20130524, 86400),
            "https://examplebucket.s3.amazonaws.com/test.txt"
            "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

TEST(SigV4, HeaderSignatureOfAGetIsAwsExample) {
  CanonicalRequest request;
  request.method = "GET";
  request.path = "/test.txt";
  request.payload_hash = imgproc::request::Sha256Hex("");
  // Any order, and blanks around values, as a server receives them.
  request.headers = {{"x-amz-date", "20130524T000000Z"},
                     {"range", " bytes=0-9 "},
                     {"host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-content-sha256", request.payload_hash}};
  EXPECT_EQ(SignedHeaders(request), "host;range;x-amz-content-sha256;x-amz-date");
  EXPECT_EQ(Sign(request, "20130524T000000Z", "us-east-1", "s3", kAws.secret_key),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  // Every input counts.
  EXPECT_NE(Sign(request, "20130524T000000Z", "us-east-2", "s3", kAws.secret_key),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  request.path = "/test2.txt";
  EXPECT_NE(Sign(request, "20130524T000000Z", "us-east-1", "s3", kAws.secret_key),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, SessionTokenIsSignedIntoThePresignedUrl) {
  Credentials temporary = kAws;
  temporary.session_token = "token/with+chars=";
  const std::string url =
      PresignGet(temporary, "us-east-1", "https://examplebucket.s3.amazonaws.com", "/test.txt",
                 k20130524, 86400);
  EXPECT_NE(url.find("&X-Amz-Security-Token=token%2Fwith%2Bchars%3D&"), std::string::npos) << url;
  EXPECT_EQ(url.find("aeeed9bbccd4d02ee5c0109b86d86835"), std::string::npos) << url;
}

TEST(SigV4, EncodingAndDates) {
  EXPECT_EQ(UriEncode("shop/a b+c~_.-/ü.jpg", /*keep_slash=*/true),
            "shop/a%20b%2Bc~_.-/%C3%BC.jpg");
  EXPECT_EQ(UriEncode("a/b", /*keep_slash=*/false), "a%2Fb");
  EXPECT_EQ(AmzDate(k20130524 + 3723000), "20130524T010203Z");
  EXPECT_EQ(request::Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace imgproc::storage::sigv4
