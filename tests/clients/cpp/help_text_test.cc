// The help's rendering: wrapping, aligned flag columns, one command's help, a group's list and
// the overview.
#include "clients/cpp/help_text.h"

#include <string>

#include "clients/cpp/command_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PrewarmctlHelpTextTest, WrapsProseAndKeepsIndentedLines) {
  EXPECT_EQ(Wrap("aaa bbb ccc", 7), "aaa bbb\nccc\n");
  EXPECT_EQ(Wrap("aaa  bbb", 100), "aaa bbb\n");  // Prose spaces collapse.
  EXPECT_EQ(Wrap("  {\"kept\":   \"as is, however long\"}", 5),
            "  {\"kept\":   \"as is, however long\"}\n");
  EXPECT_EQ(Wrap("one\n\ntwo"), "one\n\ntwo\n");
  EXPECT_EQ(Wrap("averyveryverylongword x", 5), "averyveryverylongword\nx\n");
}

TEST(PrewarmctlHelpTextTest, FlagLinesAlignTheHelpColumn) {
  EXPECT_EQ(FlagLines({{"a", "X", "help a"}, {"long-name", "", "help b"}}),
            "  --a X         help a\n"
            "  --long-name   help b\n");
  EXPECT_EQ(FlagLines({}), "");
}

TEST(PrewarmctlHelpTextTest, CommandHelpHasUsageSummaryFlagsAndExamples) {
  Command c;
  c.path = "thing do";
  c.summary = "Do the thing";
  c.usage = {"thing do X", "thing do --all"};
  c.description = "Does it.";
  c.examples = {"# Once", "prewarmctl thing do x"};
  std::string help = CommandHelp(c);
  EXPECT_EQ(help,
            "Usage: prewarmctl [global flags] thing do X\n"
            "       prewarmctl [global flags] thing do --all\n"
            "\nDo the thing.\n\nDoes it.\n"
            "\nExamples:\n  # Once\n  prewarmctl thing do x\n"
            "\nGlobal flags: --server, --timeout, --output table|json, --tls, --ca-cert, "
            "--client-cert,\n--client-key, --tls-server-name, --token-file (see "
            "'prewarmctl --help').\n");
  c.flags = {{"all", "", "every one"}};
  help = CommandHelp(c);
  EXPECT_THAT(help, HasSubstr("\nFlags:\n  --all   every one\n\nExamples:"));
}

TEST(PrewarmctlHelpTextTest, GroupHelpListsOnlyTheGroupsCommands) {
  const std::string help = GroupHelp("run");
  EXPECT_EQ(help,
            "Commands of 'prewarmctl run':\n"
            "  prewarmctl run submit   Announce a run from a DAG file and print its warm-up plan\n"
            "  prewarmctl run report   Report a task event: started, invoked, finished, failed "
            "or skipped\n"
            "  prewarmctl run cancel   Cancel a run's pending warm-ups and retire it\n"
            "Run 'prewarmctl run COMMAND --help' for its flags and examples.\n");
  EXPECT_THAT(help, Not(HasSubstr("prewarmctl plan")));
}

TEST(PrewarmctlHelpTextTest, TopHelpListsEveryCommandOnceInTableOrder) {
  const std::string help = TopHelp();
  size_t last = 0;
  for (const Command& c : Commands()) {
    const std::string row = "  " + c.path + " ";
    const size_t at = help.find(row);
    ASSERT_NE(at, std::string::npos) << c.path;
    EXPECT_GT(at, last) << c.path << " out of order";
    EXPECT_EQ(help.find(row, at + 1), std::string::npos) << c.path << " listed twice";
    last = at;
  }
  EXPECT_THAT(help,
              HasSubstr("\nGlobal flags (before or after the command):\n  --server HOST:PORT"));
}

}  // namespace
}  // namespace prewarm::ctl
