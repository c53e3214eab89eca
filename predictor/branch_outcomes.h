#pragma once

// Joint outcomes of a task's children: which of them ran together. A branching task (Airflow's
// BranchPythonOperator, a Step Functions Choice) runs exactly one of its children; each child's
// own share (History::RunProbability) cannot say so, and sampling the children independently
// makes some samples run neither branch, so a join below them looks uncertain. Learning the
// children's outcomes as one observation per run of the parent lets the planner draw them
// together (RunPlanner: a child runs in a sample when a parent that ran chose it there).
//
// The server's part, after applying each task event (ReportTiming) to a run's planner:
//
//   for (const ChildOutcome& o : ChildOutcomesSettledBy(*run.planner, workflow, v, before)) {
//     // persist as a new Observation kind mapped to HistoryWindow::kChildOutcomes, then
//     history.Add(HistoryWindow::kChildOutcomes, o.key, o.value);
//   }
//
// where `v` is the task of the event and `before` its TaskState before the event. BuildRunModel
// reads them back into RunModel::child_outcomes.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "predictor/dag.h"
#include "predictor/history.h"
#include "predictor/planner.h"

namespace prewarm {

// Tasks with more children than this have no joint outcomes (masks are kept as floats).
constexpr int kMaxJointChildren = 24;

// The history key of a task's children's joint outcomes: the task's key and a fingerprint of
// its children's ids, so that outcomes learned for another set of children are not misread
// when the DAG changes.
std::string ChildOutcomeKey(absl::string_view workflow, const Dag& dag, int parent);

// One joint outcome to learn: History::Add(HistoryWindow::kChildOutcomes, key, value). `value`
// has bit k set when the k-th child of the parent, in the order of their task ids, ran.
struct ChildOutcome {
  std::string key;
  double value = 0;
};

// The joint outcomes that the event which moved `child` out of `before` settles: for each parent
// of `child` that finished successfully, has 2 to kMaxJointChildren children, and whose children
// all have a known outcome now (started, finished or failed: ran; skipped: did not) but did not
// before. Empty when the event settles nothing (e.g. a FINISHED after its STARTED).
std::vector<ChildOutcome> ChildOutcomesSettledBy(const RunPlanner& planner,
                                                 absl::string_view workflow, int child,
                                                 TaskState before);

// The learned joint outcomes of `parent`'s children, oldest first, as masks over
// dag.children(parent) (bit k: the k-th child in that order ran). Empty when none were learned
// for this set of children.
std::vector<uint32_t> LearnedChildOutcomes(const History& history, absl::string_view workflow,
                                           const Dag& dag, int parent);

}  // namespace prewarm
