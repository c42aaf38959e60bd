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

json SettingsJson(const request::OutputSettings& s) {
  return {{"format", request::ToString(s.format)},
          {"quality", s.quality},
          {"max_width", s.max_width},
          {"max_height", s.max_height},
          {"progressive", s.progressive}};
}

// A product's list for each variant of `outputs` (null until the product is final, as its
// "Output Image Urls").
std::vector<std::pair<std::string, std::optional<std::string>>> VariantUrls(
    const request::ProductView& p, const request::OutputPlan& outputs) {
  std::vector<std::pair<int, std::vector<request::VariantOutput>>> by_index;
  for (const auto& z : p.image_sizes) by_index.emplace_back(z.index, z.variants);
  std::vector<std::pair<std::string, std::optional<std::string>>> lists;
  for (const auto& v : outputs.variants) {
    lists.emplace_back(v.name, p.output_urls
                                   ? std::optional<std::string>(request::ComposeVariantUrls(
                                         p.input_urls, v.name, by_index))
                                   : std::nullopt);
  }
  return lists;
}

// The original design's four keys, "Variants" when the request has some, and with `extensions`
// our per-image fields.
json ProductJson(const request::ProductView& p, const request::OutputPlan& outputs,
                 bool extensions) {
  json j = {
      {"Serial Number", p.serial_no},
      {"Product Name", p.product_name},
      {"Input Image Urls", p.input_urls},
      {"Output Image Urls", p.output_urls ? json(*p.output_urls) : json()},
  };
  if (!outputs.variants.empty()) {
    json variants = json::object();
    for (auto& [name, urls] : VariantUrls(p, outputs)) variants[name] = urls ? json(*urls) : json();
    j["Variants"] = std::move(variants);
  }
  if (extensions) {
    j["Image Errors"] = ImageErrors(p.image_errors);
    j["Image Retries"] = ImageErrors(p.image_retries);
    json sizes = json::array();
    for (const auto& z : p.image_sizes) {
      json size = {{"index", z.index},
                   {"input_bytes", z.input_bytes},
                   {"output_bytes", z.output_bytes},
                   {"reused", z.reused}};
      if (!z.variants.empty()) {
        json variants = json::object();
        for (const auto& v : z.variants) {
          variants[v.name] = {
              {"output_bytes", v.bytes}, {"width", v.width}, {"height", v.height}, {"url", v.url}};
        }
        size["variants"] = std::move(variants);
      }
      sizes.push_back(std::move(size));
    }
    j["Image Sizes"] = std::move(sizes);
  }
  return j;
}

}  // namespace

std::string StatusJson(const request::RequestView& request,
                       const std::optional<request::ProductRange>& page) {
  json products = json::array();
  for (const auto& p : request.products) {
    products.push_back(ProductJson(p, request.outputs, /*extensions=*/true));
  }
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
  if (request.outputs != request::OutputPlan{}) {
    json variants = json::object();
    for (const auto& v : request.outputs.variants) variants[v.name] = SettingsJson(v.settings);
    body["outputs"] = {{"main", SettingsJson(request.outputs.main)}, {"variants", variants}};
  }
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
  for (const auto& p : request.products) {
    list.push_back(ProductJson(p, request.outputs, /*extensions=*/false));
  }
  return Dump(list);
}

std::string OutputCsv(const request::RequestView& request, bool with_errors) {
  return OutputCsvHeader(request.outputs, with_errors) +
         OutputCsvLines(request.products, request.outputs, with_errors);
}

std::string OutputCsvHeader(const request::OutputPlan& outputs, bool with_errors) {
  std::string out = "Serial Number,Product Name,Input Image Urls,Output Image Urls";
  for (const auto& v : outputs.variants) out += "," + csv::EscapeField(v.name + " Image Urls");
  out += with_errors ? ",Errors\r\n" : "\r\n";
  return out;
}

json PresetsObject(const request::Presets& presets) {
  json all = json::object();
  for (const auto& [name, settings] : presets) all[name] = SettingsJson(settings);
  return all;
}

std::string PresetsJson(const request::Presets& presets) {
  return Dump(json{{"presets", PresetsObject(presets)}});
}

std::string PresetsObjectJson(const request::Presets& presets) {
  return Dump(PresetsObject(presets));
}

std::string OutputCsvLines(const std::vector<request::ProductView>& products,
                           const request::OutputPlan& outputs, bool with_errors) {
  std::string out;
  for (const auto& p : products) {
    out += std::to_string(p.serial_no);
    out += ',';
    out += csv::EscapeField(p.product_name);
    out += ',';
    out += csv::EscapeField(p.input_urls);
    out += ',';
    out += csv::EscapeField(p.output_urls.value_or(""));
    for (const auto& [name, urls] : VariantUrls(p, outputs)) {
      out += ',';
      out += csv::EscapeField(urls.value_or(""));
    }
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
