#include "predictor/branch_outcomes.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_format.h"
#include "predictor/random.h"

namespace prewarm {
namespace {

// The parent's children ordered by task id: the bit order of a stored mask.
std::vector<int> ChildrenById(const Dag& dag, int parent) {
  std::vector<int> children(dag.children(parent).begin(), dag.children(parent).end());
  std::sort(children.begin(), children.end(),
            [&](int a, int b) { return dag.task(a).task_id < dag.task(b).task_id; });
  return children;
}

bool Settled(TaskState s) { return s != TaskState::kPending; }

}  // namespace

std::string ChildOutcomeKey(absl::string_view workflow, const Dag& dag, int parent) {
  std::string ids;
  for (int c : ChildrenById(dag, parent)) {
    ids += dag.task(c).task_id;
    ids += '\x1f';
  }
  return absl::StrFormat("%s\x1f%016x", History::TaskKey(workflow, dag.task(parent).task_id),
                         SeedFromString(ids));
}

std::vector<ChildOutcome> ChildOutcomesSettledBy(const RunPlanner& planner,
                                                 absl::string_view workflow, int child,
                                                 TaskState before) {
  std::vector<ChildOutcome> out;
  const Dag& dag = planner.dag();
  if (Settled(before) || !Settled(planner.progress(child).state)) return out;
  for (int u : dag.parents(child)) {
    const int n = static_cast<int>(dag.children(u).size());
    if (n < 2 || n > kMaxJointChildren) continue;
    if (planner.progress(u).state != TaskState::kSucceeded) continue;
    const std::vector<int> children = ChildrenById(dag, u);
    uint32_t mask = 0;
    bool all_settled = true;
    for (int k = 0; k < n; ++k) {
      const TaskState s = planner.progress(children[k]).state;
      all_settled = all_settled && Settled(s);
      if (Settled(s) && s != TaskState::kSkipped) mask |= uint32_t{1} << k;
    }
    if (all_settled) out.push_back({ChildOutcomeKey(workflow, dag, u), static_cast<double>(mask)});
  }
  return out;
}

std::vector<uint32_t> LearnedChildOutcomes(const History& history, absl::string_view workflow,
                                           const Dag& dag, int parent) {
  const int n = static_cast<int>(dag.children(parent).size());
  if (n < 2 || n > kMaxJointChildren) return {};
  const SampleWindow* window = history.ChildOutcomes(ChildOutcomeKey(workflow, dag, parent));
  if (window == nullptr || window->empty()) return {};
  // Bit k of a stored mask is the k-th child by id; here bit j is dag.children(parent)[j].
  const std::vector<int> by_id = ChildrenById(dag, parent);
  const std::vector<int>& in_dag = dag.children(parent);
  std::vector<int> position(n);
  for (int k = 0; k < n; ++k) {
    position[k] =
        static_cast<int>(std::find(in_dag.begin(), in_dag.end(), by_id[k]) - in_dag.begin());
  }
  std::vector<uint32_t> out;
  for (float value : window->InOrder()) {
    const auto stored = static_cast<uint32_t>(value);
    uint32_t mask = 0;
    for (int k = 0; k < n; ++k) {
      if ((stored >> k) & 1) mask |= uint32_t{1} << position[k];
    }
    out.push_back(mask);
  }
  return out;
}

}  // namespace prewarm
