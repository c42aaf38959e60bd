// Files under DATA_DIR/media/<request_id>/, served by the API at /media/<request_id>/<name>.
#ifndef IMGPROC_STORAGE_LOCAL_STORAGE_H_
#define IMGPROC_STORAGE_LOCAL_STORAGE_H_

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "storage/storage.h"

namespace imgproc::storage {

class LocalStorage final : public ImageStorage {
 public:
  LocalStorage(std::filesystem::path media_dir, std::string public_base_url);

  // Writes to a temporary file and renames it, so a reader never sees half an image.
  Result<std::string> Put(const std::string& request_id, const std::string& name,
                          const std::string& bytes) override;
  // A URL under this storage's /media/ whose file is there.
  bool Holds(const std::string& url) override;

 private:
  std::filesystem::path media_dir_;
  std::string public_base_url_;
};

// Maps the part of a /media/ URL path after "/media/" to a file inside `media_dir`, or nullopt
// when the path could leave that folder or names anything but a plain file inside it.
std::optional<std::filesystem::path> ResolveMediaPath(const std::filesystem::path& media_dir,
                                                      std::string_view relative);

}  // namespace imgproc::storage

#endif  // IMGPROC_STORAGE_LOCAL_STORAGE_H_
