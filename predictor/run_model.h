#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "predictor/dag.h"
#include "predictor/history.h"

namespace prewarm {

// What the planner needs to know of a service beyond its history.
struct ServiceInfo {
  // Whether prewarm can warm it (registered with a managed or delegated target).
  bool warmable = false;
  // Idle time before the platform reclaims a container; <= 0 means never.
  absl::Duration keep_alive = absl::Seconds(60);
  // Requests one container serves at once; 0: unlimited. With 1, a task arriving while its
  // warm-up's container starts gets a second container, which idles until reclaimed.
  int container_concurrency = 0;
  // The service's own cold-start prior, if registered with one.
  std::optional<absl::Duration> cold_start_prior;
  // Until when the service is known to be warm (a warm-up or call of another run); InfinitePast
  // when not known to be warm.
  absl::Time warm_until = absl::InfinitePast();
};

using ServiceLookup = std::function<ServiceInfo(absl::string_view service)>;

// The inputs of one task's plan, snapshotted from History when a run is submitted so that the
// plan does not change under the planner as history grows.
struct TaskModel {
  Estimate duration;
  // Unset (null distribution) when the task calls no service.
  Estimate cold_start;
  // P(the task runs | it has no parents, or at least one parent ran). Conditional, so that a
  // branch below a rare branch is not discounted twice: the planner carries the skips of the
  // parents through its samples. The server learns a 1 when the task finishes and a 0 when it is
  // skipped although a parent ran (a skip because every parent was skipped teaches nothing).
  double run_probability = 1;
  ServiceInfo service;
};

// Which children of a task ran together in its recent runs (predictor/branch_outcomes.h).
struct ChildOutcomes {
  int parent = 0;  // DAG index of the task
  // One mask per learned run of the parent, oldest first: bit j set when dag.children(parent)[j]
  // ran in it.
  std::vector<uint32_t> masks;
};

// The inputs of a run's plan: one TaskModel per DAG task (same indices) and the dispatch gap.
struct RunModel {
  std::vector<TaskModel> tasks;
  Estimate dispatch_gap;
  // Joint outcomes of the children of tasks that have them, ascending by parent (only tasks with
  // 2 or more children and learned outcomes). A child of such a task runs in a sample when the
  // mask drawn for the parent there says so, instead of by its own run_probability.
  std::vector<ChildOutcomes> child_outcomes;
};

// Snapshots the estimates of every task of `dag` in `workflow` from `history`.
RunModel BuildRunModel(const Dag& dag, absl::string_view workflow, const History& history,
                       const ServiceLookup& services);

}  // namespace prewarm
