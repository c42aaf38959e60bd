// The JSON form of a product, shared by the status API and the webhook: exactly the original
// design's four keys, with the "Image Errors" extension only where asked for.
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
    nlohmann::ordered_json errors = nlohmann::ordered_json::array();
    for (const auto& e : p.image_errors) {
      errors.push_back(
          {{"index", e.index}, {"url", e.url}, {"error", e.error}, {"attempts", e.attempts}});
    }
    j["Image Errors"] = std::move(errors);
  }
  return j;
}

}  // namespace imgproc

#endif  // IMGPROC_COMMON_PRODUCT_JSON_H_
