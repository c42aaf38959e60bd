#include "config/config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "net/address.h"
#include "report/report.h"
#include "request/outputs.h"

namespace imgproc::config {
namespace {

using std::chrono::milliseconds;

// Room for the multipart framing and the webhook_url field around the largest CSV in an upload's
// HTTP body; a larger CSV part inside a body that fits still gets the API's own 413.
constexpr uint64_t kUploadFramingBytes = 64 * 1024;

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * kKiB;
constexpr int64_t kGiB = 1024 * kMiB;
constexpr int64_t kMinute = 60'000;  // milliseconds
constexpr int64_t kHour = 60 * kMinute;

// How a setting takes its value on the command line.
enum class Shape {
  kValue,   // --flag VALUE
  kList,    // --flag A,B (or the flag repeated)
  kSwitch,  // --flag alone means true; --flag=false
};

// One setting: its names, and how it reads, checks and shows the field it is bound to.
struct Setting {
  std::string env;
  std::string flag;
  std::string help;
  Shape shape = Shape::kValue;
  std::string type;  // what --help shows after the flag: INT, UINT, TEXT, BOOLEAN
  // Sets the field from the given text (a list: its items). InvalidArgument when the text is not
  // a value of the setting; the field is then left as it was.
  std::function<Status(Config&, const std::vector<std::string>&)> read;
  // InvalidArgument when the field's value, given or default, is not one the setting accepts.
  std::function<Status(const Config&)> check;
  // The field's value as the text that means it, for --help; "" shows no default.
  std::function<std::string(const Config&)> show;
};

std::string Name(const std::string& env, const std::string& flag) {
  return env + " (" + flag + ")";
}

Setting Named(std::string env, std::string flag, std::string help, Shape shape, std::string type) {
  Setting s;
  s.env = std::move(env);
  s.flag = std::move(flag);
  s.help = std::move(help);
  s.shape = shape;
  s.type = std::move(type);
  return s;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

std::string Join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// The last value given (a setting given twice on the command line is refused by CLI11 already).
std::string Value(const std::vector<std::string>& values) {
  return values.empty() ? std::string() : values.back();
}

// A connection URL with what stands between "://" and "@" (user and password) hidden: errors
// are logged.
std::string Redacted(std::string_view url) {
  const size_t scheme = url.find("://");
  const size_t at = url.rfind('@');
  if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme) {
    return std::string(url);
  }
  return std::string(url.substr(0, scheme + 3)) + "***" + std::string(url.substr(at));
}

// ---- Numbers ------------------------------------------------------------------------------------

template <typename T>
constexpr bool kIsDuration = false;
template <typename Rep, typename Period>
constexpr bool kIsDuration<std::chrono::duration<Rep, Period>> = true;

// A field's value as a number (a duration in milliseconds), saturated to int64_t.
template <typename T>
int64_t AsNumber(const T& value) {
  if constexpr (kIsDuration<T>) {
    return std::chrono::duration_cast<milliseconds>(value).count();
  } else if constexpr (std::is_unsigned_v<T>) {
    constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    return static_cast<uint64_t>(value) > kMax ? std::numeric_limits<int64_t>::max()
                                               : static_cast<int64_t>(value);
  } else {
    return static_cast<int64_t>(value);
  }
}

template <typename T>
std::string ShowNumber(const T& value) {
  if constexpr (kIsDuration<T>) {
    return std::to_string(AsNumber(value));
  } else {
    return std::to_string(value);
  }
}

template <typename T>
void SetNumber(T& field, int64_t value) {
  if constexpr (kIsDuration<T>) {
    field = std::chrono::duration_cast<T>(milliseconds(value));
  } else {
    field = static_cast<T>(value);
  }
}

// A whole decimal number, surrounding spaces allowed; nullopt for anything else, or one that
// does not fit in 64 bits.
std::optional<int64_t> ParseInteger(std::string_view text) {
  text = Trim(text);
  if (text.size() > 1 && text.front() == '+' && std::isdigit(static_cast<unsigned char>(text[1]))) {
    text.remove_prefix(1);
  }
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || stop != end) return std::nullopt;
  return value;
}

// A whole number from `min` to `max`, bound to the field `field(config)` returns (milliseconds
// for a duration). A value is range-checked before it is stored, so it never wraps around.
template <typename Field>
Setting Number(std::string env, std::string flag, Field field, int64_t min, int64_t max,
               std::string help) {
  using T = std::remove_cvref_t<decltype(field(std::declval<Config&>()))>;
  const std::string name = Name(env, flag);
  const std::string range =
      "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
  Setting s = Named(std::move(env), std::move(flag),
                    std::move(help) + " [" + std::to_string(min) + ".." + std::to_string(max) + "]",
                    Shape::kValue, std::is_unsigned_v<T> ? "UINT" : "INT");
  s.read = [=](Config& c, const std::vector<std::string>& values) -> Status {
    const std::string text = Value(values);
    const std::optional<int64_t> value = ParseInteger(text);
    if (!value || *value < min || *value > max) {
      return InvalidArgument(name + " " + range + " (got '" + text + "')");
    }
    SetNumber(field(c), *value);
    return Status::Ok();
  };
  s.check = [=](const Config& c) -> Status {
    const auto& value = field(c);
    if (AsNumber(value) < min || AsNumber(value) > max) {
      return InvalidArgument(name + " " + range + " (got " + ShowNumber(value) + ")");
    }
    return Status::Ok();
  };
  s.show = [=](const Config& c) { return ShowNumber(field(c)); };
  return s;
}

// ---- Booleans, texts, lists ---------------------------------------------------------------------

std::optional<bool> ParseBoolean(std::string_view text) {
  const std::string word = Lower(Trim(text));
  if (word == "true" || word == "1" || word == "yes" || word == "on") return true;
  if (word == "false" || word == "0" || word == "no" || word == "off") return false;
  return std::nullopt;
}

template <typename Field>
Setting Boolean(std::string env, std::string flag, Field field, Shape shape, std::string help) {
  const std::string name = Name(env, flag);
  Setting s = Named(std::move(env), std::move(flag), std::move(help), shape,
                    shape == Shape::kSwitch ? "" : "BOOLEAN");
  s.read = [=](Config& c, const std::vector<std::string>& values) -> Status {
    const std::string text = Value(values);
    const std::optional<bool> value = ParseBoolean(text);
    if (!value) {
      return InvalidArgument(name + " must be true or false (or 1/0, yes/no, on/off) (got '" +
                             text + "')");
    }
    field(c) = *value;
    return Status::Ok();
  };
  s.check = [](const Config&) { return Status::Ok(); };
  // A switch is off unless given, as its help says: no default to show.
  s.show = [=](const Config& c) -> std::string {
    if (shape == Shape::kSwitch) return "";
    return field(c) ? "true" : "false";
  };
  return s;
}

// What is wrong with a value of a text setting, or "" when nothing is.
using Problem = std::function<std::string(const std::string& value)>;

// Any text that `problem` finds nothing wrong with. `secret`: neither shown nor echoed.
template <typename Field>
Setting Text(std::string env, std::string flag, Field field, std::string help,
             const Problem& problem = nullptr, bool secret = false) {
  const std::string name = Name(env, flag);
  Setting s = Named(std::move(env), std::move(flag), std::move(help), Shape::kValue, "TEXT");
  s.read = [=](Config& c, const std::vector<std::string>& values) -> Status {
    field(c) = Value(values);
    return Status::Ok();
  };
  s.check = [=](const Config& c) -> Status {
    if (!problem) return Status::Ok();
    const std::string what = problem(field(c));
    return what.empty() ? Status::Ok() : InvalidArgument(name + " " + what);
  };
  s.show = [=](const Config& c) { return secret ? std::string() : std::string(field(c)); };
  return s;
}

Problem OneOf(std::vector<std::string> choices) {
  return [choices = std::move(choices)](const std::string& value) -> std::string {
    if (std::find(choices.begin(), choices.end(), value) != choices.end()) return "";
    return "must be one of " + Join(choices, ", ") + " (got '" + value + "')";
  };
}

std::string NotEmpty(const std::string& value) { return value.empty() ? "must not be empty" : ""; }

// An http:// or https:// URL with a host; `optional`: or empty.
Problem HttpUrl(bool optional) {
  return [optional](const std::string& value) -> std::string {
    if ((optional && value.empty()) || net::IsHttpUrl(value)) return "";
    return "must be an http:// or https:// URL with a host (got '" + Redacted(value) + "')";
  };
}

// A comma-separated list, split into its items: whitespace removed (as in " a , b"), empty items
// dropped, and lower-cased when `lower` (host names).
template <typename Field>
Setting List(std::string env, std::string flag, Field field, bool lower, std::string help,
             const Problem& item_problem = nullptr, bool secret = false) {
  const std::string name = Name(env, flag);
  Setting s = Named(std::move(env), std::move(flag), std::move(help), Shape::kList, "TEXT");
  s.read = [=](Config& c, const std::vector<std::string>& values) -> Status {
    std::vector<std::string> items;
    for (const std::string& value : values) {
      for (size_t start = 0; start <= value.size();) {
        const size_t comma = std::min(value.find(',', start), value.size());
        std::string item = value.substr(start, comma - start);
        start = comma + 1;
        std::erase_if(item, [](unsigned char ch) { return std::isspace(ch); });
        if (lower) item = Lower(item);
        if (!item.empty()) items.push_back(std::move(item));
      }
    }
    field(c) = std::move(items);
    return Status::Ok();
  };
  s.check = [=](const Config& c) -> Status {
    if (!item_problem) return Status::Ok();
    for (const std::string& item : field(c)) {
      if (std::string what = item_problem(item); !what.empty()) {
        return InvalidArgument(name + ": '" + item + "' " + what);  // NOLINT: once, to fail
      }
    }
    return Status::Ok();
  };
  s.show = [=](const Config& c) { return secret ? std::string() : Join(field(c), ","); };
  return s;
}

// An entry of the host allow and deny lists: a host name, "*." and a domain, or an IP address
// (net::NormalizeHost reads them). A URL, a port or a path would never match any host.
std::string HostProblem(const std::string& item) {
  const std::string_view kShape =
      "is not a host: write example.com, *.example.com or an IP address (no scheme, port or path)";
  if (net::IsIpLiteral(item)) return "";
  std::string_view name = item;
  if (name.starts_with("*.")) name.remove_prefix(2);
  if (name.empty() || name.front() == '.' ||
      name.find_first_of("*/:@?#[]\\") != std::string_view::npos) {
    return std::string(kShape);
  }
  return "";
}

// ---- Settings with their own syntax -------------------------------------------------------------

std::string DatabaseUrlProblem(const std::string& url) {
  if (url.empty()) return "";  // sqlite://$DATA_DIR/imgproc.db
  const bool sqlite = url.starts_with("sqlite://") && url.size() > 9;
  const bool postgres = (url.starts_with("postgresql://") && url.size() > 13) ||
                        (url.starts_with("postgres://") && url.size() > 11);
  if (sqlite || postgres) return "";
  return "must be sqlite://PATH or postgresql://USER:PASSWORD@HOST:PORT/DB (got '" + Redacted(url) +
         "')";
}

std::string RedisUrlProblem(const std::string& url) {
  if (url.empty()) return "";  // no broker: the store is the queue
  auto address = queue::ParseRedisUrl(url);
  if (address.ok()) return "";
  return "must be redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]: " + address.status().message();
}

std::string BindProblem(const std::string& bind) {
  if (!bind.empty() && std::none_of(bind.begin(), bind.end(), [](unsigned char ch) {
        return std::isspace(ch) || ch == '/' || ch == '[' || ch == ']' || ch == '@';
      })) {
    return "";
  }
  return "must be an IP address or host name to listen on, such as 127.0.0.1, 0.0.0.0 or :: "
         "(got '" +
         bind + "')";
}

// The region goes into the signature's scope and libcurl's "aws:amz:REGION:s3" (where a colon
// would shift the fields).
std::string RegionProblem(const std::string& region) {
  const bool ok = !region.empty() && region.size() <= 64 &&
                  std::all_of(region.begin(), region.end(), [](unsigned char ch) {
                    return std::islower(ch) || std::isdigit(ch) || ch == '-';
                  });
  return ok ? "" : "must be a region name such as us-east-1 (got '" + region + "')";
}

// S3's bucket naming rules (3 to 63 lower-case letters, digits, dots and hyphens, starting and
// ending with a letter or digit): a name outside them is refused by every S3 service.
std::string BucketProblem(const std::string& bucket) {
  if (bucket.empty()) return "";  // required with STORAGE=s3, checked in Finalize
  const auto edge = [](unsigned char ch) { return std::islower(ch) || std::isdigit(ch); };
  const bool ok = bucket.size() >= 3 && bucket.size() <= 63 && edge(bucket.front()) &&
                  edge(bucket.back()) &&
                  std::all_of(bucket.begin(), bucket.end(),
                              [&](unsigned char ch) { return edge(ch) || ch == '.' || ch == '-'; });
  return ok ? ""
            : "must be 3 to 63 lower-case letters, digits, dots and hyphens, beginning and "
              "ending with a letter or digit (got '" +
                  bucket + "')";
}

// Slashes around the prefix are dropped; an empty part or a control character would make keys
// that some S3 services refuse or that no URL spells back.
std::string PrefixProblem(const std::string& prefix) {
  std::string_view p = prefix;
  while (p.starts_with('/')) p.remove_prefix(1);
  while (p.ends_with('/')) p.remove_suffix(1);
  const bool control =
      std::any_of(p.begin(), p.end(), [](unsigned char ch) { return std::iscntrl(ch) != 0; });
  if (p.find("//") != std::string_view::npos || control) {
    return "must be key parts separated by single slashes, without control characters (got '" +
           prefix + "')";
  }
  return "";
}

// Empty (the bucket's default), or one of S3's canned ACLs.
std::string AclProblem(const std::string& acl) {
  if (acl.empty()) return "";
  return OneOf({"private", "public-read", "public-read-write", "authenticated-read",
                "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control"})(acl);
}

// A Standard Webhooks secret "whsec_<base64>" is base64-decoded before use: a typo in it would
// otherwise silently sign with the wrong key.
std::string WebhookSecretProblem(const std::string& secret) {
  if (!secret.starts_with("whsec_")) return "";
  const std::string_view b64 = std::string_view(secret).substr(6);
  const size_t data = b64.find_last_not_of('=') + 1;
  const bool ok =
      !b64.empty() && b64.size() % 4 == 0 && b64.size() - data <= 2 &&
      std::all_of(b64.begin(), b64.begin() + static_cast<ptrdiff_t>(data),
                  [](unsigned char ch) { return std::isalnum(ch) || ch == '+' || ch == '/'; });
  return ok ? "" : "starts with whsec_ but what follows is not base64 (Standard Webhooks secrets)";
}

constexpr size_t kMaxWebhookDelays = 100;
constexpr int64_t kMaxWebhookDelay = 7 * 24 * kHour;

// The schedule as ParseRetrySchedule reads it back, in the largest unit that divides each delay.
std::string ShowSchedule(const webhook::RetrySchedule& schedule) {
  std::vector<std::string> items;
  for (const milliseconds delay : schedule) {
    const int64_t ms = delay.count();
    if (ms == 0) {
      items.emplace_back("0s");
    } else if (ms % kHour == 0) {
      items.push_back(std::to_string(ms / kHour) + "h");
    } else if (ms % kMinute == 0) {
      items.push_back(std::to_string(ms / kMinute) + "m");
    } else if (ms % 1000 == 0) {
      items.push_back(std::to_string(ms / 1000) + "s");
    } else {
      items.push_back(std::to_string(ms) + "ms");
    }
  }
  return Join(items, ",");
}

Setting WebhookRetrySchedule() {
  const std::string env = "WEBHOOK_RETRY_SCHEDULE";
  const std::string flag = "--webhook-retry-schedule";
  const std::string name = Name(env, flag);
  const std::string shape = "must be a comma-separated list of at most " +
                            std::to_string(kMaxWebhookDelays) +
                            " delays, each a whole number followed by ms, s, m or h, at most 168h";
  Setting s = Named(env, flag,
                    "delays between webhook attempts (ms, s, m, h; at most 100 of at most 168h); "
                    "then it has failed",
                    Shape::kValue, "TEXT");
  s.read = [=](Config& c, const std::vector<std::string>& values) -> Status {
    std::string text = Value(values);
    std::erase_if(text, [](unsigned char ch) { return std::isspace(ch); });  // "5s, 5m"
    auto schedule = webhook::ParseRetrySchedule(text);
    if (!schedule.ok())
      return InvalidArgument(name + " " + shape + ": " + schedule.status().message());
    c.webhook.schedule = std::move(*schedule);
    return Status::Ok();
  };
  s.check = [=](const Config& c) -> Status {
    const auto& schedule = c.webhook.schedule;
    const bool ok = schedule.size() <= kMaxWebhookDelays &&
                    std::all_of(schedule.begin(), schedule.end(), [](milliseconds delay) {
                      return delay.count() >= 0 && delay.count() <= kMaxWebhookDelay;
                    });
    return ok ? Status::Ok()
              : InvalidArgument(name + " " + shape + " (got '" + ShowSchedule(schedule) + "')");
  };
  s.show = [](const Config& c) { return ShowSchedule(c.webhook.schedule); };
  return s;
}

// The presets an upload may name: a JSON object of name -> settings, each with the upload's own
// field names and rules (request::ChooseOutputs), e.g.
// {"thumb": {"format": "webp", "quality": 70, "max_width": 400, "max_height": 400}}.
Result<request::Presets> ParsePresets(const std::string& text) {
  const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return InvalidArgument("must be a JSON object of name: settings");
  request::Presets presets;
  for (const auto& [name, settings] : parsed.items()) {
    if (!request::IsPresetName(name)) {
      return InvalidArgument(
          "has a preset named '" + name +
          "': use 1 to 32 of a-z, 0-9, _ and -, starting with a letter or digit");
    }
    if (!settings.is_object()) return InvalidArgument("preset '" + name + "' must be an object");
    request::OutputFields fields;
    for (const auto& [key, value] : settings.items()) {
      std::optional<std::string>* field = key == "format"        ? &fields.format
                                          : key == "quality"     ? &fields.quality
                                          : key == "max_width"   ? &fields.max_width
                                          : key == "max_height"  ? &fields.max_height
                                          : key == "progressive" ? &fields.progressive
                                                                 : nullptr;
      if (field == nullptr) {
        std::string message = "preset '" + name + "' has an unknown field '";
        message += key;
        message += "' (format, quality, max_width, max_height, progressive)";
        return InvalidArgument(message);
      }
      // 0 is no bound, as the API shows it; an upload's field leaves it out instead.
      if (value.is_number_integer() && value.get<int64_t>() == 0 && key.rfind("max_", 0) == 0) {
        continue;
      }
      *field = value.is_string() ? value.get<std::string>() : value.dump();
    }
    const request::OutputChoice choice = request::ChooseOutputs(fields, {});
    if (!choice.plan) return InvalidArgument("preset '" + name + "': " + choice.error);
    presets[name] = choice.plan->main;
  }
  return presets;
}

Setting Presets() {
  const std::string env = "PRESETS";
  const std::string flag = "--preset-definitions";
  const std::string name = Name(env, flag);
  Setting s = Named(env, flag,
                    "the presets an upload may name (presets=thumb,large), as a JSON object of "
                    "name: {format, quality, max_width, max_height, progressive}; {} for none",
                    Shape::kValue, "TEXT");
  s.read = [=](Config& c, const std::vector<std::string>& values) -> Status {
    auto presets = ParsePresets(Value(values));
    if (!presets.ok()) return InvalidArgument(name + " " + presets.status().message());
    c.api.presets = std::move(*presets);
    return Status::Ok();
  };
  s.check = [](const Config&) { return Status::Ok(); };  // every value read is one
  s.show = [](const Config& c) { return report::PresetsObjectJson(c.api.presets); };
  return s;
}

// ---- The table ----------------------------------------------------------------------------------

// The field a setting is bound to, for a const or a mutable Config.
#define IMGPROC_FIELD(member) ([](auto& c) -> auto& { return c.member; })

// Every setting, in the order of README.md's table and --help.
const std::vector<Setting>& Settings() {
  static const std::vector<Setting> settings = [] {
    std::vector<Setting> s;
    s.push_back(Number("PORT", "--port", IMGPROC_FIELD(server.port), 0, 65535,
                       "HTTP port (0: any free port)"));
    s.push_back(
        Text("BIND", "--bind", IMGPROC_FIELD(server.bind), "address to listen on", BindProblem));
    s.push_back(Text("DATA_DIR", "--data-dir", IMGPROC_FIELD(data_dir),
                     "folder for the SQLite database and local media", NotEmpty));
    s.push_back(Text("DATABASE_URL", "--database-url", IMGPROC_FIELD(database_url),
                     "store: sqlite://PATH (default sqlite://$DATA_DIR/imgproc.db) or "
                     "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by API and worker processes)",
                     DatabaseUrlProblem, /*secret=*/true));
    s.push_back(Text("REDIS_URL", "--redis-url", IMGPROC_FIELD(queue.url),
                     "optional broker, redis://[:PASSWORD@]HOST:PORT/N (without it, the store is "
                     "the queue)",
                     RedisUrlProblem, /*secret=*/true));
    s.push_back(Text("STORAGE", "--storage", IMGPROC_FIELD(storage.kind),
                     "where compressed images go: local | imgbb | s3",
                     OneOf({"local", "imgbb", "s3"})));
    s.push_back(Text("IMGBB_API_KEY", "--imgbb-api-key", IMGPROC_FIELD(storage.imgbb_api_key),
                     "ImgBB API key (STORAGE=imgbb)", nullptr, /*secret=*/true));
    s.push_back(Text("IMGBB_UPLOAD_URL", "--imgbb-upload-url",
                     IMGPROC_FIELD(storage.imgbb_upload_url), "ImgBB upload endpoint",
                     HttpUrl(/*optional=*/false)));
    s.push_back(Text("S3_ENDPOINT", "--s3-endpoint", IMGPROC_FIELD(storage.s3.endpoint),
                     "S3-compatible endpoint (default https://s3.$S3_REGION.amazonaws.com)",
                     HttpUrl(/*optional=*/true)));
    s.push_back(Text("S3_REGION", "--s3-region", IMGPROC_FIELD(storage.s3.region),
                     "region the requests are signed for", RegionProblem));
    s.push_back(Text("S3_BUCKET", "--s3-bucket", IMGPROC_FIELD(storage.s3.bucket),
                     "bucket of the images (required with STORAGE=s3)", BucketProblem));
    s.push_back(Text("S3_PREFIX", "--s3-prefix", IMGPROC_FIELD(storage.s3.prefix),
                     "first part of every object key", PrefixProblem));
    s.push_back(Boolean("S3_FORCE_PATH_STYLE", "--s3-force-path-style",
                        IMGPROC_FIELD(storage.s3.force_path_style), Shape::kValue,
                        "address the bucket as ENDPOINT/BUCKET/KEY instead of BUCKET.HOST/KEY "
                        "(true | false)"));
    s.push_back(Text("S3_PUBLIC_BASE_URL", "--s3-public-base-url",
                     IMGPROC_FIELD(storage.s3.public_base_url),
                     "output URLs are this + / + key (a CDN, a public bucket); without it, "
                     "presigned GET URLs",
                     HttpUrl(/*optional=*/true)));
    s.push_back(Number("S3_PRESIGN_SECONDS", "--s3-presign-seconds",
                       IMGPROC_FIELD(storage.s3.presign_seconds), 1, 604800,
                       "lifetime of presigned output URLs (without S3_PUBLIC_BASE_URL)"));
    s.push_back(Text("S3_CACHE_CONTROL", "--s3-cache-control",
                     IMGPROC_FIELD(storage.s3.cache_control),
                     "Cache-Control of every stored object (empty: none)"));
    s.push_back(Text("S3_ACL", "--s3-acl", IMGPROC_FIELD(storage.s3.acl),
                     "canned ACL of every stored object (x-amz-acl; empty: the bucket's default)",
                     AclProblem));
    s.push_back(Text("AWS_ACCESS_KEY_ID", "--aws-access-key-id",
                     IMGPROC_FIELD(storage.s3.access_key_id),
                     "S3 access key (required with STORAGE=s3)", nullptr, /*secret=*/true));
    s.push_back(Text("AWS_SECRET_ACCESS_KEY", "--aws-secret-access-key",
                     IMGPROC_FIELD(storage.s3.secret_access_key),
                     "S3 secret key (required with STORAGE=s3)", nullptr, /*secret=*/true));
    s.push_back(Text("AWS_SESSION_TOKEN", "--aws-session-token",
                     IMGPROC_FIELD(storage.s3.session_token),
                     "session token of temporary S3 credentials", nullptr, /*secret=*/true));
    s.push_back(Text("PUBLIC_BASE_URL", "--public-base-url", IMGPROC_FIELD(storage.public_base_url),
                     "prefix of local media URLs (default http://$BIND:$PORT)",
                     HttpUrl(/*optional=*/true)));
    s.push_back(Boolean("ALLOW_PRIVATE_URLS", "--allow-private-urls",
                        IMGPROC_FIELD(pipeline.fetch.allow_private), Shape::kSwitch,
                        "allow image and webhook URLs that resolve to loopback, private, "
                        "link-local or other non-public addresses (off by default: SSRF "
                        "protection)"));
    s.push_back(List("FETCH_ALLOW_HOSTS", "--fetch-allow-hosts",
                     IMGPROC_FIELD(pipeline.fetch.allow_hosts), /*lower=*/true,
                     "only download images from these hosts (comma-separated; *.example.com "
                     "matches subdomains)",
                     HostProblem));
    s.push_back(List("FETCH_DENY_HOSTS", "--fetch-deny-hosts",
                     IMGPROC_FIELD(pipeline.fetch.deny_hosts), /*lower=*/true,
                     "never download images from these hosts (wins over the allow list)",
                     HostProblem));
    s.push_back(List("API_KEYS", "--api-keys", IMGPROC_FIELD(api_keys), /*lower=*/false,
                     "require Authorization: Bearer <key> for the API and media (comma-separated)",
                     nullptr, /*secret=*/true));
    s.push_back(Text("API_KEYS_FILE", "--api-keys-file", IMGPROC_FIELD(api_keys_file),
                     "file of API keys, one per line ('#' comments), added to API_KEYS"));
    s.push_back(Text("WEBHOOK_SECRET", "--webhook-secret", IMGPROC_FIELD(webhook.secret),
                     "sign webhooks with this secret (Standard Webhooks headers)",
                     WebhookSecretProblem, /*secret=*/true));

    s.push_back(Number("WORKERS", "--workers", IMGPROC_FIELD(pipeline.workers), 1, 4096,
                       "images in flight at once (download/upload)"));
    s.push_back(Number("CPU_THREADS", "--cpu-threads", IMGPROC_FIELD(pipeline.cpu_threads), 0, 1024,
                       "images compressed at once (0 = cores)"));
    s.push_back(Number("PIXEL_BUDGET", "--pixel-budget", IMGPROC_FIELD(pipeline.pixel_budget), 1,
                       1'000'000'000'000,
                       "pixels of the images between download and the end of compression (bounds "
                       "memory)"));
    s.push_back(Number("DOWNLOAD_BUDGET_BYTES", "--download-budget-bytes",
                       IMGPROC_FIELD(pipeline.download_budget_bytes), kMiB, 1024 * kGiB,
                       "bytes of download bodies in memory at once (the oldest download may "
                       "exceed it by one)"));
    s.push_back(Number("HTTP_THREADS", "--http-threads", IMGPROC_FIELD(server.threads), 1, 4096,
                       "threads serving HTTP connections, ready from the start"));
    s.push_back(Number("MAX_CONNECTIONS", "--max-connections",
                       IMGPROC_FIELD(server.max_connections), 1, 65536,
                       "HTTP connections served at once (a slow client holds one), at least "
                       "HTTP_THREADS; threads are added on demand"));
    s.push_back(Number("MAX_CONNECTIONS_PER_CLIENT", "--max-connections-per-client",
                       IMGPROC_FIELD(server.max_connections_per_client), 0, 65536,
                       "HTTP connections one client address may hold at once (503 above; 0 = no "
                       "limit)"));
    s.push_back(Number("MAX_HEADER_BYTES", "--max-header-bytes",
                       IMGPROC_FIELD(server.limits.max_header_bytes), kKiB, kMiB,
                       "largest HTTP request line + headers (431 above)"));
    s.push_back(Number("HEADER_TIMEOUT_MS", "--header-timeout-ms",
                       IMGPROC_FIELD(server.limits.header_timeout), 100, 10 * kMinute,
                       "time a client has to send its request line and headers (408 after)"));
    s.push_back(Number("BODY_TIMEOUT_MS", "--body-timeout-ms",
                       IMGPROC_FIELD(server.limits.body_timeout), 100, kHour,
                       "time a client has to send a request body (408 after), extended by "
                       "BODY_MIN_RATE"));
    s.push_back(Number("BODY_MIN_RATE", "--body-min-rate",
                       IMGPROC_FIELD(server.limits.body_min_rate), 1, kGiB,
                       "bytes per second of a request body that extend BODY_TIMEOUT_MS by a "
                       "second each"));
    s.push_back(Number("MAX_CSV_BYTES", "--max-csv-bytes", IMGPROC_FIELD(api.csv_limits.max_bytes),
                       kKiB, kGiB, "largest accepted CSV file"));
    s.push_back(Number("MAX_ROWS", "--max-rows", IMGPROC_FIELD(api.csv_limits.max_rows), 1,
                       10'000'000, "most data rows in a CSV"));
    s.push_back(Number("MAX_URLS_PER_ROW", "--max-urls-per-row",
                       IMGPROC_FIELD(api.csv_limits.max_urls_per_row), 1, 10'000,
                       "most URL entries per row"));
    s.push_back(Number("MAX_QUEUED_IMAGES_PER_CLIENT", "--max-queued-images-per-client",
                       IMGPROC_FIELD(api.max_client_images), 0, 1'000'000'000,
                       "unfinished images one client (API key, or address without keys) may "
                       "have queued; an upload past it gets a 429 (0 = no limit)"));
    // Downloads refuse URLs longer than 8192 characters (net::IsHttpUrl) anyway.
    s.push_back(Number("MAX_URL_LENGTH", "--max-url-length",
                       IMGPROC_FIELD(api.csv_limits.max_url_length), 10, 8192,
                       "longest URL entry"));
    s.push_back(Number("MAX_DOWNLOAD_BYTES", "--max-download-bytes",
                       IMGPROC_FIELD(pipeline.fetch.max_body_bytes), kKiB, 4 * kGiB,
                       "largest image download (aborted mid-stream)"));
    s.push_back(Number("MAX_IMAGE_PIXELS", "--max-image-pixels",
                       IMGPROC_FIELD(pipeline.codec.max_pixels), 1, 1'000'000'000'000,
                       "largest decoded image, width x height"));
    s.push_back(Number("MAX_ANIMATION_FRAMES", "--max-animation-frames",
                       IMGPROC_FIELD(pipeline.codec.max_frames), 1, 100'000,
                       "most frames in an animated image (only the first is used)"));
    s.push_back(Boolean("JPEG_FAST_PATH", "--jpeg-fast-path",
                        IMGPROC_FIELD(pipeline.codec.jpeg_fast_path), Shape::kValue,
                        "re-quantise 4:2:0 JPEGs that need no pixel work in the DCT domain (true "
                        "| false)"));
    s.push_back(Number("FETCH_CONNECT_TIMEOUT_MS", "--fetch-connect-timeout-ms",
                       IMGPROC_FIELD(pipeline.fetch.connect_timeout), 100, kHour,
                       "image download connect timeout"));
    s.push_back(Number("FETCH_TIMEOUT_MS", "--fetch-timeout-ms",
                       IMGPROC_FIELD(pipeline.fetch.total_timeout), 100, kHour,
                       "image download total timeout"));
    s.push_back(Number("MAX_REDIRECTS", "--max-redirects",
                       IMGPROC_FIELD(pipeline.fetch.max_redirects), 0, 20,
                       "redirects followed per download"));
    s.push_back(Number("MAX_ATTEMPTS", "--max-attempts", IMGPROC_FIELD(pipeline.max_attempts), 1,
                       100, "attempts per image before a transient failure becomes an error"));
    // The worker draws a delay from [base, 1.5 base]: a negative base would reverse the bounds.
    s.push_back(Number("RETRY_BASE_MS", "--retry-base-ms", IMGPROC_FIELD(pipeline.retry_base), 0,
                       kHour, "first retry delay (doubles per attempt, with jitter)"));
    s.push_back(WebhookRetrySchedule());
    s.push_back(Number("LEASE_MS", "--lease-ms", IMGPROC_FIELD(pipeline.lease), 100, 24 * kHour,
                       "an image whose worker stops answering for this long is taken over by "
                       "another"));
    s.push_back(Number("QUEUE_SWEEP_MS", "--queue-sweep-ms", IMGPROC_FIELD(queue.sweep), 10, kHour,
                       "how often the store is checked for due work (images to hand to Redis, or "
                       "polled)"));
    s.push_back(Boolean("IMAGE_CACHE", "--image-cache", IMGPROC_FIELD(image_cache), Shape::kValue,
                        "reuse outputs across requests: conditional re-downloads, one stored "
                        "object per content (true | false)"));
    s.push_back(
        Number("IMAGE_CACHE_MAX_AGE_HOURS", "--image-cache-max-age-hours",
               IMGPROC_FIELD(pipeline.cache_max_age_hours), 0, 10 * 365 * 24,
               "outputs of the image cache older than this are made anew (0: never reuse)"));
    s.push_back(Presets());
    s.push_back(Number("SHUTDOWN_GRACE_MS", "--shutdown-grace-ms",
                       IMGPROC_FIELD(pipeline.shutdown_grace), 0, kHour,
                       "on SIGTERM, how long images in flight may finish before they are handed "
                       "back"));
    // spdlog's names, with its aliases warning and err.
    s.push_back(Text(
        "LOG_LEVEL", "--log-level", IMGPROC_FIELD(log_level),
        "trace | debug | info | warn | error | critical | off",
        OneOf({"trace", "debug", "info", "warn", "error", "critical", "off", "warning", "err"})));
    s.push_back(Text("LOG_FORMAT", "--log-format", IMGPROC_FIELD(log_format),
                     "text | json (JSON lines; a line about one request carries its request_id)",
                     OneOf({"text", "json"})));
    return s;
  }();
  return settings;
}

#undef IMGPROC_FIELD

// Adds the keys of API_KEYS_FILE to `keys`: one per line, '#' starts a comment, spaces ignored.
Status ReadKeysFile(const std::string& path, std::vector<std::string>& keys) {
  std::ifstream in(path);
  if (!in) return InvalidArgument("API_KEYS_FILE (--api-keys-file): cannot read " + path);
  for (std::string line; std::getline(in, line);) {
    std::string key = line.substr(0, line.find('#'));
    std::erase_if(key, [](unsigned char ch) { return std::isspace(ch); });
    if (!key.empty()) keys.push_back(std::move(key));
  }
  return Status::Ok();
}

// "http://HOST:PORT" for listening on `bind` (an IPv6 address in brackets).
std::string ListenUrl(const std::string& bind, int port) {
  const bool v6 = bind.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + bind + "]" : bind) + ":" + std::to_string(port);
}

// The values that follow from others: each is derived here and nowhere else.
void Derive(Config& c) {
  if (c.database_url.empty()) c.database_url = "sqlite://" + c.data_dir + "/imgproc.db";
  if (c.storage.public_base_url.empty()) {
    c.storage.public_base_url = ListenUrl(c.server.bind, c.server.port);
  }
  c.storage.media_dir = (std::filesystem::path(c.data_dir) / "media").string();
  if (c.pipeline.cpu_threads == 0) {
    c.pipeline.cpu_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  c.server.limits.max_body_bytes = c.api.csv_limits.max_bytes + kUploadFramingBytes;
  // One lease and one SSRF policy, whichever module applies them.
  c.queue.lease = c.pipeline.lease;
  c.webhook.fetch.allow_private = c.pipeline.fetch.allow_private;
  c.api.api_key_digests.clear();
  for (const auto& key : c.api_keys) c.api.api_key_digests.insert(api::KeyDigest(key));
}

}  // namespace

void AddFlags(CLI::App& app, Config& config) {
  for (const Setting& s : Settings()) {
    CLI::Option* option = nullptr;
    const std::string env = s.env;
    switch (s.shape) {
      case Shape::kValue:
        option = app.add_option_function<std::string>(
            s.flag, [&config, env](const std::string& value) { config.given[env] = {value}; },
            s.help);
        break;
      case Shape::kList:
        option = app.add_option_function<std::vector<std::string>>(
                        s.flag,
                        [&config, env](const std::vector<std::string>& values) {
                          config.given[env] = values;
                        },
                        s.help)
                     ->delimiter(',');
        break;
      case Shape::kSwitch:
        // `each` sees the text: "true" for the bare flag, the variable's value from the
        // environment, "false" from --flag=false.
        option = app.add_flag(s.flag, s.help)->each([&config, env](const std::string& value) {
          config.given[env] = {value};
        });
        break;
    }
    option->envname(s.env)->group("Settings");
    if (!s.type.empty()) option->type_name(s.type);
    if (const std::string shown = s.show(config); !shown.empty()) option->default_str(shown);
  }
}

Status Finalize(Config& c) {
  std::vector<std::string> problems;
  const auto note = [&problems](const Status& s) {
    if (!s.ok()) problems.push_back(s.message());
  };
  for (const Setting& s : Settings()) {
    if (auto given = c.given.find(s.env); given != c.given.end()) note(s.read(c, given->second));
  }
  for (const Setting& s : Settings()) note(s.check(c));
  if (!c.api_keys_file.empty()) note(ReadKeysFile(c.api_keys_file, c.api_keys));
  if (!problems.empty()) return InvalidArgument(Join(problems, "; "));

  Derive(c);
  if (c.server.max_connections < c.server.threads) {
    problems.push_back("MAX_CONNECTIONS (--max-connections) must be at least HTTP_THREADS (" +
                       std::to_string(c.server.threads) + ") (got " +
                       std::to_string(c.server.max_connections) + ")");
  }
  if (c.storage.kind == "imgbb" && c.storage.imgbb_api_key.empty()) {
    problems.emplace_back("IMGBB_API_KEY (--imgbb-api-key) is required with STORAGE=imgbb");
  }
  if (c.storage.kind == "s3") {
    if (c.storage.s3.bucket.empty()) {
      problems.emplace_back("S3_BUCKET (--s3-bucket) is required with STORAGE=s3");
    }
    if (c.storage.s3.access_key_id.empty() || c.storage.s3.secret_access_key.empty()) {
      problems.emplace_back(
          "AWS_ACCESS_KEY_ID (--aws-access-key-id) and AWS_SECRET_ACCESS_KEY "
          "(--aws-secret-access-key) are required with STORAGE=s3");
    }
  }
  if (!problems.empty()) return InvalidArgument(Join(problems, "; "));
  return Status::Ok();
}

}  // namespace imgproc::config
