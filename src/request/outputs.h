// What a request's images become: the output settings of its main output (the seed's JPEG at
// quality 50 unless it asked for others) and of its variants (named presets from the
// configuration), how they are written down in the store and in the image cache's key, and how a
// request's form fields choose them. Pure functions: the API, `imgproc process`, the stores and
// the pipeline all decide through these.
#ifndef IMGPROC_REQUEST_OUTPUTS_H_
#define IMGPROC_REQUEST_OUTPUTS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imgproc::request {

enum class OutputFormat { kJpeg, kWebp, kAvif };
const char* ToString(OutputFormat format);                             // "jpeg", "webp", "avif"
std::optional<OutputFormat> ParseOutputFormat(std::string_view text);  // the inverse, any case
const char* FileExtension(OutputFormat format);                        // "jpg", "webp", "avif"
const char* ContentType(OutputFormat format);                          // "image/jpeg", ...

// One output of an image.
struct OutputSettings {
  OutputFormat format = OutputFormat::kJpeg;
  int quality = 50;  // 1..100
  // The output fits inside these, keeping its aspect ratio and never upscaled; 0: no bound.
  int max_width = 0;
  int max_height = 0;
  bool progressive = false;  // an interlaced (progressive) JPEG; JPEG only
  bool operator==(const OutputSettings& other) const = default;
};

// The seed's output: a baseline JPEG at quality 50, the input's dimensions.
inline bool IsSeedOutput(const OutputSettings& settings) { return settings == OutputSettings{}; }

// The settings written as one token, e.g. "jpeg-q50" (the seed's), "webp-q70-400x400",
// "jpeg-q80-1600x1600-p": the format, the quality, the bounds when there is one (0 for none), and
// "-p" for progressive. Part of a stored object's name and of the image cache's key, so equal
// settings always give the same token.
std::string Token(const OutputSettings& settings);
std::optional<OutputSettings> ParseToken(std::string_view token);  // the inverse

// A named extra output of every image of a request (a preset such as "thumb").
struct Variant {
  std::string name;
  OutputSettings settings;
  bool operator==(const Variant& other) const = default;
};

// What a request's images become: one main output ("Output Image Urls") and its variants, in the
// order the request named them.
struct OutputPlan {
  OutputSettings main;
  std::vector<Variant> variants;
  bool operator==(const OutputPlan& other) const = default;
};

// The stored form: "" for the seed's plan (what every request made before presets has), else the
// main token and each variant as ";name=token", e.g. "jpeg-q50;thumb=webp-q70-400x400". Also the
// image cache's key: an output is reused only for the same plan.
std::string EncodePlan(const OutputPlan& plan);
std::optional<OutputPlan> DecodePlan(std::string_view text);  // the inverse; "" is the seed's

// The presets a request may name (PRESETS), by name.
using Presets = std::map<std::string, OutputSettings, std::less<>>;
// What a deployment offers without PRESETS: "thumb" (400x400 WebP, quality 70) and "large"
// (1600x1600 progressive JPEG, quality 80).
Presets DefaultPresets();
// A preset's name: 1 to 32 of [a-z0-9_-], starting with a letter or digit.
bool IsPresetName(std::string_view name);

// The output fields of an upload (form fields) or of `imgproc process` (flags), as given: unset
// when absent. `presets` is a comma-separated list of preset names.
struct OutputFields {
  std::optional<std::string> format;
  std::optional<std::string> quality;
  std::optional<std::string> max_width;
  std::optional<std::string> max_height;
  std::optional<std::string> progressive;
  std::optional<std::string> presets;
};

// A plan, or the field that is wrong and why (the 400's words).
struct OutputChoice {
  std::optional<OutputPlan> plan;
  std::string field;  // when !plan: e.g. "quality"
  std::string error;  // when !plan: e.g. "quality must be a whole number from 1 to 100"
};
// The plan the fields ask for: the main output from format, quality (default 50, or the format's
// own default when only the format is given: 50 for JPEG, 70 for WebP, 50 for AVIF), max_width,
// max_height (1..16384) and progressive (true/false/1/0, JPEG only); one variant per preset named,
// each once, at most 8. Empty fields are absent.
OutputChoice ChooseOutputs(const OutputFields& fields, const Presets& presets);

// The image cache's key for a plan: an output is reused only for the same main settings and
// variants. "jpeg-q50" for the seed's plan, as before presets.
std::string CacheKey(const OutputPlan& plan);

// The Content-Type of a stored object by its name's extension (".webp", ".avif"; JPEG otherwise).
const char* ContentTypeOfName(std::string_view name);

// One variant of one done image: where it is stored and what it is.
struct VariantOutput {
  std::string name;
  std::string url;
  int64_t bytes = 0;
  int width = 0;
  int height = 0;
  bool operator==(const VariantOutput& other) const = default;
};
// The stored form of an image's variants: a line per variant, its fields separated by tabs (a
// URL has neither); "" for none. Decoding skips a line it cannot read.
std::string EncodeVariantOutputs(const std::vector<VariantOutput>& outputs);
std::vector<VariantOutput> DecodeVariantOutputs(std::string_view text);

// A product's list for one variant, as "Output Image Urls" is for the main output: per input
// entry, the variant's URL of that image (`by_index`: a done image's variants, by entry index),
// empty for an image without it (failed), and any other entry unchanged.
std::string ComposeVariantUrls(
    std::string_view input_urls, std::string_view variant,
    const std::vector<std::pair<int, std::vector<VariantOutput>>>& by_index);

// Why `settings` cannot be used (a preset from PRESETS, in ChooseOutputs' words), or nothing.
std::optional<std::string> CheckSettings(const OutputSettings& settings);

}  // namespace imgproc::request

#endif  // IMGPROC_REQUEST_OUTPUTS_H_
