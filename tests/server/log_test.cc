#include "server/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// The prefix every line has: time, level padded to five, file:line.
constexpr char kPrefix[] =
    R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z [A-Z]+ +log_test\.cc:\d+\] )";

// Sends log lines to a temporary file for the duration of a test.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(::testing::TempDir(), "log_test_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".log");
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    ASSERT_GE(fd_, 0) << path_;
    SetLogFd(fd_);
  }

  void TearDown() override {
    SetLogFd(STDERR_FILENO);
    SetMinLogLevel(LogLevel::kInfo);
    ::close(fd_);
    ::unlink(path_.c_str());
  }

  // Everything logged so far, split into lines (without their '\n').
  std::vector<std::string> Lines() const {
    std::ifstream in(path_);
    std::stringstream contents;
    contents << in.rdbuf();
    const std::string text = contents.str();
    EXPECT_TRUE(text.empty() || text.back() == '\n') << "last line unterminated";
    std::vector<std::string> lines = absl::StrSplit(text, '\n');
    lines.pop_back();  // After the final '\n'.
    return lines;
  }

  std::string path_;
  int fd_ = -1;
};

TEST_F(LogTest, LineFormat) {
  const std::string address = "127.0.0.1:50051";
  const int line = __LINE__ + 1;
  PREWARM_LOG(INFO) << "listening on " << address;
  const absl::Time after = absl::Now();

  std::vector<std::string> lines = Lines();
  ASSERT_THAT(lines, SizeIs(1));
  const std::regex format(
      absl::StrCat(R"(^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) INFO  log_test\.cc:)", line,
                   R"(\] listening on 127\.0\.0\.1:50051$)"));
  std::smatch match;
  ASSERT_TRUE(std::regex_match(lines[0], match, format)) << lines[0];

  // The time is UTC, to the millisecond, and is the time of logging.
  absl::Time logged;
  std::string error;
  ASSERT_TRUE(
      absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", match[1].str(), absl::UTCTimeZone(), &logged, &error))
      << error;
  EXPECT_LE(logged, after);
  EXPECT_GT(logged, after - absl::Minutes(1));
}

TEST_F(LogTest, LevelNamesAreAligned) {
  SetMinLogLevel(LogLevel::kDebug);
  PREWARM_LOG(DEBUG) << "d";
  PREWARM_LOG(INFO) << "i";
  PREWARM_LOG(WARNING) << "w";
  PREWARM_LOG(ERROR) << "e";

  std::vector<std::string> levels;
  for (const std::string& line : Lines()) {
    std::vector<std::string> fields = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    ASSERT_THAT(fields, SizeIs(2)) << line;
    levels.push_back(fields[1].substr(0, fields[1].find("log_test.cc")));
  }
  EXPECT_THAT(levels, ElementsAre("DEBUG ", "INFO  ", "WARNING ", "ERROR "));
}

TEST_F(LogTest, DefaultMinimumIsInfo) {
  EXPECT_EQ(MinLogLevel(), LogLevel::kInfo);
  PREWARM_LOG(DEBUG) << "dropped";
  PREWARM_LOG(INFO) << "kept";
  std::vector<std::string> lines = Lines();
  ASSERT_THAT(lines, SizeIs(1));
  EXPECT_THAT(lines[0], HasSubstr("] kept"));
}

TEST_F(LogTest, DropsEventsBelowMinimumWithoutBuildingThem) {
  SetMinLogLevel(LogLevel::kWarning);
  int evaluated = 0;
  auto expensive = [&evaluated] {
    ++evaluated;
    return "payload";
  };
  PREWARM_LOG(DEBUG) << expensive();
  PREWARM_LOG(INFO) << expensive();
  PREWARM_LOG(WARNING) << expensive();
  PREWARM_LOG(ERROR) << expensive();

  EXPECT_EQ(evaluated, 2);
  std::vector<std::string> lines = Lines();
  ASSERT_THAT(lines, SizeIs(2));
  EXPECT_THAT(lines[0], HasSubstr("WARNING log_test.cc"));
  EXPECT_THAT(lines[1], HasSubstr("ERROR log_test.cc"));

  SetMinLogLevel(LogLevel::kError);
  PREWARM_LOG(WARNING) << "dropped";
  EXPECT_THAT(Lines(), SizeIs(2));
}

TEST_F(LogTest, EscapesLineBreaksSoAnEventStaysOneLine) {
  PREWARM_LOG(ERROR) << "first\nsecond\r\nthird\n";
  std::vector<std::string> lines = Lines();
  ASSERT_THAT(lines, SizeIs(1));
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex(absl::StrCat("^", kPrefix, R"(first\\nsecond\\r\\nthird\\n$)"))))
      << lines[0];
}

TEST_F(LogTest, WorksAsTheBodyOfIfElse) {
  for (bool branch : {true, false}) {
    if (branch)
      PREWARM_LOG(INFO) << "then";
    else
      PREWARM_LOG(INFO) << "else";
  }
  std::vector<std::string> lines = Lines();
  ASSERT_THAT(lines, SizeIs(2));
  EXPECT_THAT(lines[0], HasSubstr("] then"));
  EXPECT_THAT(lines[1], HasSubstr("] else"));
}

TEST_F(LogTest, ConcurrentThreadsWriteWholeLines) {
  constexpr int kThreads = 8;
  constexpr int kLinesPerThread = 500;
  // Longer than a typical stdio buffer chunk, so a torn write would show.
  const std::string padding(300, 'x');
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &padding] {
      for (int i = 0; i < kLinesPerThread; ++i) {
        PREWARM_LOG(INFO) << "thread " << t << " line " << i << " " << padding;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  const std::regex format(absl::StrCat("^", kPrefix, R"(thread (\d) line (\d+) x{300}$)"));
  std::set<std::pair<int, int>> seen;
  std::vector<std::string> lines = Lines();
  ASSERT_THAT(lines, SizeIs(kThreads * kLinesPerThread));
  for (const std::string& line : lines) {
    std::smatch match;
    ASSERT_TRUE(std::regex_match(line, match, format)) << line;
    seen.emplace(std::stoi(match[1].str()), std::stoi(match[2].str()));
  }
  EXPECT_THAT(seen, SizeIs(kThreads * kLinesPerThread));
}

TEST(ParseLogLevelTest, AcceptsNamesInAnyCase) {
  EXPECT_EQ(ParseLogLevel("debug").value(), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("info").value(), LogLevel::kInfo);
  EXPECT_EQ(ParseLogLevel("INFO").value(), LogLevel::kInfo);
  EXPECT_EQ(ParseLogLevel("Warning").value(), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("warn").value(), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("error").value(), LogLevel::kError);
}

TEST(ParseLogLevelTest, RejectsUnknownNames) {
  for (const char* name : {"", "verbose", "fatal", "info "}) {
    absl::StatusOr<LogLevel> level = ParseLogLevel(name);
    ASSERT_FALSE(level.ok()) << name;
    EXPECT_EQ(level.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(level.status().message(), HasSubstr(absl::StrCat("\"", name, "\"")));
  }
}

TEST(LogLevelNameTest, RoundTripsThroughParse) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    EXPECT_EQ(ParseLogLevel(LogLevelName(level)).value(), level);
  }
  EXPECT_EQ(LogLevelName(LogLevel::kWarning), "WARNING");
}

}  // namespace
}  // namespace prewarm
