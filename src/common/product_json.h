// The JSON form of a product, shared by the status API and the webhook: exactly the original
// design's four keys, with the "Image Errors" and "Image Retries" extensions only where asked for.
#ifndef IMGPROC_COMMON_PRODUCT_JSON_H_
#define IMGPROC_COMMON_PRODUCT_JSON_H_

#include <nlohmann/json.hpp>

#include "store/store.h"

namespace imgproc {

inline nlohmann::ordered_json ProductJson(const store::ProductView& p, bool with_errors) {
  nlohmann::ordered_json j = {
      {"Serial Number", p.serial_no},
      {"Product Name", p.product_name},
      {"Input Image Urls", p.input_urls},
      {"Output Image Urls",
       p.output_urls ? nlohmann::ordered_json(*p.output_urls) : nlohmann::ordered_json()},
  };
  if (with_errors) {
    auto list = [](const std::vector<store::ImageError>& errors) {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const auto& e : errors) {
        out.push_back(
            {{"index", e.index}, {"url", e.url}, {"error", e.error}, {"attempts", e.attempts}});
      }
      return out;
    };
    j["Image Errors"] = list(p.image_errors);
    j["Image Retries"] = list(p.image_retries);
  }
  return j;
}

}  // namespace imgproc

#endif  // IMGPROC_COMMON_PRODUCT_JSON_H_
