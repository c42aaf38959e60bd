// The configuration: each setting bound to its module's option field with the module's default,
// every bad value refused with an error naming the setting and what it accepts, the derived
// values derived, and a flag winning over the environment.
#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

namespace imgproc::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// flag -> environment variable of every setting, as AddFlags adds them.
std::map<std::string, std::string> Flags() {
  CLI::App app;
  Config config;
  AddFlags(app, config);
  std::map<std::string, std::string> flags;
  for (const CLI::Option* option : app.get_options()) {
    if (!option->get_envname().empty()) flags[option->get_name()] = option->get_envname();
  }
  return flags;
}

std::string FlagOf(const std::string& env) {
  for (const auto& [flag, name] : Flags()) {
    if (name == env) return flag;
  }
  ADD_FAILURE() << "no setting " << env;
  return "";
}

// Every setting's value as --help would show it for `config` (flag -> text): what a Config
// holds, setting by setting, without restating the fields here.
std::map<std::string, std::string> Shown(const Config& config) {
  Config copy = config;
  CLI::App app;
  AddFlags(app, copy);
  std::map<std::string, std::string> shown;
  for (const CLI::Option* option : app.get_options()) {
    if (!option->get_envname().empty()) shown[option->get_name()] = option->get_default_str();
  }
  return shown;
}

class ConfigTest : public ::testing::Test {
 protected:
  // Whatever the environment the tests run in, only what a test sets is there.
  void SetUp() override { ClearEnvironment(); }
  void TearDown() override { ClearEnvironment(); }

  static void ClearEnvironment() {
    for (const auto& [flag, env] : Flags()) unsetenv(env.c_str());
  }

  // What `imgproc serve ARGS` reads with the current environment, once Finalize has run.
  static Result<Config> Load(const std::vector<std::string>& args = {}) {
    CLI::App app("imgproc serve");
    Config config;
    AddFlags(app, config);
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them so
    try {
      app.parse(reversed);
    } catch (const CLI::ParseError& e) {
      return InvalidArgument(std::string("command line: ") + e.what());
    }
    if (Status s = Finalize(config); !s.ok()) return s;
    return config;
  }

  // Load with `env`'s variables set (and cleared afterwards).
  static Result<Config> LoadEnv(const std::map<std::string, std::string>& env,
                                const std::vector<std::string>& args = {}) {
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    Result<Config> config = Load(args);
    for (const auto& [name, value] : env) unsetenv(name.c_str());
    return config;
  }
};

TEST_F(ConfigTest, TheDefaultsAreTheModulesOwn) {
  const Result<Config> c = Load();
  ASSERT_TRUE(c.ok()) << c.status().message();
  const api::ServerOptions server;
  EXPECT_EQ(c->server.port, server.port);
  EXPECT_EQ(c->server.bind, server.bind);
  EXPECT_EQ(c->server.threads, server.threads);
  EXPECT_EQ(c->server.max_connections, server.max_connections);
  EXPECT_EQ(c->server.max_connections_per_client, server.max_connections_per_client);
  EXPECT_EQ(c->server.limits.max_header_bytes, server.limits.max_header_bytes);
  EXPECT_EQ(c->server.limits.header_timeout, server.limits.header_timeout);
  EXPECT_EQ(c->server.limits.body_timeout, server.limits.body_timeout);
  EXPECT_EQ(c->server.limits.body_min_rate, server.limits.body_min_rate);
  const api::ApiOptions api;
  EXPECT_EQ(c->api.csv_limits.max_bytes, csv::Limits{}.max_bytes);
  EXPECT_EQ(c->api.csv_limits.max_bytes, api.csv_limits.max_bytes);
  EXPECT_EQ(c->api.csv_limits.max_rows, api.csv_limits.max_rows);
  EXPECT_EQ(c->api.csv_limits.max_urls_per_row, api.csv_limits.max_urls_per_row);
  EXPECT_EQ(c->api.csv_limits.max_url_length, api.csv_limits.max_url_length);
  EXPECT_EQ(c->api.max_client_images, api.max_client_images);
  EXPECT_TRUE(c->api.api_key_digests.empty());
  const pipeline::PipelineOptions pipe;
  EXPECT_EQ(c->pipeline.workers, pipe.workers);
  EXPECT_EQ(c->pipeline.pixel_budget, pipe.pixel_budget);
  EXPECT_EQ(c->pipeline.download_budget_bytes, pipe.download_budget_bytes);
  EXPECT_EQ(c->pipeline.max_attempts, pipe.max_attempts);
  EXPECT_EQ(c->pipeline.retry_base, pipe.retry_base);
  EXPECT_EQ(c->pipeline.lease, pipe.lease);
  EXPECT_EQ(c->pipeline.shutdown_grace, pipe.shutdown_grace);
  const net::FetchOptions fetch;
  EXPECT_EQ(c->pipeline.fetch.allow_private, fetch.allow_private);
  EXPECT_EQ(c->pipeline.fetch.connect_timeout, fetch.connect_timeout);
  EXPECT_EQ(c->pipeline.fetch.total_timeout, fetch.total_timeout);
  EXPECT_EQ(c->pipeline.fetch.max_redirects, fetch.max_redirects);
  EXPECT_EQ(c->pipeline.fetch.max_body_bytes, fetch.max_body_bytes);
  EXPECT_EQ(c->pipeline.fetch.allow_hosts, fetch.allow_hosts);
  EXPECT_EQ(c->pipeline.fetch.deny_hosts, fetch.deny_hosts);
  const pipeline::CodecLimits codec;
  EXPECT_EQ(c->pipeline.codec.max_pixels, codec.max_pixels);
  EXPECT_EQ(c->pipeline.codec.max_frames, codec.max_frames);
  EXPECT_EQ(c->pipeline.codec.jpeg_fast_path, codec.jpeg_fast_path);
  const storage::StorageConfig storage;
  EXPECT_EQ(c->storage.kind, storage.kind);
  EXPECT_EQ(c->storage.imgbb_api_key, storage.imgbb_api_key);
  EXPECT_EQ(c->storage.imgbb_upload_url, storage.imgbb_upload_url);
  const webhook::SenderOptions hooks;
  EXPECT_EQ(c->webhook.secret, hooks.secret);
  EXPECT_EQ(c->webhook.schedule, hooks.schedule);
  EXPECT_FALSE(c->webhook.schedule.empty());
  // The webhook's own HTTP options, not the image downloads'.
  EXPECT_EQ(c->webhook.fetch.total_timeout, hooks.fetch.total_timeout);
  EXPECT_EQ(c->webhook.fetch.max_redirects, hooks.fetch.max_redirects);
  EXPECT_EQ(c->webhook.fetch.max_body_bytes, hooks.fetch.max_body_bytes);
  const queue::RedisQueueOptions redis;
  EXPECT_EQ(c->queue.url, redis.url);
  EXPECT_EQ(c->queue.sweep, redis.sweep);

  // The derived values, each from what it is derived from.
  EXPECT_EQ(c->database_url, "sqlite://" + c->data_dir + "/imgproc.db");
  EXPECT_EQ(c->storage.public_base_url,
            "http://" + c->server.bind + ":" + std::to_string(c->server.port));
  EXPECT_EQ(c->storage.media_dir, (std::filesystem::path(c->data_dir) / "media").string());
  EXPECT_EQ(pipe.cpu_threads, 0);  // 0: one per core
  EXPECT_EQ(c->pipeline.cpu_threads,
            static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_EQ(c->server.limits.max_body_bytes, c->api.csv_limits.max_bytes + 64 * 1024);
  EXPECT_EQ(c->queue.lease, c->pipeline.lease);
  EXPECT_EQ(c->webhook.fetch.allow_private, c->pipeline.fetch.allow_private);
}

// What --help shows as each default is the module's value: given back as the setting's text, in
// a flag or in the environment, it yields the very same configuration.
TEST_F(ConfigTest, EveryShownDefaultReadsBackAsTheSameConfiguration) {
  const Result<Config> defaults = Load();
  ASSERT_TRUE(defaults.ok()) << defaults.status().message();
  const auto expected = Shown(*defaults);
  const auto shown = Shown(Config{});
  EXPECT_EQ(shown.at("--port"), std::to_string(api::ServerOptions{}.port));
  EXPECT_EQ(shown.at("--retry-base-ms"),
            std::to_string(pipeline::PipelineOptions{}.retry_base.count()));
  EXPECT_EQ(shown.at("--max-rows"), std::to_string(csv::Limits{}.max_rows));
  EXPECT_EQ(shown.at("--jpeg-fast-path"),
            pipeline::CodecLimits{}.jpeg_fast_path ? "true" : "false");
  int checked = 0;
  for (const auto& [flag, text] : shown) {
    if (text.empty()) continue;
    const std::string env = Flags().at(flag);
    const Result<Config> by_flag = Load({flag + "=" + text});
    ASSERT_TRUE(by_flag.ok()) << flag << "=" << text << ": " << by_flag.status().message();
    EXPECT_EQ(Shown(*by_flag), expected) << flag << "=" << text;
    const Result<Config> by_env = LoadEnv({{env, text}});
    ASSERT_TRUE(by_env.ok()) << env << "=" << text << ": " << by_env.status().message();
    EXPECT_EQ(Shown(*by_env), expected) << env << "=" << text;
    ++checked;
  }
  EXPECT_GT(checked, 30);
}

struct BadValue {
  const char* env;
  const char* value;
  const char* error;  // a fragment of the expected error
};

// Each setting's bad values. The first rows are the holes the old configuration let through:
// a negative RETRY_BASE_MS reversed the bounds of the retry jitter's distribution (undefined
// behaviour); negative CSV limits became huge unsigned ones; FETCH_TIMEOUT_MS <= 0 failed every
// download.
const BadValue kBadValues[] = {
    {"RETRY_BASE_MS", "-5", "must be an integer from 0 to 3600000 (got '-5')"},
    {"MAX_ROWS", "-1", "must be an integer from 1 to 10000000"},
    {"MAX_URLS_PER_ROW", "-1", "must be an integer from 1 to 10000"},
    {"MAX_URL_LENGTH", "-1", "must be an integer from 10 to 8192"},
    {"FETCH_TIMEOUT_MS", "0", "must be an integer from 100 to 3600000"},
    {"FETCH_TIMEOUT_MS", "-1", "must be an integer from 100"},
    {"MAX_CSV_BYTES", "-1", "must be an integer from 1024 to 1073741824"},
    {"MAX_DOWNLOAD_BYTES", "-1", "must be an integer from 1024"},

    {"PORT", "-1", "must be an integer from 0 to 65535"},
    {"PORT", "65536", "from 0 to 65535"},
    {"PORT", "http", "(got 'http')"},
    {"PORT", "80x", "(got '80x')"},
    {"PORT", "99999999999999999999999", "must be an integer"},
    {"BIND", "http://0.0.0.0", "must be an IP address or host name"},
    {"BIND", "a b", "must be an IP address or host name"},
    {"DATABASE_URL", "mysql://u:secret@h/db", "must be sqlite://PATH or postgresql://"},
    {"DATABASE_URL", "sqlite://", "must be sqlite://PATH"},
    {"DATABASE_URL", "/var/lib/imgproc.db", "must be sqlite://PATH"},
    {"REDIS_URL", "http://cache:6379", "must start with redis://"},
    {"REDIS_URL", "redis://cache:99999/0", "bad port"},
    {"REDIS_URL", "redis://:pw@/0", "no host"},
    {"STORAGE", "gcs", "must be one of local, imgbb, s3 (got 'gcs')"},
    {"S3_ENDPOINT", "127.0.0.1:9000", "must be an http:// or https:// URL"},
    {"S3_REGION", "us east 1", "must be a region name such as us-east-1"},
    {"S3_REGION", "aws:amz", "must be a region name"},
    {"S3_BUCKET", "My_Bucket", "must be 3 to 63 lower-case letters, digits, dots and hyphens"},
    {"S3_BUCKET", "ab", "must be 3 to 63"},
    {"S3_BUCKET", "-images", "beginning and ending with a letter or digit"},
    {"S3_PREFIX", "shop//images", "must be key parts separated by single slashes"},
    {"S3_FORCE_PATH_STYLE", "maybe", "must be true or false"},
    {"S3_PUBLIC_BASE_URL", "cdn.example.com", "must be an http:// or https:// URL"},
    {"S3_PRESIGN_SECONDS", "0", "must be an integer from 1 to 604800"},
    {"S3_PRESIGN_SECONDS", "604801", "from 1 to 604800"},
    {"S3_ACL", "public", "must be one of private, public-read"},
    {"IMGBB_UPLOAD_URL", "ftp://api.imgbb.com/1/upload", "must be an http:// or https:// URL"},
    {"IMGBB_UPLOAD_URL", "api.imgbb.com/1/upload", "must be an http:// or https:// URL"},
    {"PUBLIC_BASE_URL", "file:///srv/media", "must be an http:// or https:// URL"},
    {"PUBLIC_BASE_URL", "images.example.com", "must be an http:// or https:// URL"},
    {"ALLOW_PRIVATE_URLS", "maybe", "must be true or false"},
    {"FETCH_ALLOW_HOSTS", "https://images.example.com/", "is not a host"},
    {"FETCH_ALLOW_HOSTS", "example.com:443", "is not a host"},
    {"FETCH_ALLOW_HOSTS", "images.*.com", "is not a host"},
    {"FETCH_DENY_HOSTS", "evil.example/path", "is not a host"},
    {"API_KEYS_FILE", "/nonexistent/imgproc-keys.txt", "cannot read"},
    {"WEBHOOK_SECRET", "whsec_not base64!", "not base64"},
    {"WORKERS", "0", "must be an integer from 1 to 4096"},
    {"WORKERS", "-3", "from 1 to 4096"},
    {"WORKERS", "100000", "from 1 to 4096"},
    {"CPU_THREADS", "-1", "must be an integer from 0 to 1024"},
    {"CPU_THREADS", "5000", "from 0 to 1024"},
    {"PIXEL_BUDGET", "0", "must be an integer from 1 to 1000000000000"},
    {"PIXEL_BUDGET", "-1", "from 1 to"},
    {"DOWNLOAD_BUDGET_BYTES", "1000", "must be an integer from 1048576 to 1099511627776"},
    {"DOWNLOAD_BUDGET_BYTES", "-1", "from 1048576"},
    {"HTTP_THREADS", "0", "must be an integer from 1 to 4096"},
    {"MAX_CONNECTIONS", "0", "must be an integer from 1 to 65536"},
    {"MAX_CONNECTIONS_PER_CLIENT", "-1", "must be an integer from 0 to 65536"},
    {"MAX_HEADER_BYTES", "100", "must be an integer from 1024 to 1048576"},
    {"MAX_HEADER_BYTES", "2000000", "from 1024 to 1048576"},
    {"HEADER_TIMEOUT_MS", "0", "must be an integer from 100 to 600000"},
    {"BODY_TIMEOUT_MS", "-1", "must be an integer from 100 to 3600000"},
    {"BODY_MIN_RATE", "0", "must be an integer from 1 to 1073741824"},
    {"MAX_CSV_BYTES", "0", "from 1024 to 1073741824"},
    {"MAX_CSV_BYTES", "1099511627776", "from 1024 to 1073741824"},
    {"MAX_ROWS", "0", "from 1 to 10000000"},
    {"MAX_URLS_PER_ROW", "0", "from 1 to 10000"},
    {"MAX_URL_LENGTH", "100000", "from 10 to 8192"},
    {"MAX_QUEUED_IMAGES_PER_CLIENT", "-1", "must be an integer from 0 to 1000000000"},
    {"MAX_DOWNLOAD_BYTES", "0", "from 1024 to 4294967296"},
    {"MAX_IMAGE_PIXELS", "0", "must be an integer from 1 to 1000000000000"},
    {"MAX_ANIMATION_FRAMES", "0", "must be an integer from 1 to 100000"},
    {"JPEG_FAST_PATH", "fast", "must be true or false"},
    {"IMAGE_CACHE", "sometimes", "must be true or false"},
    {"IMAGE_CACHE_MAX_AGE_HOURS", "-1", "must be an integer from 0 to 87600"},
    {"FETCH_CONNECT_TIMEOUT_MS", "0", "must be an integer from 100 to 3600000"},
    {"FETCH_TIMEOUT_MS", "1e3", "(got '1e3')"},
    {"MAX_REDIRECTS", "-1", "must be an integer from 0 to 20"},
    {"MAX_REDIRECTS", "100", "from 0 to 20"},
    {"MAX_ATTEMPTS", "0", "must be an integer from 1 to 100"},
    {"RETRY_BASE_MS", "7200000", "from 0 to 3600000"},
    {"WEBHOOK_RETRY_SCHEDULE", "5x", "is not a duration"},
    {"WEBHOOK_RETRY_SCHEDULE", "5s,,5m", "is not a duration"},
    {"WEBHOOK_RETRY_SCHEDULE", "-5s", "is not a duration"},
    {"WEBHOOK_RETRY_SCHEDULE", "5s,200h", "at most 168h"},
    {"LEASE_MS", "50", "must be an integer from 100 to 86400000"},
    {"QUEUE_SWEEP_MS", "0", "must be an integer from 10 to 3600000"},
    {"PRESETS", "thumb", "must be a JSON object of name: settings"},
    {"PRESETS", R"({"Thumb": {}})", "has a preset named 'Thumb'"},
    {"PRESETS", R"({"thumb": 400})", "preset 'thumb' must be an object"},
    {"PRESETS", R"({"thumb": {"width": 400}})", "unknown field 'width'"},
    {"PRESETS", R"({"thumb": {"quality": 0}})", "preset 'thumb': quality must be"},
    {"PRESETS", R"({"thumb": {"format": "gif"}})", "format must be jpeg, webp or avif"},
    {"PRESETS", R"({"t": {"format": "webp", "progressive": true}})", "JPEG only"},
    {"SHUTDOWN_GRACE_MS", "-1", "must be an integer from 0 to 3600000"},
    {"LOG_LEVEL", "loud", "must be one of trace, debug, info, warn, error, critical, off"},
    {"LOG_FORMAT", "xml", "must be one of text, json (got 'xml')"},
};

TEST_F(ConfigTest, EveryBadValueIsRefusedNamingItsSetting) {
  for (const BadValue& bad : kBadValues) {
    const std::string flag = FlagOf(bad.env);
    for (const bool by_flag : {false, true}) {
      const Result<Config> c =
          by_flag ? Load({flag + "=" + bad.value}) : LoadEnv({{bad.env, bad.value}});
      const std::string how = (by_flag ? flag : std::string(bad.env)) + "=" + bad.value;
      ASSERT_FALSE(c.ok()) << how << " was accepted";
      EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << how;
      EXPECT_THAT(c.status().message(), HasSubstr(std::string(bad.env) + " (" + flag + ")")) << how;
      EXPECT_THAT(c.status().message(), HasSubstr(bad.error)) << how;
    }
  }
}

TEST_F(ConfigTest, PresetsAreReadWithTheUploadsFieldsAndRules) {
  EXPECT_EQ(Load({})->api.presets, request::DefaultPresets());
  const Result<Config> c = LoadEnv(
      {{"PRESETS",
        R"({"card": {"format": "WEBP", "max_width": 600, "max_height": 0}, "hd": {"quality": "90",
            "progressive": true}})"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  const request::Presets expected = {
      {"card", {request::OutputFormat::kWebp, 70, 600, 0, false}},
      {"hd", {request::OutputFormat::kJpeg, 90, 0, 0, true}},
  };
  EXPECT_EQ(c->api.presets, expected);
  EXPECT_TRUE(LoadEnv({{"PRESETS", "{}"}})->api.presets.empty());
  // --help shows them in the same form.
  EXPECT_EQ(Shown(*c).at(FlagOf("PRESETS")),
            R"({"card":{"format":"webp","quality":70,"max_width":600,"max_height":0,)"
            R"("progressive":false},"hd":{"format":"jpeg","quality":90,"max_width":0,)"
            R"("max_height":0,"progressive":true}})");
}

TEST_F(ConfigTest, EverySettingHasABadValueInTheTable) {
  std::set<std::string> covered;
  for (const BadValue& bad : kBadValues) covered.insert(bad.env);
  // Any text is a key or a secret; emptiness has its own test below.
  const std::set<std::string> anything_goes = {"IMGBB_API_KEY",     "API_KEYS",
                                               "DATA_DIR",          "S3_CACHE_CONTROL",
                                               "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                               "AWS_SESSION_TOKEN"};
  for (const auto& [flag, env] : Flags()) {
    if (anything_goes.count(env) == 0) {
      EXPECT_EQ(covered.count(env), 1u) << env;
    }
  }
}

// An empty text cannot come from the environment (an empty variable counts as unset) nor from a
// flag (CLI11 wants a value): only from a Config filled in by hand.
TEST_F(ConfigTest, EmptyTextsAreRefusedWhereTheyMeanNothing) {
  for (const char* env : {"BIND", "DATA_DIR", "IMGBB_UPLOAD_URL", "STORAGE", "LOG_LEVEL",
                          "LOG_FORMAT", "PORT", "WORKERS", "JPEG_FAST_PATH"}) {
    Config c;
    c.given[env] = {""};
    const Status s = Finalize(c);
    EXPECT_FALSE(s.ok()) << env;
    EXPECT_THAT(s.message(), HasSubstr(env));
  }
  // Empty is "none" for these; for the schedule, "never retry".
  for (const char* env : {"REDIS_URL", "DATABASE_URL", "PUBLIC_BASE_URL", "WEBHOOK_SECRET",
                          "FETCH_ALLOW_HOSTS", "WEBHOOK_RETRY_SCHEDULE"}) {
    Config c;
    c.given[env] = {""};
    const Status s = Finalize(c);
    EXPECT_TRUE(s.ok()) << env << ": " << s.message();
  }
  Config never;
  never.given["WEBHOOK_RETRY_SCHEDULE"] = {""};
  ASSERT_TRUE(Finalize(never).ok());
  EXPECT_TRUE(never.webhook.schedule.empty());
}

TEST_F(ConfigTest, RulesBetweenSettings) {
  Result<Config> c = LoadEnv({{"HTTP_THREADS", "32"}, {"MAX_CONNECTIONS", "16"}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("MAX_CONNECTIONS (--max-connections) must be at least HTTP_THREADS (32)"));
  c = LoadEnv({{"STORAGE", "imgbb"}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("IMGBB_API_KEY (--imgbb-api-key) is required"));
  c = LoadEnv({{"STORAGE", "imgbb"}, {"IMGBB_API_KEY", "k"}});
  EXPECT_TRUE(c.ok()) << c.status().message();
}

TEST_F(ConfigTest, S3NeedsABucketAndCredentials) {
  Result<Config> c = LoadEnv({{"STORAGE", "s3"}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("S3_BUCKET (--s3-bucket) is required with STORAGE=s3"));
  EXPECT_THAT(c.status().message(), HasSubstr("AWS_ACCESS_KEY_ID (--aws-access-key-id) and "
                                              "AWS_SECRET_ACCESS_KEY (--aws-secret-access-key) "
                                              "are required"));
  c = LoadEnv({{"STORAGE", "s3"}, {"S3_BUCKET", "shop-images"}, {"AWS_ACCESS_KEY_ID", "AKID"}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("AWS_SECRET_ACCESS_KEY"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr("S3_BUCKET")));
  c = LoadEnv({{"STORAGE", "s3"},
               {"S3_BUCKET", "shop-images"},
               {"S3_ENDPOINT", "http://127.0.0.1:9000"},
               {"S3_PREFIX", "/imports/"},
               {"S3_FORCE_PATH_STYLE", "true"},
               {"AWS_ACCESS_KEY_ID", "AKID"},
               {"AWS_SECRET_ACCESS_KEY", "s3cr3t"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->storage.kind, "s3");
  EXPECT_EQ(c->storage.s3.bucket, "shop-images");
  EXPECT_EQ(c->storage.s3.endpoint, "http://127.0.0.1:9000");
  EXPECT_TRUE(c->storage.s3.force_path_style);
  EXPECT_EQ(c->storage.s3.region, "us-east-1");
  EXPECT_EQ(c->storage.s3.presign_seconds, 604800);
  EXPECT_EQ(c->storage.s3.secret_access_key, "s3cr3t");
  // A bucket or keys without STORAGE=s3 are no problem (set for later, say).
  EXPECT_TRUE(LoadEnv({{"S3_BUCKET", "shop-images"}}).ok());
}

TEST_F(ConfigTest, EveryProblemIsListedAndNoSecretIsEchoed) {
  const Result<Config> c = LoadEnv({{"WORKERS", "0"},
                                    {"RETRY_BASE_MS", "-5"},
                                    {"DATABASE_URL", "mysql://user:hunter2@db/imgproc"},
                                    {"WEBHOOK_SECRET", "whsec_hunter2!"}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("WORKERS"));
  EXPECT_THAT(c.status().message(), HasSubstr("RETRY_BASE_MS"));
  EXPECT_THAT(c.status().message(), HasSubstr("DATABASE_URL"));
  EXPECT_THAT(c.status().message(), HasSubstr("WEBHOOK_SECRET"));
  EXPECT_EQ(c.status().message().find("hunter2"), std::string::npos) << c.status().message();
}

TEST_F(ConfigTest, AGoodConfigurationReachesEveryModule) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("imgproc-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string keys_file = (dir / "keys.txt").string();
  std::ofstream(keys_file) << "# the web team\n  file-key  # rotated monthly\n\n";
  const Result<Config> c = LoadEnv(
      {
          {"PORT", "9001"},
          {"BIND", "::"},
          {"DATA_DIR", "/srv/imgproc"},
          {"REDIS_URL", "redis://:pw@cache:6380/2"},
          {"STORAGE", "imgbb"},
          {"IMGBB_API_KEY", "key"},
          {"IMGBB_UPLOAD_URL", "https://upload.example.com/1/upload"},
          {"ALLOW_PRIVATE_URLS", "yes"},
          {"FETCH_ALLOW_HOSTS", " Images.Example.com ,*.CDN.example.com,10.0.0.1"},
          {"FETCH_DENY_HOSTS", "::1"},
          {"API_KEYS", "key-a, key-b"},
          {"API_KEYS_FILE", keys_file},
          {"WEBHOOK_SECRET", "whsec_c2VjcmV0"},
          {"WORKERS", "8"},
          {"CPU_THREADS", "3"},
          {"PIXEL_BUDGET", "1200000"},
          {"DOWNLOAD_BUDGET_BYTES", "2097152"},
          {"HTTP_THREADS", "4"},
          {"MAX_CONNECTIONS", "64"},
          {"MAX_CONNECTIONS_PER_CLIENT", "0"},
          {"MAX_HEADER_BYTES", "16384"},
          {"HEADER_TIMEOUT_MS", "1000"},
          {"BODY_TIMEOUT_MS", "30000"},
          {"BODY_MIN_RATE", "1000"},
          {"MAX_CSV_BYTES", "2000"},
          {"MAX_ROWS", "7"},
          {"MAX_URLS_PER_ROW", "3"},
          {"MAX_URL_LENGTH", "100"},
          {"MAX_QUEUED_IMAGES_PER_CLIENT", "0"},
          {"MAX_DOWNLOAD_BYTES", "5000000"},
          {"MAX_IMAGE_PIXELS", "500000"},
          {"MAX_ANIMATION_FRAMES", "2"},
          {"JPEG_FAST_PATH", "false"},
          {"FETCH_CONNECT_TIMEOUT_MS", "250"},
          {"FETCH_TIMEOUT_MS", "400"},
          {"MAX_REDIRECTS", "0"},
          {"MAX_ATTEMPTS", "1"},
          {"RETRY_BASE_MS", "0"},
          {"WEBHOOK_RETRY_SCHEDULE", "200ms, 1s,5m,2h"},
          {"LEASE_MS", "3000"},
          {"QUEUE_SWEEP_MS", "200"},
          {"SHUTDOWN_GRACE_MS", "0"},
          {"LOG_LEVEL", "debug"},
          {"LOG_FORMAT", "json"},
      },
      {"--port", "9002", "--workers=9"});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->server.port, 9002);  // the flag wins
  EXPECT_EQ(c->pipeline.workers, 9);
  EXPECT_EQ(c->server.bind, "::");
  EXPECT_EQ(c->storage.public_base_url, "http://[::]:9002");
  EXPECT_EQ(c->data_dir, "/srv/imgproc");
  EXPECT_EQ(c->database_url, "sqlite:///srv/imgproc/imgproc.db");
  EXPECT_EQ(c->storage.media_dir, "/srv/imgproc/media");
  EXPECT_EQ(c->queue.url, "redis://:pw@cache:6380/2");
  EXPECT_EQ(c->storage.kind, "imgbb");
  EXPECT_EQ(c->storage.imgbb_upload_url, "https://upload.example.com/1/upload");
  EXPECT_TRUE(c->pipeline.fetch.allow_private);
  EXPECT_TRUE(c->webhook.fetch.allow_private);
  EXPECT_EQ(c->pipeline.fetch.allow_hosts,
            (std::vector<std::string>{"images.example.com", "*.cdn.example.com", "10.0.0.1"}));
  EXPECT_EQ(c->pipeline.fetch.deny_hosts, std::vector<std::string>{"::1"});
  EXPECT_EQ(c->api.api_key_digests,
            (std::set<std::string>{api::KeyDigest("key-a"), api::KeyDigest("key-b"),
                                   api::KeyDigest("file-key")}));
  EXPECT_EQ(c->webhook.secret, "whsec_c2VjcmV0");
  EXPECT_EQ(c->pipeline.cpu_threads, 3);
  EXPECT_EQ(c->pipeline.pixel_budget, 1'200'000u);
  EXPECT_EQ(c->pipeline.download_budget_bytes, 2u << 20);
  EXPECT_EQ(c->server.threads, 4);
  EXPECT_EQ(c->server.max_connections, 64);
  EXPECT_EQ(c->server.max_connections_per_client, 0);
  EXPECT_EQ(c->server.limits.max_header_bytes, 16384u);
  EXPECT_EQ(c->server.limits.header_timeout, 1000ms);
  EXPECT_EQ(c->server.limits.body_timeout, 30s);
  EXPECT_EQ(c->server.limits.body_min_rate, 1000u);
  EXPECT_EQ(c->api.csv_limits.max_bytes, 2000u);
  EXPECT_EQ(c->server.limits.max_body_bytes, 2000u + 64 * 1024);
  EXPECT_EQ(c->api.csv_limits.max_rows, 7u);
  EXPECT_EQ(c->api.csv_limits.max_urls_per_row, 3u);
  EXPECT_EQ(c->api.csv_limits.max_url_length, 100u);
  EXPECT_EQ(c->api.max_client_images, 0);
  EXPECT_EQ(c->pipeline.fetch.max_body_bytes, 5'000'000u);
  EXPECT_EQ(c->pipeline.codec.max_pixels, 500'000u);
  EXPECT_EQ(c->pipeline.codec.max_frames, 2);
  EXPECT_FALSE(c->pipeline.codec.jpeg_fast_path);
  EXPECT_EQ(c->pipeline.fetch.connect_timeout, 250ms);
  EXPECT_EQ(c->pipeline.fetch.total_timeout, 400ms);
  EXPECT_EQ(c->pipeline.fetch.max_redirects, 0);
  EXPECT_EQ(c->pipeline.max_attempts, 1);
  EXPECT_EQ(c->pipeline.retry_base, 0ms);
  EXPECT_EQ(c->webhook.schedule, (webhook::RetrySchedule{200ms, 1s, 5min, 2h}));
  EXPECT_EQ(c->pipeline.lease, 3s);
  EXPECT_EQ(c->queue.lease, 3s);
  EXPECT_EQ(c->queue.sweep, 200ms);
  EXPECT_EQ(c->pipeline.shutdown_grace, 0ms);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->log_format, "json");
}

TEST_F(ConfigTest, AFlagWinsOverTheEnvironment) {
  Result<Config> c = LoadEnv({{"PORT", "9000"}, {"RETRY_BASE_MS", "-5"}},
                             {"--port=9001", "--retry-base-ms", "10"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->server.port, 9001);
  EXPECT_EQ(c->pipeline.retry_base, 10ms);
  // The switch: bare, or given a value, against the environment's value.
  c = LoadEnv({{"ALLOW_PRIVATE_URLS", "1"}}, {"--allow-private-urls=false"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_FALSE(c->pipeline.fetch.allow_private);
  c = LoadEnv({{"ALLOW_PRIVATE_URLS", "off"}}, {"--allow-private-urls"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->pipeline.fetch.allow_private);
}

TEST_F(ConfigTest, ExplicitValuesOfDerivedSettingsAreKept) {
  const Result<Config> c = LoadEnv({{"DATABASE_URL", "postgresql://u:p@db:5432/imgproc"},
                                    {"PUBLIC_BASE_URL", "https://images.example.com"},
                                    {"CPU_THREADS", "0"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->database_url, "postgresql://u:p@db:5432/imgproc");
  EXPECT_EQ(c->storage.public_base_url, "https://images.example.com");
  EXPECT_GE(c->pipeline.cpu_threads, 1);
}

}  // namespace
}  // namespace imgproc::config
