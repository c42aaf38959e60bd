#include "storage/storage.h"

#include "storage/imgbb_storage.h"
#include "storage/local_storage.h"
#include "storage/s3_storage.h"

namespace imgproc::storage {

Result<std::unique_ptr<ImageStorage>> MakeStorage(const StorageConfig& config) {
  if (config.kind == "local") {
    return std::unique_ptr<ImageStorage>(
        std::make_unique<LocalStorage>(config.media_dir, config.public_base_url));
  }
  if (config.kind == "imgbb") {
    if (config.imgbb_api_key.empty()) return InvalidArgument("STORAGE=imgbb needs IMGBB_API_KEY");
    return std::unique_ptr<ImageStorage>(
        std::make_unique<ImgbbStorage>(config.imgbb_api_key, config.imgbb_upload_url));
  }
  if (config.kind == "s3") {
    if (config.s3.bucket.empty()) return InvalidArgument("STORAGE=s3 needs S3_BUCKET");
    if (config.s3.access_key_id.empty() || config.s3.secret_access_key.empty()) {
      return InvalidArgument("STORAGE=s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    }
    return std::unique_ptr<ImageStorage>(std::make_unique<S3Storage>(config.s3));
  }
  return InvalidArgument("STORAGE must be 'local', 'imgbb' or 's3' (got '" + config.kind + "')");
}

}  // namespace imgproc::storage
