// ImgBB's upload API (https://api.imgbb.com/): POST multipart with `key` and `image`; the public
// URL is data.url of the JSON answer. The same code talks to a local fake in the tests.
#ifndef IMGPROC_STORAGE_IMGBB_STORAGE_H_
#define IMGPROC_STORAGE_IMGBB_STORAGE_H_

#include <string>

#include "net/http_client.h"
#include "storage/storage.h"

namespace imgproc::storage {

class ImgbbStorage final : public ImageStorage {
 public:
  // Uploads go through `http` (the seam a test replaces).
  ImgbbStorage(std::string api_key, std::string upload_url,
               net::HttpClient& http = net::CurlHttpClient());

  Result<std::string> Put(const std::string& request_id, const std::string& name,
                          const std::string& bytes) override;
  // ImgBB keeps an upload made without an expiration (ours) and offers no cheap way to ask: a URL
  // it gives (https://i.ibb.co/...) is taken to hold. Another storage's (a local /media/ URL
  // cached before STORAGE changed) does not.
  bool Holds(const std::string& url) override;

 private:
  std::string api_key_;
  std::string upload_url_;
  net::HttpClient& http_;
  net::FetchOptions options_;
};

// Turns ImgBB's answer into the image URL or an error (exposed for tests). ImgBB reports its rate
// limit as HTTP 400 "Rate limit reached.": that, 429 and 5xx are transient.
Result<std::string> ParseImgbbResponse(long http_status, const std::string& body);

}  // namespace imgproc::storage

#endif  // IMGPROC_STORAGE_IMGBB_STORAGE_H_
