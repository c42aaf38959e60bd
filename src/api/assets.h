// Files compiled into the binary (see cmake/embed.cmake): the web page at "/" with its script
// and style sheet, and the OpenAPI document at "/openapi.json". No build step, no network.
#ifndef IMGPROC_API_ASSETS_H_
#define IMGPROC_API_ASSETS_H_

#include <optional>
#include <string_view>

namespace imgproc::api {

// One embedded file and the URL path it is served at.
struct Asset {
  std::string_view path;
  std::string_view content_type;
  std::string_view body;
};

// The asset served at `path`, if any.
std::optional<Asset> FindAsset(std::string_view path);

}  // namespace imgproc::api

#endif  // IMGPROC_API_ASSETS_H_
