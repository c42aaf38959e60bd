// Every subcommand's --help lists exactly the settings of the README's configuration table, with
// the same environment variable for each flag.
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

}  // namespace
}  // namespace imgproc::testing
