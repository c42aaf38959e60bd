#include "request/outputs.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <tuple>

#include "request/request.h"

namespace imgproc::request {
namespace {

// A bound past this is no bound for any image the limits let in (libvips' own limit is
// 10,000,000 per side; WebP's is 16,383, which the codec checks).
constexpr int kMaxDimension = 16384;
constexpr size_t kMaxVariants = 8;

// The whole of `text` as a decimal T, or nothing.
template <typename T = int>
std::optional<T> ParseInt(std::string_view text) {
  T value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

// A present, non-empty field.
std::optional<std::string_view> Given(const std::optional<std::string>& field) {
  if (!field) return std::nullopt;
  std::string_view value = Trim(*field);
  if (value.empty()) return std::nullopt;
  return value;
}

OutputChoice Refuse(std::string field, std::string error) {
  return OutputChoice{std::nullopt, std::move(field), std::move(error)};
}

std::string DimensionError(std::string_view field) {
  return std::string(field) + " must be a whole number of pixels from 1 to " +
         std::to_string(kMaxDimension);
}

}  // namespace

const char* ToString(OutputFormat format) {
  switch (format) {
    case OutputFormat::kJpeg:
      return "jpeg";
    case OutputFormat::kWebp:
      return "webp";
    case OutputFormat::kAvif:
      return "avif";
  }
  return "jpeg";
}

std::optional<OutputFormat> ParseOutputFormat(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "jpeg" || lower == "jpg") return OutputFormat::kJpeg;
  if (lower == "webp") return OutputFormat::kWebp;
  if (lower == "avif") return OutputFormat::kAvif;
  return std::nullopt;
}

const char* FileExtension(OutputFormat format) {
  return format == OutputFormat::kJpeg ? "jpg" : ToString(format);
}

const char* ContentType(OutputFormat format) {
  switch (format) {
    case OutputFormat::kJpeg:
      return "image/jpeg";
    case OutputFormat::kWebp:
      return "image/webp";
    case OutputFormat::kAvif:
      return "image/avif";
  }
  return "image/jpeg";
}

std::string Token(const OutputSettings& settings) {
  std::string token = ToString(settings.format);
  token += "-q" + std::to_string(settings.quality);
  if (settings.max_width != 0 || settings.max_height != 0) {
    token += "-" + std::to_string(settings.max_width) + "x" + std::to_string(settings.max_height);
  }
  if (settings.progressive) token += "-p";
  return token;
}

std::optional<OutputSettings> ParseToken(std::string_view token) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t dash = token.find('-', start);
    parts.push_back(token.substr(start, dash == std::string_view::npos ? dash : dash - start));
    if (dash == std::string_view::npos) break;
    start = dash + 1;
  }
  OutputSettings settings;
  const auto format = ParseOutputFormat(parts[0]);
  if (!format || parts.size() < 2 || parts[1].size() < 2 || parts[1][0] != 'q') return std::nullopt;
  settings.format = *format;
  const auto quality = ParseInt(parts[1].substr(1));
  if (!quality) return std::nullopt;
  settings.quality = *quality;
  size_t next = 2;
  if (next < parts.size() && parts[next] != "p") {
    const size_t x = parts[next].find('x');
    if (x == std::string_view::npos) return std::nullopt;
    const auto width = ParseInt(parts[next].substr(0, x));
    const auto height = ParseInt(parts[next].substr(x + 1));
    if (!width || !height || (*width == 0 && *height == 0)) return std::nullopt;
    settings.max_width = *width;
    settings.max_height = *height;
    ++next;
  }
  if (next < parts.size() && parts[next] == "p") {
    settings.progressive = true;
    ++next;
  }
  if (next != parts.size() || CheckSettings(settings)) return std::nullopt;
  if (Token(settings) != token) return std::nullopt;  // one spelling per settings
  return settings;
}

std::string EncodePlan(const OutputPlan& plan) {
  if (plan == OutputPlan{}) return "";
  std::string text = Token(plan.main);
  for (const auto& v : plan.variants) text += ";" + v.name + "=" + Token(v.settings);
  return text;
}

std::optional<OutputPlan> DecodePlan(std::string_view text) {
  OutputPlan plan;
  if (text.empty()) return plan;
  size_t end = text.find(';');
  const auto main = ParseToken(text.substr(0, end));
  if (!main) return std::nullopt;
  plan.main = *main;
  while (end != std::string_view::npos) {
    const size_t start = end + 1;
    end = text.find(';', start);
    const std::string_view item =
        text.substr(start, end == std::string_view::npos ? end : end - start);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || !IsPresetName(item.substr(0, eq))) return std::nullopt;
    const auto settings = ParseToken(item.substr(eq + 1));
    if (!settings) return std::nullopt;
    plan.variants.push_back(Variant{std::string(item.substr(0, eq)), *settings});
  }
  return plan;
}

Presets DefaultPresets() {
  return Presets{
      {"thumb", OutputSettings{OutputFormat::kWebp, 70, 400, 400, false}},
      {"large", OutputSettings{OutputFormat::kJpeg, 80, 1600, 1600, true}},
  };
}

bool IsPresetName(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::string CacheKey(const OutputPlan& plan) {
  std::string key = Token(plan.main);
  for (const auto& v : plan.variants) key += ";" + v.name + "=" + Token(v.settings);
  return key;
}

const char* ContentTypeOfName(std::string_view name) {
  const auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with(".webp")) return ContentType(OutputFormat::kWebp);
  if (ends_with(".avif")) return ContentType(OutputFormat::kAvif);
  return ContentType(OutputFormat::kJpeg);
}

std::string EncodeVariantOutputs(const std::vector<VariantOutput>& outputs) {
  std::string text;
  for (const auto& o : outputs) {
    text += o.name + "\t" + std::to_string(o.bytes) + "\t" + std::to_string(o.width) + "\t" +
            std::to_string(o.height) + "\t" + o.url + "\n";
  }
  return text;
}

std::vector<VariantOutput> DecodeVariantOutputs(std::string_view text) {
  std::vector<VariantOutput> outputs;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    std::string_view fields[5];
    size_t n = 0;
    for (; n < 4; ++n) {
      const size_t tab = line.find('\t');
      if (tab == std::string_view::npos) break;
      fields[n] = line.substr(0, tab);
      line.remove_prefix(tab + 1);
    }
    if (n != 4) continue;
    fields[4] = line;
    const auto bytes = ParseInt<int64_t>(fields[1]);
    const auto width = ParseInt(fields[2]);
    const auto height = ParseInt(fields[3]);
    if (!bytes || !width || !height) continue;
    outputs.push_back(
        VariantOutput{std::string(fields[0]), std::string(fields[4]), *bytes, *width, *height});
  }
  return outputs;
}

std::string ComposeVariantUrls(
    std::string_view input_urls, std::string_view variant,
    const std::vector<std::pair<int, std::vector<VariantOutput>>>& by_index) {
  std::vector<std::string> entries = SplitEntries(input_urls);
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!IsImageEntry(entries[i])) continue;
    std::string url;
    for (const auto& [index, outputs] : by_index) {
      if (index != static_cast<int>(i)) continue;
      for (const auto& o : outputs) {
        if (o.name == variant) url = o.url;
      }
    }
    entries[i] = std::move(url);
  }
  return JoinEntries(entries);
}

std::optional<std::string> CheckSettings(const OutputSettings& settings) {
  if (settings.quality < 1 || settings.quality > 100) {
    return "quality must be a whole number from 1 to 100";
  }
  if (settings.max_width < 0 || settings.max_width > kMaxDimension) {
    return DimensionError("max_width");
  }
  if (settings.max_height < 0 || settings.max_height > kMaxDimension) {
    return DimensionError("max_height");
  }
  if (settings.progressive && settings.format != OutputFormat::kJpeg) {
    return "progressive applies to JPEG only";
  }
  return std::nullopt;
}

OutputChoice ChooseOutputs(const OutputFields& fields, const Presets& presets) {
  OutputPlan plan;
  if (const auto text = Given(fields.format)) {
    const auto format = ParseOutputFormat(*text);
    if (!format) return Refuse("format", "format must be jpeg, webp or avif");
    plan.main.format = *format;
    plan.main.quality = *format == OutputFormat::kWebp ? 70 : 50;
  }
  if (const auto text = Given(fields.quality)) {
    const auto quality = ParseInt(*text);
    if (!quality || *quality < 1 || *quality > 100) {
      return Refuse("quality", "quality must be a whole number from 1 to 100");
    }
    plan.main.quality = *quality;
  }
  for (auto [field, name, target] :
       {std::tuple{&fields.max_width, "max_width", &plan.main.max_width},
        std::tuple{&fields.max_height, "max_height", &plan.main.max_height}}) {
    if (const auto text = Given(*field)) {
      const auto value = ParseInt(*text);
      if (!value || *value < 1 || *value > kMaxDimension) return Refuse(name, DimensionError(name));
      *target = *value;
    }
  }
  if (const auto text = Given(fields.progressive)) {
    if (*text == "true" || *text == "1") {
      plan.main.progressive = true;
    } else if (*text != "false" && *text != "0") {
      return Refuse("progressive", "progressive must be true or false");
    }
    if (plan.main.progressive && plan.main.format != OutputFormat::kJpeg) {
      return Refuse("progressive", "progressive applies to JPEG only");
    }
  }
  if (const auto text = Given(fields.presets)) {
    std::string_view rest = *text;
    while (true) {
      const size_t comma = rest.find(',');
      const std::string_view name = Trim(rest.substr(0, comma));
      if (!name.empty()) {
        const auto preset = presets.find(name);
        if (preset == presets.end()) {
          std::string known;
          for (const auto& [n, unused] : presets) known += (known.empty() ? "" : ", ") + n;
          return Refuse("presets", "presets names \"" + std::string(name) +
                                       "\", which this service does not have (it has: " +
                                       (known.empty() ? "none" : known) + ")");
        }
        const bool repeated = std::any_of(plan.variants.begin(), plan.variants.end(),
                                          [&](const Variant& v) { return v.name == name; });
        if (!repeated) plan.variants.push_back(Variant{preset->first, preset->second});
        if (plan.variants.size() > kMaxVariants) {
          return Refuse("presets", "at most " + std::to_string(kMaxVariants) + " presets");
        }
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return OutputChoice{plan, "", ""};
}

}  // namespace imgproc::request
