// The command table: every command reachable by name, in the order the help lists them, with the
// help a newcomer needs.
#include "clients/cpp/command_table.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

TEST(PrewarmctlCommandTableTest, ListsEveryAreaInHelpOrder) {
  std::vector<std::string> paths;
  for (const Command& c : Commands()) paths.push_back(c.path);
  EXPECT_THAT(paths,
              ElementsAre("services list", "services register", "run submit", "run report",
                          "run cancel", "plan", "stats", "watch", "warmup report", "health"));
}

TEST(PrewarmctlCommandTableTest, EveryCommandRunsAndHasConsistentHelp) {
  std::set<std::string> seen;
  for (const Command& c : Commands()) {
    SCOPED_TRACE(c.path);
    EXPECT_TRUE(seen.insert(c.path).second) << "duplicate command";
    EXPECT_NE(c.run, nullptr);
    EXPECT_THAT(c.summary, Not(IsEmpty()));
    EXPECT_THAT(c.description, Not(IsEmpty()));
    EXPECT_THAT(c.examples, Not(IsEmpty()));
    ASSERT_THAT(c.usage, Not(IsEmpty()));
    for (const std::string& usage : c.usage) EXPECT_TRUE(absl::StartsWith(usage, c.path)) << usage;
    EXPECT_LE(c.min_args, c.max_args);
    std::set<std::string> flags;
    for (const FlagSpec& f : c.flags) EXPECT_TRUE(flags.insert(f.name).second) << f.name;
  }
}

TEST(PrewarmctlCommandTableTest, FindCommandPrefersTwoWordsAndCountsThem) {
  size_t used = 0;
  const Command* c = FindCommand({"run", "submit", "--file", "x"}, &used);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->path, "run submit");
  EXPECT_EQ(used, 2u);
  c = FindCommand({"plan", "run-1"}, &used);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->path, "plan");
  EXPECT_EQ(used, 1u);
  EXPECT_EQ(FindCommand({"run"}, &used), nullptr);
  EXPECT_EQ(FindCommand({"run", "nope"}, &used), nullptr);
  EXPECT_EQ(FindCommand({"submit"}, &used), nullptr);
  EXPECT_EQ(FindCommand({}, &used), nullptr);
}

TEST(PrewarmctlCommandTableTest, GroupsAreFirstWordsOfTwoWordCommands) {
  EXPECT_TRUE(IsGroup("services"));
  EXPECT_TRUE(IsGroup("run"));
  EXPECT_TRUE(IsGroup("warmup"));
  EXPECT_FALSE(IsGroup("plan"));
  EXPECT_FALSE(IsGroup("serv"));
  EXPECT_FALSE(IsGroup(""));
}

TEST(PrewarmctlCommandTableTest, GlobalFlagsIncludeConnectionAndOutput) {
  std::vector<std::string> names;
  for (const FlagSpec& f : GlobalFlags()) names.push_back(f.name);
  EXPECT_THAT(names, ElementsAre("server", "timeout", "output", "tls", "ca-cert", "client-cert",
                                 "client-key", "tls-server-name", "token-file", "help", "version"));
}

}  // namespace
}  // namespace prewarm::ctl
