#include "report/report.h"

#include "csv/product_csv.h"
#include "report/json_writer.h"

namespace imgproc::report {
namespace {

void WriteImageErrors(JsonWriter& w, std::string_view key,
                      const std::vector<request::ImageError>& errors) {
  w.BeginArray(key);
  for (const auto& e : errors) {
    w.BeginObject();
    w.Int("index", e.index);
    w.String("url", e.url);
    w.String("error", e.error);
    w.Int("attempts", e.attempts);
    w.EndObject();
  }
  w.EndArray();
}

void WriteSettings(JsonWriter& w, std::string_view key, const request::OutputSettings& s) {
  w.BeginObject(key);
  w.String("format", request::ToString(s.format));
  w.Int("quality", s.quality);
  w.Int("max_width", s.max_width);
  w.Int("max_height", s.max_height);
  w.Bool("progressive", s.progressive);
  w.EndObject();
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
void WriteProduct(JsonWriter& w, const request::ProductView& p, const request::OutputPlan& outputs,
                  bool extensions) {
  w.BeginObject();
  w.Int("Serial Number", p.serial_no);
  w.String("Product Name", p.product_name);
  w.String("Input Image Urls", p.input_urls);
  w.StringOrNull("Output Image Urls", p.output_urls);
  if (!outputs.variants.empty()) {
    w.BeginObject("Variants");
    for (const auto& [name, urls] : VariantUrls(p, outputs)) w.StringOrNull(name, urls);
    w.EndObject();
  }
  if (extensions) {
    WriteImageErrors(w, "Image Errors", p.image_errors);
    WriteImageErrors(w, "Image Retries", p.image_retries);
    w.BeginArray("Image Sizes");
    for (const auto& z : p.image_sizes) {
      w.BeginObject();
      w.Int("index", z.index);
      w.Int("input_bytes", z.input_bytes);
      w.Int("output_bytes", z.output_bytes);
      w.Bool("reused", z.reused);
      if (!z.variants.empty()) {
        w.BeginObject("variants");
        for (const auto& v : z.variants) {
          w.BeginObject(v.name);
          w.Int("output_bytes", v.bytes);
          w.Int("width", v.width);
          w.Int("height", v.height);
          w.String("url", v.url);
          w.EndObject();
        }
        w.EndObject();
      }
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
}

// {"<name>": <settings>, ...}
void WritePresets(JsonWriter& w, const request::Presets& presets) {
  w.BeginObject();
  for (const auto& [name, settings] : presets) WriteSettings(w, name, settings);
  w.EndObject();
}

}  // namespace

std::string StatusJson(const request::RequestView& request,
                       const std::optional<request::ProductRange>& page) {
  std::string out;
  // About 1.2 KB a product with five images and their sizes: most bodies in one allocation.
  out.reserve(512 + 1280 * request.products.size());
  JsonWriter w(out);
  w.BeginObject();
  w.String("request_id", request.request_id);
  w.String("status", request::ToString(request.status));
  w.BeginObject("progress");
  w.Int("images_total", request.images_total);
  w.Int("images_done", request.images_done);
  w.Int("images_failed", request.images_failed);
  w.Int("images_reused", request.images_reused);
  w.EndObject();
  w.BeginArray("products");
  for (const auto& p : request.products) WriteProduct(w, p, request.outputs, /*extensions=*/true);
  w.EndArray();
  if (request.outputs != request::OutputPlan{}) {
    w.BeginObject("outputs");
    WriteSettings(w, "main", request.outputs.main);
    w.BeginObject("variants");
    for (const auto& v : request.outputs.variants) WriteSettings(w, v.name, v.settings);
    w.EndObject();
    w.EndObject();
  }
  if (page) {
    w.BeginObject("page");
    w.Int("offset", page->offset);
    w.IntOrNull("limit", page->limit);
    w.Int("total", request.products_total);
    w.EndObject();
  }
  if (request.webhook) {
    w.BeginObject("webhook");
    w.String("state", request.webhook->state);
    w.Int("attempts", request.webhook->attempts);
    w.IntOrNull("last_status", request.webhook->last_status);
    w.EndObject();
  }
  w.EndObject();
  return out;
}

std::string WebhookJson(const request::RequestView& request) {
  std::string out;
  JsonWriter w(out);
  w.BeginArray();
  for (const auto& p : request.products) WriteProduct(w, p, request.outputs, /*extensions=*/false);
  w.EndArray();
  return out;
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

std::string PresetsJson(const request::Presets& presets) {
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("presets");
  WritePresets(w, presets);
  w.EndObject();
  return out;
}

std::string PresetsObjectJson(const request::Presets& presets) {
  std::string out;
  JsonWriter w(out);
  WritePresets(w, presets);
  return out;
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
