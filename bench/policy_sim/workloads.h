#pragma once

// Seeded, generated workloads of the policy comparison. Every random quantity of a run (task
// durations, dispatch gaps, branch decisions, arrival and scheduling) is drawn here, once, so that
// every policy replays exactly the same runs.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/policy_sim/platform.h"

namespace prewarm::sim {

// How a task's warm run time is drawn: `center` is the mean (normal, cut at 0.2x) or the median
// (lognormal); `spread` the coefficient of variation (normal) or sigma (lognormal). The whole
// distribution is multiplied by a factor that moves linearly from 1 (a workflow's first run) to
// `drift_to` (its last run).
struct DurationModel {
  bool lognormal = false;
  double center_s = 10;
  double spread = 0.1;
  double drift_to = 1;
  // One draw at drift position `progress` in [0, 1], from a standard normal `z`.
  double Seconds(double z, double progress) const;
};

struct TaskDef {
  std::string id;
  int service = 0;           // index into Workload::services
  std::vector<int> parents;  // indices of earlier tasks (tasks are in topological order)
  // Probability that the task is skipped when it becomes ready (a branch not taken). A task whose
  // parents were all skipped is skipped too (Airflow's trigger rules).
  double skip_probability = 0;
  DurationModel duration;  // the truth the runs are drawn from (the oracle policy knows it)
};

struct WorkflowDef {
  std::string id;
  std::vector<TaskDef> tasks;
};

struct RunDef {
  std::string run_id;
  int workflow = 0;
  absl::Time submit;       // when the scheduler tells prewarm about the run
  absl::Time start;        // when its roots start (== submit unless scheduled)
  bool scheduled = false;  // start known ahead: its roots' cold starts can be hidden too
  bool measured = false;   // false for the training runs
  double progress = 0;     // position in the workflow's runs, 0..1 (drift)
  std::vector<absl::Duration> duration;  // warm run time of each task
  std::vector<absl::Duration> gap;       // dispatch gap before each task (0 for roots)
  std::vector<bool> skip_draw;           // the branch decision, before propagation
  absl::Duration ideal_makespan;         // with every service warm
};

struct Workload {
  std::string name;
  std::string description;
  std::vector<ServiceConfig> services;
  std::vector<WorkflowDef> workflows;
  std::vector<RunDef> runs;  // by submit time
  bool has_skips = false;
  // Dispatch gaps before non-root tasks are uniform in [gap_min, gap_max].
  absl::Duration gap_min;
  absl::Duration gap_max;
};

struct WorkloadOptions {
  uint64_t seed = 1;
  // Runs per workflow; workloads with several workflows use these per workflow.
  int training_runs = 20;
  int measured_runs = 100;
};

// A standard normal draw (Box-Muller), for sampling DurationModel.
double StandardNormal(Rng& rng);

// The names of every workload, in report order.
std::vector<std::string> WorkloadNames();
// REQUIRES: `name` is one of WorkloadNames(). `start` is the simulation's epoch.
Workload MakeWorkload(const std::string& name, const WorkloadOptions& options, absl::Time start);

}  // namespace prewarm::sim
