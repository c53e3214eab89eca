#include "predictor/names.h"

#include <string>

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

TEST(NamesTest, ServiceNamesAreRestricted) {
  EXPECT_TRUE(ValidateServiceName("svc-a.v2_x", "name").ok());
  EXPECT_EQ(ValidateServiceName("", "service.name").message(), "service.name is empty");
  EXPECT_THAT(ValidateServiceName("a/b", "name").message(), HasSubstr("only letters"));
  EXPECT_THAT(ValidateServiceName(std::string(129, 's'), "name").message(),
              HasSubstr("the limit is 128"));
}

}  // namespace
}  // namespace prewarm
