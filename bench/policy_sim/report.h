#pragma once

// Turns simulation results into the comparison's figures: the share of hideable cold-start delay
// each policy hid (against the "none" policy on the same runs), added latency quantiles, idle cost
// against eager's, and the CSV and Markdown outputs.

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/policy_sim/simulator.h"

namespace prewarm::sim {

struct Row {
  SimResult result;
  // 1 - hideable delay paid / hideable delay paid by "none" on the same runs; unset when "none"
  // paid nothing or was not simulated.
  std::optional<double> hidden_share;
  double none_hideable_delay_s = 0;
  double added_latency_p50_s = 0;
  double added_latency_p95_s = 0;
  double added_latency_mean_s = 0;
  double idle_per_run_s = 0;
  // policy idle / eager's policy idle on the same workload; unset without eager.
  std::optional<double> idle_vs_eager;
  double warmups_per_run = 0;
};

// One row per result, in the given order, with the derived figures filled in.
std::vector<Row> Summarize(const std::vector<SimResult>& results);

// Targets of issue 6 for prewarm on one workload.
struct TargetCheck {
  bool hidden_ok = false;  // >= 95% of the hideable delay hidden
  bool idle_ok = false;    // <= 5% of eager's idle (<= 50% with skipped tasks)
  double idle_limit = 0.05;
};
TargetCheck CheckTargets(const Row& row, bool has_skips);

void WriteCsv(const std::vector<Row>& rows, std::ostream& out);
// `workloads`: for their descriptions and whether they skip tasks (same order as the rows).
void WriteMarkdown(const std::vector<Row>& rows, const std::vector<Workload>& workloads,
                   std::ostream& out);

}  // namespace prewarm::sim
