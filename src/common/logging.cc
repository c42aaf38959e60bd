#include "common/logging.h"

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace imgproc::logging {
namespace {

thread_local std::string current_request_id;

// Formats every record as one JSON line. spdlog 1.10 (Debian 12) has no JSON formatter and no
// per-thread context of its own, hence this small one.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    const auto level = spdlog::level::to_string_view(msg.level);
    const std::string line =
        JsonLine(millis, std::string(level.data(), level.size()),
                 std::string(msg.payload.data(), msg.payload.size()), current_request_id);
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::string JsonLine(int64_t unix_millis, const std::string& level, const std::string& message,
                     const std::string& request_id) {
  const std::time_t seconds = static_cast<std::time_t>(unix_millis / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char ts[40];
  const size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(ts + n, sizeof ts - n, ".%03dZ", static_cast<int>(unix_millis % 1000));
  nlohmann::ordered_json j = {{"ts", ts}, {"level", level}, {"msg", message}};
  if (!request_id.empty()) j["request_id"] = request_id;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Status Configure(const std::string& level, const std::string& format) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    return InvalidArgument("LOG_LEVEL must be trace, debug, info, warn, error, critical or off");
  }
  if (format != "text" && format != "json") {
    return InvalidArgument("LOG_FORMAT must be 'text' or 'json'");
  }
  spdlog::set_level(parsed);
  if (format == "json") spdlog::set_formatter(std::make_unique<JsonFormatter>());
  return Status::Ok();
}

ScopedRequestId::ScopedRequestId(std::string request_id)
    : previous_(std::exchange(current_request_id, std::move(request_id))) {}

ScopedRequestId::~ScopedRequestId() { current_request_id = std::move(previous_); }

const std::string& CurrentRequestId() { return current_request_id; }

}  // namespace imgproc::logging
