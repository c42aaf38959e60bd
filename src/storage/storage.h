// Where compressed images go. Each backend stores the JPEG bytes and returns the public URL that
// appears in "Output Image Urls".
#ifndef IMGPROC_STORAGE_STORAGE_H_
#define IMGPROC_STORAGE_STORAGE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace imgproc::storage {

class ImageStorage {
 public:
  virtual ~ImageStorage() = default;

  // Stores `bytes` under `name` (e.g. "3_0.jpg", "3_0_thumb.webp") for the request and returns
  // its public URL (the Content-Type, where the backend keeps one, is that of the extension). On
  // local disk and in S3 a second Put of a name replaces the object (a retried image is stored
  // once); ImgBB keeps every upload, each with a URL of its own. Errors are kTransient when a
  // later attempt may succeed (rate limits, 5xx, timeouts) and kPermanent otherwise.
  virtual Result<std::string> Put(const std::string& request_id, const std::string& name,
                                  const std::string& bytes) = 0;

  // Whether an output URL this storage returned still names a stored image: the image cache
  // reuses an output only while it does (a local file deleted by hand is made again).
  virtual bool Holds(const std::string& url) = 0;

  // Whether the storage answers, for /readyz (an S3 bucket is asked; the others have nothing to
  // ask cheaply).
  virtual Status Ready() { return Status::Ok(); }
};

// STORAGE=s3: any S3-compatible object store (s3_storage.h).
struct S3Config {
  std::string endpoint;  // empty: AWS's regional endpoint, https://s3.<region>.amazonaws.com
  std::string region = "us-east-1";
  std::string bucket;
  std::string prefix;                // optional first part of every key, without slashes around it
  bool force_path_style = false;     // endpoint/bucket/key rather than bucket.endpoint/key
  std::string public_base_url;       // output URL = this + "/" + key; empty: presigned GET URLs
  int64_t presign_seconds = 604800;  // the lifetime of a presigned URL (SigV4's maximum, 7 days)
  std::string cache_control = "max-age=31536000";  // a key's bytes never change (see s3_storage.h)
  std::string acl;                                 // a canned ACL (x-amz-acl), or none
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
};

struct StorageConfig {
  std::string kind = "local";   // "local", "imgbb" or "s3"
  std::string media_dir;        // local: DATA_DIR/media
  std::string public_base_url;  // local: URL prefix, e.g. http://127.0.0.1:8000
  std::string imgbb_api_key;
  std::string imgbb_upload_url = "https://api.imgbb.com/1/upload";
  S3Config s3;
};

Result<std::unique_ptr<ImageStorage>> MakeStorage(const StorageConfig& config);

}  // namespace imgproc::storage

#endif  // IMGPROC_STORAGE_STORAGE_H_
