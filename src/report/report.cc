#include "report/report.h"

#include <nlohmann/json.hpp>

#include "csv/product_csv.h"

namespace imgproc::report {
namespace {

using json = nlohmann::ordered_json;

// Invalid UTF-8 (say, in a remote server's error text) is replaced, never thrown on.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json ImageErrors(const std::vector<request::ImageError>& errors) {
  json out = json::array();
  for (const auto& e : errors) {
    out.push_back(
        {{"index", e.index}, {"url", e.url}, {"error", e.error}, {"attempts", e.attempts}});
  }
  return out;
}

// The original design's four keys, and with `extensions` our per-image fields.
json ProductJson(const request::ProductView& p, bool extensions) {
  json j = {
      {"Serial Number", p.serial_no},
      {"Product Name", p.product_name},
      {"Input Image Urls", p.input_urls},
      {"Output Image Urls", p.output_urls ? json(*p.output_urls) : json()},
  };
  if (extensions) {
    j["Image Errors"] = ImageErrors(p.image_errors);
    j["Image Retries"] = ImageErrors(p.image_retries);
    json sizes = json::array();
    for (const auto& z : p.image_sizes) {
      sizes.push_back({{"index", z.index},
                       {"input_bytes", z.input_bytes},
                       {"output_bytes", z.output_bytes},
                       {"reused", z.reused}});
    }
    j["Image Sizes"] = std::move(sizes);
  }
  return j;
}

}  // namespace

std::string StatusJson(const request::RequestView& request,
                       const std::optional<request::ProductRange>& page) {
  json products = json::array();
  for (const auto& p : request.products) products.push_back(ProductJson(p, /*extensions=*/true));
  json body = {
      {"request_id", request.request_id},
      {"status", request::ToString(request.status)},
      {"progress",
       {{"images_total", request.images_total},
        {"images_done", request.images_done},
        {"images_failed", request.images_failed},
        {"images_reused", request.images_reused}}},
      {"products", std::move(products)},
  };
  if (page) {
    body["page"] = {{"offset", page->offset},
                    {"limit", page->limit ? json(*page->limit) : json()},
                    {"total", request.products_total}};
  }
  if (request.webhook) {
    json hook = {{"state", request.webhook->state}, {"attempts", request.webhook->attempts}};
    hook["last_status"] =
        request.webhook->last_status ? json(*request.webhook->last_status) : json();
    body["webhook"] = std::move(hook);
  }
  return Dump(body);
}

std::string WebhookJson(const request::RequestView& request) {
  json list = json::array();
  for (const auto& p : request.products) list.push_back(ProductJson(p, /*extensions=*/false));
  return Dump(list);
}

std::string OutputCsv(const request::RequestView& request, bool with_errors) {
  return OutputCsvHeader(with_errors) + OutputCsvLines(request.products, with_errors);
}

std::string OutputCsvHeader(bool with_errors) {
  std::string out = "Serial Number,Product Name,Input Image Urls,Output Image Urls";
  out += with_errors ? ",Errors\r\n" : "\r\n";
  return out;
}

std::string OutputCsvLines(const std::vector<request::ProductView>& products, bool with_errors) {
  std::string out;
  for (const auto& p : products) {
    out += std::to_string(p.serial_no);
    out += ',';
    out += csv::EscapeField(p.product_name);
    out += ',';
    out += csv::EscapeField(p.input_urls);
    out += ',';
    out += csv::EscapeField(p.output_urls.value_or(""));
    if (with_errors) {
      std::string errors;
      for (const auto& e : p.image_errors) {
        if (!errors.empty()) errors += "; ";
        errors += "#" + std::to_string(e.index) + " " + e.url + ": " + e.error;
      }
      out += ',';
      out += csv::EscapeField(errors);
    }
    out += "\r\n";
  }
  return out;
}

}  // namespace imgproc::report
