#include "predictor/dag.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "predictor/names.h"

namespace prewarm {
namespace {

// Names a task in messages: "task 'extract'".
std::string TaskLabel(absl::string_view id) { return absl::StrCat("task '", id, "'"); }

// Among `remaining` tasks (each with at least one remaining parent, as Kahn's algorithm leaves
// them) walks parent links until a task repeats: that stretch is a cycle. Returns it in
// dependency order, closed: "a -> b -> a".
std::string FindCycle(const std::vector<TaskSpec>& tasks,
                      const std::vector<std::vector<int>>& parents,
                      const std::vector<bool>& remaining) {
  int start =
      static_cast<int>(std::find(remaining.begin(), remaining.end(), true) - remaining.begin());
  std::vector<int> position(tasks.size(), -1);
  std::vector<int> walk;
  int v = start;
  while (position[v] < 0) {
    position[v] = static_cast<int>(walk.size());
    walk.push_back(v);
    for (int p : parents[v]) {
      if (remaining[p]) {
        v = p;
        break;
      }
    }
  }
  // walk[position[v]..] is the cycle, followed child -> parent; print it parent -> child.
  std::vector<std::string> names;
  for (int i = static_cast<int>(walk.size()) - 1; i >= position[v]; --i) {
    names.push_back(tasks[walk[i]].task_id);
  }
  names.push_back(tasks[walk.back()].task_id);
  return absl::StrJoin(names, " -> ");
}

}  // namespace

absl::StatusOr<Dag> Dag::Build(std::vector<TaskSpec> tasks, const DagLimits& limits) {
  if (tasks.empty()) return absl::InvalidArgumentError("the DAG has no tasks");
  if (static_cast<int64_t>(tasks.size()) > limits.max_tasks) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("the DAG has %d tasks; the limit is %d", tasks.size(), limits.max_tasks));
  }

  absl::flat_hash_map<std::string, int> input_index;
  input_index.reserve(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    const TaskSpec& t = tasks[i];
    if (absl::Status s = ValidateId(t.task_id, absl::StrFormat("tasks[%d].task_id", i)); !s.ok()) {
      return s;
    }
    if (!t.service.empty()) {
      if (absl::Status s = ValidateServiceName(t.service, TaskLabel(t.task_id) + " service");
          !s.ok()) {
        return s;
      }
    }
    if (!input_index.emplace(t.task_id, static_cast<int>(i)).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate task id '", t.task_id, "' (tasks[",
                                                     input_index[t.task_id], "] and tasks[", i,
                                                     "])"));
    }
  }

  const int n = static_cast<int>(tasks.size());
  std::vector<std::vector<int>> parents(n);
  int64_t edges = 0;
  for (int i = 0; i < n; ++i) {
    const TaskSpec& t = tasks[i];
    edges += static_cast<int64_t>(t.upstream_task_ids.size());
    if (edges > limits.max_edges) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("the DAG has more than %d upstream edges (the limit)", limits.max_edges));
    }
    absl::flat_hash_set<int> seen;
    for (const std::string& up : t.upstream_task_ids) {
      auto it = input_index.find(up);
      if (it == input_index.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            TaskLabel(t.task_id), " lists unknown upstream task '", up.substr(0, 250), "'"));
      }
      if (it->second == i) {
        return absl::InvalidArgumentError(
            absl::StrCat(TaskLabel(t.task_id), " lists itself as upstream"));
      }
      if (!seen.insert(it->second).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(TaskLabel(t.task_id), " lists upstream task '", up, "' twice"));
      }
      parents[i].push_back(it->second);
    }
  }

  // Kahn's algorithm; the FIFO keeps the order deterministic for a given input.
  std::vector<std::vector<int>> children(n);
  std::vector<int> pending_parents(n);
  for (int i = 0; i < n; ++i) {
    pending_parents[i] = static_cast<int>(parents[i].size());
    for (int p : parents[i]) children[p].push_back(i);
  }
  std::vector<int> order;
  order.reserve(n);
  for (int i = 0; i < n; ++i) {
    if (pending_parents[i] == 0) order.push_back(i);
  }
  for (size_t head = 0; head < order.size(); ++head) {
    for (int c : children[order[head]]) {
      if (--pending_parents[c] == 0) order.push_back(c);
    }
  }
  if (static_cast<int>(order.size()) < n) {
    std::vector<bool> remaining(n, false);
    for (int i = 0; i < n; ++i) remaining[i] = pending_parents[i] > 0;
    return absl::InvalidArgumentError(
        absl::StrCat("the DAG has a cycle: ", FindCycle(tasks, parents, remaining)));
  }

  // Re-index in topological order.
  std::vector<int> new_index(n);
  for (int pos = 0; pos < n; ++pos) new_index[order[pos]] = pos;
  Dag dag;
  dag.edge_count_ = static_cast<int>(edges);
  dag.tasks_.resize(n);
  dag.parents_.resize(n);
  dag.children_.resize(n);
  for (int old = 0; old < n; ++old) {
    const int pos = new_index[old];
    // Sized exactly: a DAG is held by every active run.
    dag.parents_[pos].reserve(parents[old].size());
    dag.children_[pos].reserve(children[old].size());
    for (int p : parents[old]) dag.parents_[pos].push_back(new_index[p]);
    for (int c : children[old]) dag.children_[pos].push_back(new_index[c]);
    std::sort(dag.children_[pos].begin(), dag.children_[pos].end());
    dag.tasks_[pos] = std::move(tasks[old]);
  }
  dag.by_id_.resize(n);
  for (int v = 0; v < n; ++v) dag.by_id_[v] = v;
  std::sort(dag.by_id_.begin(), dag.by_id_.end(),
            [&](int a, int b) { return dag.tasks_[a].task_id < dag.tasks_[b].task_id; });
  return dag;
}

std::optional<int> Dag::Find(absl::string_view task_id) const {
  auto it = std::lower_bound(by_id_.begin(), by_id_.end(), task_id,
                             [&](int v, absl::string_view id) { return tasks_[v].task_id < id; });
  if (it == by_id_.end() || tasks_[*it].task_id != task_id) return std::nullopt;
  return *it;
}

std::vector<int> Dag::Descendants(int task) const {
  // Indices are topological, so one forward sweep from `task` marks every descendant in order.
  std::vector<bool> reached(tasks_.size(), false);
  reached[task] = true;
  std::vector<int> out;
  for (int v = task + 1; v < size(); ++v) {
    for (int p : parents_[v]) {
      if (reached[p]) {
        reached[v] = true;
        out.push_back(v);
        break;
      }
    }
  }
  return out;
}

}  // namespace prewarm
