#include "predictor/branch_outcomes.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "predictor/planner.h"
#include "predictor/random.h"
#include "predictor/run_model.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

TaskSpec T(std::string id, std::vector<std::string> up = {}) {
  return TaskSpec{id, "svc-" + id, std::move(up)};
}

std::shared_ptr<const Dag> Build(std::vector<TaskSpec> tasks) {
  absl::StatusOr<Dag> dag = Dag::Build(std::move(tasks));
  EXPECT_TRUE(dag.ok()) << dag.status();
  return std::make_shared<const Dag>(*std::move(dag));
}

// route -> b | c -> d: route runs exactly one of b and c; d joins them (it runs after either).
std::vector<TaskSpec> Diamond() {
  return {T("route"), T("b", {"route"}), T("c", {"route"}), T("d", {"b", "c"})};
}

ServiceInfo Warmable(absl::string_view) {
  return ServiceInfo{.warmable = true, .keep_alive = absl::Seconds(60)};
}

std::unique_ptr<RunPlanner> Plan(const std::shared_ptr<const Dag>& dag, const History& history,
                                 absl::string_view run_id = "run") {
  auto planner = std::make_unique<RunPlanner>(dag, BuildRunModel(*dag, "wf", history, Warmable),
                                              kT0, SeedFromString(run_id), PlannerOptions{});
  planner->PlanAll(kT0);
  return planner;
}

int Index(const Dag& dag, absl::string_view id) { return *dag.Find(id); }

// What the server learns from one run in which the children of `route` in `ran` ran and the
// others were skipped: the per-task shares as today, and the joint outcome through
// ChildOutcomesSettledBy after each event, as the server is to call it.
void LearnRun(History& history, const std::shared_ptr<const Dag>& dag,
              const std::vector<std::string>& ran, int run) {
  RunPlanner planner(dag, BuildRunModel(*dag, "wf", history, Warmable), kT0,
                     SeedFromString(absl::StrCat("learn-", run)), PlannerOptions{});
  planner.PlanAll(kT0);
  absl::Time at = kT0;
  const Dag& d = *dag;
  for (int v = 0; v < d.size(); ++v) {
    const std::string& id = d.task(v).task_id;
    const bool runs =
        id == "route" || id == "d" || std::find(ran.begin(), ran.end(), id) != ran.end();
    if (runs) {
      at += absl::Seconds(1);
      ASSERT_TRUE(planner.Started(v, at, at).ok());
      for (const ChildOutcome& o : ChildOutcomesSettledBy(planner, "wf", v, TaskState::kPending)) {
        history.Add(HistoryWindow::kChildOutcomes, o.key, o.value);
      }
      at += absl::Seconds(1);
      ASSERT_TRUE(planner.Finished(v, at, at).ok());
      // A FINISHED after its STARTED settles nothing new.
      EXPECT_THAT(ChildOutcomesSettledBy(planner, "wf", v, TaskState::kRunning), IsEmpty());
      history.AddTaskRun("wf", id, true);
    } else {
      at += absl::Seconds(1);
      ASSERT_TRUE(planner.Skipped(v, at, at).ok());
      for (const ChildOutcome& o : ChildOutcomesSettledBy(planner, "wf", v, TaskState::kPending)) {
        history.Add(HistoryWindow::kChildOutcomes, o.key, o.value);
      }
      history.AddTaskRun("wf", id, false);
    }
  }
}

TEST(BranchOutcomesTest, ExclusiveBranchesLeaveTheJoinCertain) {
  const auto dag = Build(Diamond());
  History history;
  for (int run = 0; run < 40; ++run) {
    LearnRun(history, dag, {run % 2 == 0 ? "b" : "c"}, run);
  }
  auto planner = Plan(dag, history);
  EXPECT_EQ(planner->plan(Index(*dag, "d")).run_probability, 1.0);
  EXPECT_NEAR(planner->plan(Index(*dag, "b")).run_probability, 0.5, 0.15);
  EXPECT_NEAR(planner->plan(Index(*dag, "c")).run_probability, 0.5, 0.15);
  EXPECT_NEAR(planner->plan(Index(*dag, "b")).run_probability +
                  planner->plan(Index(*dag, "c")).run_probability,
              1.0, 1e-9);

  // The same shares drawn independently (what the planner did without joint outcomes) leave
  // the join uncertain: samples in which neither branch runs.
  RunModel independent = BuildRunModel(*dag, "wf", history, Warmable);
  ASSERT_EQ(independent.child_outcomes.size(), 1u);
  independent.child_outcomes.clear();
  RunPlanner before(dag, std::move(independent), kT0, SeedFromString("run"), PlannerOptions{});
  before.PlanAll(kT0);
  EXPECT_LT(before.plan(Index(*dag, "d")).run_probability, 0.95);
}

TEST(BranchOutcomesTest, AKnownBranchSettlesItsSibling) {
  const auto dag = Build(Diamond());
  History history;
  for (int run = 0; run < 40; ++run) LearnRun(history, dag, {run % 2 == 0 ? "b" : "c"}, run);
  auto planner = Plan(dag, history);
  const int route = Index(*dag, "route"), b = Index(*dag, "b"), c = Index(*dag, "c");
  ASSERT_TRUE(planner->Finished(route, kT0 + absl::Seconds(1), kT0 + absl::Seconds(1)).ok());
  absl::StatusOr<std::vector<int>> touched =
      planner->Skipped(b, kT0 + absl::Seconds(2), kT0 + absl::Seconds(2));
  ASSERT_TRUE(touched.ok());
  // c is b's sibling, not its descendant, yet its outcome now follows: re-planned, and certain.
  EXPECT_THAT(*touched, ::testing::Contains(c));
  EXPECT_EQ(planner->plan(c).run_probability, 1.0);
  EXPECT_EQ(planner->plan(Index(*dag, "d")).run_probability, 1.0);
}

TEST(BranchOutcomesTest, IndependentChildrenKeepTheirShares) {
  // a -> x, y, each run in about 70% of a's runs independently of the other.
  const auto dag = Build({T("a"), T("x", {"a"}), T("y", {"a"})});
  History history;
  Rng rng(5);
  const int a = Index(*dag, "a"), x = Index(*dag, "x"), y = Index(*dag, "y");
  for (int run = 0; run < 128; ++run) {
    const bool rx = rng.Uniform() < 0.7, ry = rng.Uniform() < 0.7;
    history.AddTaskRun("wf", "x", rx);
    history.AddTaskRun("wf", "y", ry);
    // Bits in task-id order: x, y.
    history.Add(HistoryWindow::kChildOutcomes, ChildOutcomeKey("wf", *dag, a),
                (rx ? 1 : 0) | (ry ? 2 : 0));
  }
  auto joint = Plan(dag, history);
  RunModel model = BuildRunModel(*dag, "wf", history, Warmable);
  model.child_outcomes.clear();
  RunPlanner alone(dag, std::move(model), kT0, SeedFromString("run"), PlannerOptions{});
  alone.PlanAll(kT0);
  for (int v : {x, y}) {
    EXPECT_NEAR(joint->plan(v).run_probability, 0.7, 0.12) << v;
    EXPECT_NEAR(alone.plan(v).run_probability, 0.7, 0.12) << v;
  }
  // Shares alone give no joint outcomes: the children are drawn independently, as before.
  History shares_only;
  for (int i = 0; i < 10; ++i) shares_only.AddTaskRun("wf", "x", i % 3 != 0);
  EXPECT_THAT(BuildRunModel(*dag, "wf", shares_only, Warmable).child_outcomes, IsEmpty());
}

TEST(BranchOutcomesTest, OutcomesAreLearnedOncePerRunOfTheParent) {
  const auto dag = Build(Diamond());
  History history;
  LearnRun(history, dag, {"b"}, 0);
  LearnRun(history, dag, {"c"}, 1);
  LearnRun(history, dag, {"b", "c"}, 2);
  const SampleWindow* window = history.ChildOutcomes(ChildOutcomeKey("wf", *dag, 0));
  ASSERT_NE(window, nullptr);
  // Bits in task-id order (b, c); b and c each have one child, which teaches nothing jointly.
  EXPECT_THAT(window->InOrder(), ElementsAre(1, 2, 3));
  // One joint key (route's) besides the four tasks' shares.
  EXPECT_EQ(history.key_count(), 5u);
}

TEST(BranchOutcomesTest, MasksFollowTheDagOrderOfChildren) {
  // Children listed so that the DAG's order (by position) differs from the id order.
  const auto dag = Build({T("p"), T("zeta", {"p"}), T("alpha", {"p"})});
  const int p = Index(*dag, "p");
  History history;
  // alpha ran, zeta did not: bit 0 in id order.
  history.Add(HistoryWindow::kChildOutcomes, ChildOutcomeKey("wf", *dag, p), 1);
  const std::vector<uint32_t> masks = LearnedChildOutcomes(history, "wf", *dag, p);
  ASSERT_EQ(masks.size(), 1u);
  // The DAG keeps the input order: zeta first, so alpha is bit 1 here.
  ASSERT_THAT(dag->children(p), ElementsAre(Index(*dag, "zeta"), Index(*dag, "alpha")));
  EXPECT_EQ(masks[0], 2u);
}

TEST(BranchOutcomesTest, AnotherSetOfChildrenIsAnotherKey) {
  const auto two = Build({T("p"), T("a", {"p"}), T("b", {"p"})});
  const auto three = Build({T("p"), T("a", {"p"}), T("b", {"p"}), T("c", {"p"})});
  EXPECT_NE(ChildOutcomeKey("wf", *two, 0), ChildOutcomeKey("wf", *three, 0));
  History history;
  history.Add(HistoryWindow::kChildOutcomes, ChildOutcomeKey("wf", *two, 0), 1);
  EXPECT_THAT(LearnedChildOutcomes(history, "wf", *three, 0), IsEmpty());
}

TEST(BranchOutcomesTest, AFailedParentTeachesNothing) {
  const auto dag = Build(Diamond());
  History history;
  RunPlanner planner(dag, BuildRunModel(*dag, "wf", history, Warmable), kT0, 1, PlannerOptions{});
  planner.PlanAll(kT0);
  ASSERT_TRUE(planner.Failed(0, kT0 + absl::Seconds(1), kT0 + absl::Seconds(1)).ok());
  ASSERT_TRUE(planner.Skipped(1, kT0 + absl::Seconds(2), kT0 + absl::Seconds(2)).ok());
  ASSERT_TRUE(planner.Skipped(2, kT0 + absl::Seconds(2), kT0 + absl::Seconds(2)).ok());
  EXPECT_THAT(ChildOutcomesSettledBy(planner, "wf", 2, TaskState::kPending), IsEmpty());
}

}  // namespace
}  // namespace prewarm
