#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prewarm {

// One task of a workflow as a scheduler describes it.
struct TaskSpec {
  std::string task_id;
  // The serverless service the task calls; empty when it calls none.
  std::string service;
  std::vector<std::string> upstream_task_ids;
  // How long the task usually runs, as the scheduler knows it (v1.Task.expected_duration): its
  // duration estimate until the task's own history has an observation. Unset: no hint.
  std::optional<absl::Duration> expected_duration;
};

// Size limits a DAG must respect; the server makes them configurable.
struct DagLimits {
  int max_tasks = 10'000;
  int max_edges = 100'000;
};

// A validated workflow DAG. Tasks are stored in a topological order (parents before children), so
// index order is a valid evaluation order and "descendants of u" all have indices above u.
// Immutable after Build; safe to share between threads.
class Dag {
 public:
  // Validates `tasks` and builds the DAG. Errors are INVALID_ARGUMENT naming the offending task:
  // empty or oversize ids, bad service names, duplicate task ids, unknown or repeated upstream ids,
  // self-loops and cycles (the message gives the cycle path, e.g. "a -> b -> a"); and
  // RESOURCE_EXHAUSTED past `limits`.
  static absl::StatusOr<Dag> Build(std::vector<TaskSpec> tasks, const DagLimits& limits = {});

  int size() const { return static_cast<int>(tasks_.size()); }
  int edge_count() const { return edge_count_; }
  const TaskSpec& task(int i) const { return tasks_[i]; }
  const std::vector<int>& parents(int i) const { return parents_[i]; }
  const std::vector<int>& children(int i) const { return children_[i]; }

  // Index of `task_id`, or nullopt when the DAG has no such task.
  std::optional<int> Find(absl::string_view task_id) const;

  // The descendants of `task` (not `task` itself), in topological order.
  std::vector<int> Descendants(int task) const;

 private:
  Dag() = default;

  std::vector<TaskSpec> tasks_;
  std::vector<std::vector<int>> parents_;
  std::vector<std::vector<int>> children_;
  // Task indices ordered by task id, for Find (a quarter of the memory of a hash map of ids).
  std::vector<int> by_id_;
  int edge_count_ = 0;
};

}  // namespace prewarm
