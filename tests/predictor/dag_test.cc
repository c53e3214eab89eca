#include "predictor/dag.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TaskSpec T(std::string id, std::vector<std::string> up = {}, std::string service = "svc") {
  return TaskSpec{std::move(id), std::move(service), std::move(up)};
}

std::vector<std::string> Ids(const Dag& dag, const std::vector<int>& indices) {
  std::vector<std::string> out;
  for (int i : indices) out.push_back(dag.task(i).task_id);
  return out;
}

TEST(DagTest, OrdersTasksTopologically) {
  // Given in reverse: c depends on b depends on a.
  absl::StatusOr<Dag> dag = Dag::Build({T("c", {"b"}), T("b", {"a"}), T("a")});
  ASSERT_TRUE(dag.ok()) << dag.status();
  EXPECT_EQ(dag->task(0).task_id, "a");
  EXPECT_EQ(dag->task(1).task_id, "b");
  EXPECT_EQ(dag->task(2).task_id, "c");
  EXPECT_EQ(dag->edge_count(), 2);
  EXPECT_EQ(dag->Find("c"), 2);
  EXPECT_EQ(dag->Find("nope"), std::nullopt);
}

TEST(DagTest, DescendantsOfFanOutFanIn) {
  //      a
  //    /   \   (a fans out to b and c)
  //   b     c    d (independent)
  //    \   /
  //      e
  absl::StatusOr<Dag> dag =
      Dag::Build({T("a"), T("b", {"a"}), T("c", {"a"}), T("d"), T("e", {"b", "c"})});
  ASSERT_TRUE(dag.ok()) << dag.status();
  EXPECT_THAT(Ids(*dag, dag->Descendants(*dag->Find("a"))), ElementsAre("b", "c", "e"));
  EXPECT_THAT(Ids(*dag, dag->Descendants(*dag->Find("b"))), ElementsAre("e"));
  EXPECT_TRUE(dag->Descendants(*dag->Find("d")).empty());
  EXPECT_THAT(Ids(*dag, dag->parents(*dag->Find("e"))), ElementsAre("b", "c"));
}

TEST(DagTest, RejectsEmptyDag) {
  EXPECT_THAT(Dag::Build({}).status().message(), HasSubstr("no tasks"));
}

TEST(DagTest, RejectsDuplicateTaskId) {
  absl::Status s = Dag::Build({T("a"), T("b"), T("a")}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("duplicate task id 'a' (tasks[0] and tasks[2])"));
}

TEST(DagTest, RejectsUnknownUpstream) {
  absl::Status s = Dag::Build({T("a"), T("b", {"ghost"})}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("task 'b' lists unknown upstream task 'ghost'"));
}

TEST(DagTest, RejectsSelfLoop) {
  absl::Status s = Dag::Build({T("a", {"a"})}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("task 'a' lists itself as upstream"));
}

TEST(DagTest, RejectsRepeatedUpstream) {
  absl::Status s = Dag::Build({T("a"), T("b", {"a", "a"})}).status();
  EXPECT_THAT(s.message(), HasSubstr("task 'b' lists upstream task 'a' twice"));
}

TEST(DagTest, NamesTheCyclePath) {
  // root -> a -> b -> c -> a, plus an innocent bystander.
  absl::Status s =
      Dag::Build({T("root"), T("a", {"root", "c"}), T("b", {"a"}), T("c", {"b"}), T("x")}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("the DAG has a cycle: "));
  // The path is closed and follows dependency direction, whichever task it starts from.
  const std::string path(s.message().substr(s.message().find(": ") + 2));
  EXPECT_TRUE(path == "a -> b -> c -> a" || path == "b -> c -> a -> b" ||
              path == "c -> a -> b -> c")
      << path;
}

TEST(DagTest, NamesATwoTaskCycle) {
  absl::Status s = Dag::Build({T("a", {"b"}), T("b", {"a"})}).status();
  EXPECT_THAT(s.message(), ::testing::AnyOf(HasSubstr("a -> b -> a"), HasSubstr("b -> a -> b")));
}

TEST(DagTest, RejectsEmptyAndOversizeIds) {
  EXPECT_THAT(Dag::Build({T("")}).status().message(), HasSubstr("tasks[0].task_id is empty"));
  absl::Status s = Dag::Build({T("a"), T(std::string(251, 'x'))}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tasks[1].task_id"));
  EXPECT_THAT(s.message(), HasSubstr("the limit is 250"));
}

TEST(DagTest, RejectsBadServiceName) {
  absl::Status s = Dag::Build({T("a", {}, "bad name!")}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("task 'a' service"));
}

TEST(DagTest, AllowsTasksWithoutService) { EXPECT_TRUE(Dag::Build({T("a", {}, "")}).ok()); }

TEST(DagTest, EnforcesTaskLimit) {
  std::vector<TaskSpec> tasks;
  for (int i = 0; i < 11; ++i) tasks.push_back(T("t" + std::to_string(i)));
  absl::Status s = Dag::Build(tasks, DagLimits{.max_tasks = 10}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("11 tasks; the limit is 10"));
}

TEST(DagTest, EnforcesEdgeLimit) {
  absl::Status s =
      Dag::Build({T("a"), T("b"), T("c", {"a", "b"})}, DagLimits{.max_edges = 1}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("upstream edges"));
}

}  // namespace
}  // namespace prewarm
