// Where compressed images go. Each backend stores the JPEG bytes and returns the public URL that
// appears in "Output Image Urls".
#ifndef IMGPROC_STORAGE_STORAGE_H_
#define IMGPROC_STORAGE_STORAGE_H_

#include <memory>
#include <string>

#include "common/result.h"

namespace imgproc::storage {

class ImageStorage {
 public:
  virtual ~ImageStorage() = default;

  // Stores `jpeg` under `name` (e.g. "3_0.jpg") for the request and returns its public URL. On
  // local disk a second Put of a name replaces the file (a retried image is stored once); ImgBB
  // keeps every upload, each with a URL of its own. Errors are kTransient when a later attempt
  // may succeed (rate limits, 5xx, timeouts) and kPermanent otherwise.
  virtual Result<std::string> Put(const std::string& request_id, const std::string& name,
                                  const std::string& jpeg) = 0;

  // Whether an output URL this storage returned still names a stored image: the image cache
  // reuses an output only while it does (a local file deleted by hand is made again).
  virtual bool Holds(const std::string& url) = 0;
};

struct StorageConfig {
  std::string kind = "local";   // "local" or "imgbb"
  std::string media_dir;        // local: DATA_DIR/media
  std::string public_base_url;  // local: URL prefix, e.g. http://127.0.0.1:8000
  std::string imgbb_api_key;
  std::string imgbb_upload_url = "https://api.imgbb.com/1/upload";
};

Result<std::unique_ptr<ImageStorage>> MakeStorage(const StorageConfig& config);

}  // namespace imgproc::storage

#endif  // IMGPROC_STORAGE_STORAGE_H_
