#include "predictor/names.h"

#include <string>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

using ::testing::HasSubstr;

TEST(NamesTest, AcceptsAirflowStyleIds) {
  EXPECT_TRUE(ValidateId("group.extract_1-a", "task_id").ok());
  EXPECT_TRUE(ValidateId("scheduled__2026-11-26T00:00:00+00:00", "run_id").ok());
}

TEST(NamesTest, RejectsEmptyOversizeAndControlCharacters) {
  EXPECT_EQ(ValidateId("", "run_id").message(), "run_id is empty");
  absl::Status long_id = ValidateId(std::string(300, 'r'), "run_id");
  EXPECT_THAT(long_id.message(), HasSubstr("300 bytes long; the limit is 250"));
  // The message does not echo the whole id back.
  EXPECT_LT(long_id.message().size(), 120u);
  EXPECT_THAT(ValidateId("a\nb", "workflow_id").message(), HasSubstr("control character"));
}

TEST(NamesTest, IdsMustBeUtf8) {
  // Multi-byte characters of every length are ids like any other.
  EXPECT_TRUE(ValidateId("caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x9a\x80", "run_id").ok());
  for (const char* bad : {"\xff\xff\xff\xff\xff",  // never in UTF-8
                          "ab\xc3",                // truncated sequence
                          "\xc0\xaf",              // overlong '/'
                          "\xe0\x80\xaf",          // overlong
                          "\xed\xa0\x80",          // a surrogate
                          "\xf4\x90\x80\x80",      // past U+10FFFF
                          "a\x80"
                          "b"}) {  // a lone continuation byte
    absl::Status s = ValidateId(bad, "run_id");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << absl::CHexEscape(bad);
    EXPECT_THAT(s.message(), HasSubstr("run_id"));
    EXPECT_THAT(s.message(), HasSubstr("not valid UTF-8"));
  }
}

TEST(NamesTest, ServiceNamesAreRestricted) {
  EXPECT_TRUE(ValidateServiceName("svc-a.v2_x", "name").ok());
  EXPECT_EQ(ValidateServiceName("", "service.name").message(), "service.name is empty");
  EXPECT_THAT(ValidateServiceName("a/b", "name").message(), HasSubstr("only letters"));
  EXPECT_THAT(ValidateServiceName(std::string(129, 's'), "name").message(),
              HasSubstr("the limit is 128"));
}

}  // namespace
}  // namespace prewarm
