// libFuzzer target: the upload path as the API sees it (a multipart body parsed by the HTTP
// layer into parts), then status and output CSV of what was stored. Any input must give a JSON
// answer of 202, 400 or 413, never a crash or a 5xx.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/handlers.h"
#include "store/store.h"

namespace {

imgproc::api::Api& TheApi() {
  static std::unique_ptr<imgproc::store::Store> store = [] {
    spdlog::set_level(spdlog::level::off);  // one log line per accepted input is only noise
    auto s = imgproc::store::OpenStore("sqlite://:memory:");
    if (!s.ok()) __builtin_trap();
    return std::move(*s);
  }();
  static imgproc::api::Api api(*store, *store, imgproc::api::ApiOptions{}, nullptr);
  return api;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Layout: first byte picks which parts exist; then "webhook_url\ncsv bytes".
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nl = rest.find('\n');
  const std::string webhook(nl == std::string_view::npos ? "" : rest.substr(0, nl));
  const std::string csv(nl == std::string_view::npos ? rest : rest.substr(nl + 1));

  imgproc::api::Request request;
  request.method = "POST";
  request.path = flags & 1 ? "/api/p/upload/" : "/api/p/upload";
  if (flags & 2) request.form["csv_file"] = {"products.csv", "text/csv", csv};
  if (flags & 4) request.form["webhook_url"] = {"", "", webhook};
  auto& api = TheApi();
  const auto response = api.Handle(request);
  if (response.status != 202 && response.status != 400 && response.status != 413) __builtin_trap();
  const auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_discarded()) __builtin_trap();
  if (response.status == 202) {
    const std::string id = body["request_id"];
    if (api.Handle({"GET", "/status/" + id + "/", {}, {}, {}, {}, {}}).status != 200)
      __builtin_trap();
    if (api.Handle({"GET", "/api/p/requests/" + id + "/output.csv", {}, {}, {}, {}, {}}).status !=
        200) {
      __builtin_trap();
    }
  } else if (!body["error"].is_string()) {
    __builtin_trap();
  }
  return 0;
}
