// STORAGE=s3: the compressed images go to a bucket of any S3-compatible object store (Amazon S3,
// Cloudflare R2, Google Cloud Storage's XML API, MinIO, Ceph RGW), uploaded with a PUT that
// libcurl signs (CURLOPT_AWS_SIGV4) on the process's one multi loop, like every other transfer.
//
// Keys are predictable: [<S3_PREFIX>/]<request id>/<serial>_<index>.jpg, or with the image cache
// [<S3_PREFIX>/]objects/<sha256>_<variant>.jpg, one object per content. Either way a key's bytes
// never change (a retried image writes the same image again), so a long Cache-Control is safe.
//
// The output URL is S3_PUBLIC_BASE_URL + "/" + key (a CDN or a public bucket), or else a
// presigned GET URL of the object that is valid for S3_PRESIGN_SECONDS.
#ifndef IMGPROC_STORAGE_S3_STORAGE_H_
#define IMGPROC_STORAGE_S3_STORAGE_H_

#include <map>
#include <string>

#include "common/clock.h"
#include "net/http_client.h"
#include "storage/sigv4.h"
#include "storage/storage.h"

namespace imgproc::storage {

class S3Storage final : public ImageStorage {
 public:
  // Requests go through `http` and presigned URLs are dated by `clock` (the seams tests replace).
  explicit S3Storage(S3Config config, net::HttpClient& http = net::CurlHttpClient(),
                     Clock& clock = RealClock());

  // PUT of the object with the Content-Type of its extension, Cache-Control and the ACL. Throttling
  // (503 SlowDown, 429) and 5xx are kTransient (with the server's Retry-After); a wrong key, a
  // missing bucket or a refusal are kPermanent, naming the S3 error code and the bucket.
  Result<std::string> Put(const std::string& request_id, const std::string& name,
                          const std::string& bytes) override;
  // A URL this storage gave whose object a HEAD finds. A presigned URL with less than half of
  // its lifetime left does not count: the image cache then stores the image anew, with a new URL,
  // rather than hand out one about to expire.
  bool Holds(const std::string& url) override;
  // HEAD of the bucket.
  Status Ready() override;

  // The object's key for ImageStorage::Put's arguments (not URI-encoded).
  std::string Key(const std::string& request_id, const std::string& name) const;
  // The object's URL at the endpoint, unsigned: path-style or virtual-host.
  std::string ObjectUrl(const std::string& key) const;
  // The URL that Put returns for `key`.
  std::string OutputUrl(const std::string& key) const;

 private:
  // "scheme://host[:port]" of the bucket's requests, and their path up to the key ("/bucket/"
  // path-style, "/" virtual-host; after any path of the endpoint).
  std::string origin_;
  std::string key_path_;
  std::string bucket_path_;  // the bucket's own path, for HEAD bucket

  Result<net::HttpResponse> Send(const std::string& method, const std::string& url,
                                 std::vector<std::string> headers, const std::string& body);
  // The encoded key of an output URL of ours (without its query), or "" when it is not one.
  std::string EncodedKeyOf(const std::string& url) const;
  bool FreshEnough(const std::string& url) const;

  S3Config config_;
  net::HttpClient& http_;
  Clock& clock_;
  net::FetchOptions options_;
  sigv4::Credentials credentials_;
};

// The <Code> of an S3 XML error body ("NoSuchBucket"), or "" when there is none.
std::string S3ErrorCode(const std::string& body);

// The error of an S3 answer that is not a success, with its error `code` (S3ErrorCode; may be
// ""), for `what` ("upload of <key>") in `bucket`: kTransient for throttling and server errors
// (with the Retry-After asked for), kPermanent otherwise, with a hint for the usual set-up errors.
Status S3Failure(long http_status, const std::string& code,
                 const std::map<std::string, std::string>& headers, const std::string& what,
                 const std::string& bucket);

}  // namespace imgproc::storage

#endif  // IMGPROC_STORAGE_S3_STORAGE_H_
