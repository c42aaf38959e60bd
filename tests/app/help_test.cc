// Every subcommand's --help lists exactly the settings of the README's configuration table, with
// the same environment variable for each flag and the same defaults; a bad setting stops every
// subcommand with exit code 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "process_client.h"

namespace imgproc::testing {
namespace {

// flag -> environment variable, from the README's "| `VAR` | `--flag` | default | meaning |" rows.
std::map<std::string, std::string> ReadmeSettings() {
  std::ifstream in(std::string(IMGPROC_SOURCE_DIR) + "/README.md");
  std::map<std::string, std::string> settings;
  const std::regex row(R"(^\| `([A-Z_]+)` \| `(--[a-z0-9-]+)` \|)");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, row)) settings[m[2]] = m[1];
  }
  return settings;
}

// flag -> environment variable, from "--flag TYPE=default (Env:VAR)" lines of a --help text.
std::map<std::string, std::string> HelpSettings(const std::string& help) {
  std::map<std::string, std::string> settings;
  const std::regex option(R"((--[a-z0-9-]+)[^\n]*\(Env:([A-Z_]+)\))");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), option);
       it != std::sregex_iterator(); ++it) {
    settings[(*it)[1]] = (*it)[2];
  }
  return settings;
}

// flag -> default, from the README's rows whose default is one literal value ("`8000`"); the
// derived ones ("`http://$BIND:$PORT`") and the words ("cores", "(none)") are left out.
std::map<std::string, std::string> ReadmeDefaults() {
  std::ifstream in(std::string(IMGPROC_SOURCE_DIR) + "/README.md");
  std::map<std::string, std::string> defaults;
  const std::regex row(R"(^\| `[A-Z_]+` \| `(--[a-z0-9-]+)` \| `([^`$]+)` \|)");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, row)) defaults[m[1]] = m[2];
  }
  return defaults;
}

// flag -> default, from "--flag TYPE=default (Env:VAR)" lines of a --help text. The defaults come
// from the modules' option structs: this ties the README's to them.
std::map<std::string, std::string> HelpDefaults(const std::string& help) {
  std::map<std::string, std::string> defaults;
  const std::regex option(R"((--[a-z0-9-]+) [A-Z]+(?: \.\.\.)?=(\S+) \(Env:[A-Z_]+\))");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), option);
       it != std::sregex_iterator(); ++it) {
    defaults[(*it)[1]] = (*it)[2];
  }
  return defaults;
}

TEST(Help, EverySubcommandMatchesTheReadmeTable) {
  const auto readme = ReadmeSettings();
  ASSERT_GT(readme.size(), 30u);
  EXPECT_EQ(readme.count("--log-format"), 1u);
  TempDir dir("help");
  for (const char* command : {"serve", "process"}) {
    const CommandResult r = RunImgproc({command, "--help"}, {}, dir.path());
    ASSERT_EQ(r.exit_code, 0) << command << r.err;
    EXPECT_EQ(HelpSettings(r.out), readme) << command << " --help:\n" << r.out;
  }
}

TEST(Help, TheReadmeDefaultsAreTheOnesInForce) {
  const auto readme = ReadmeDefaults();
  ASSERT_GT(readme.size(), 30u);
  TempDir dir("help-defaults");
  const CommandResult r = RunImgproc({"serve", "--help"}, {}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto help = HelpDefaults(r.out);
  for (const auto& [flag, value] : readme) {
    ASSERT_EQ(help.count(flag), 1u) << flag << " shows no default in --help:\n" << r.out;
    EXPECT_EQ(help.at(flag), value) << flag;
  }
}

// The first hole of the old configuration: a negative RETRY_BASE_MS went through to the workers
// (and reversed the bounds of their retry jitter).
TEST(Settings, ABadValueStopsEveryCommandWithExitCodeTwo) {
  TempDir dir("bad-setting");
  std::ofstream(dir.path() / "in.csv") << "Serial Number,Product Name,Input Image Urls\n";
  for (const std::vector<std::string>& args : {std::vector<std::string>{"serve"},
                                               {"worker"},
                                               {"migrate"},
                                               {"process", "in.csv", "-o", "out.csv"}}) {
    const CommandResult r = RunImgproc(args, {{"RETRY_BASE_MS", "-5"}}, dir.path());
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.out << r.err;
    EXPECT_THAT(r.out + r.err,
                ::testing::HasSubstr(
                    "RETRY_BASE_MS (--retry-base-ms) must be an integer from 0 to 3600000 (got "
                    "'-5')"))
        << args[0];
  }
}

}  // namespace
}  // namespace imgproc::testing
