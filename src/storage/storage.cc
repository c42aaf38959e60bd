#include "storage/storage.h"

#include "storage/imgbb_storage.h"
#include "storage/local_storage.h"

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
  return InvalidArgument("STORAGE must be 'local' or 'imgbb' (got '" + config.kind + "')");
}

}  // namespace imgproc::storage
