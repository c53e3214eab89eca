// policy_sim: compares prewarm with the alternatives a user would pick, on generated workloads,
// by discrete-event simulation through the shipped RunRegistry and planner.
//
//   build/bench/policy_sim/policy_sim --out_dir=bench/policy_sim/results
//   /usr/bin/python3 bench/policy_sim/plot.py bench/policy_sim/results/policy_sim.csv docs/img
//
// Writes <out_dir>/<output_name>.csv and .md (default policy_sim) and prints the Markdown.

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/policy_sim/report.h"
#include "bench/policy_sim/simulator.h"
#include "bench/policy_sim/workloads.h"
#include "predictor/planner.h"
#include "server/log.h"

ABSL_FLAG(std::string, workloads, "all", "comma-separated workloads, or all");
ABSL_FLAG(std::string, policies, "all",
          "comma-separated: none, eager, lookahead, pinger, always_on, histogram, prewarm (every "
          "--ratios) or prewarm:R; or all. none and eager are always added (the reference points)");
ABSL_FLAG(std::string, ratios, "1,5,20,100,200,500",
          "prewarm's delay_cost_ratio (alpha/beta) values (200: the server's default)");
ABSL_FLAG(int, training_runs, 20, "runs per workflow before measuring");
ABSL_FLAG(int, measured_runs, 100, "measured runs per workflow");
ABSL_FLAG(uint64_t, seed, 1, "workload seed");
ABSL_FLAG(bool, lazy_planning, true, "the server's lazy planning (false: eager, as before)");
ABSL_FLAG(
    int, sample_count, 0,
    "the planner's Monte Carlo samples per task, 1-100000 (0: its default, as in prewarmd); what "
    "fewer samples save per event: load_generator --sample_count");
ABSL_FLAG(std::string, out_dir, "", "where to write the .csv and .md (none: print only)");
ABSL_FLAG(std::string, output_name, "policy_sim", "base name of the .csv and .md in --out_dir");
ABSL_FLAG(bool, warmup_holds_slot, true,
          "strict platform: a task arriving while its warm-up's container starts gets a second "
          "container (false: it waits for the warm-up's container)");
ABSL_FLAG(std::string, trace, "",
          "workload:policy (e.g. seed_chain:prewarm:20) whose measured tasks are printed");

namespace prewarm::sim {
namespace {

int Main() {
  SetMinLogLevel(LogLevel::kError);
  std::vector<double> ratios;
  for (absl::string_view r : absl::StrSplit(absl::GetFlag(FLAGS_ratios), ',', absl::SkipEmpty())) {
    double v = 0;
    if (!absl::SimpleAtod(r, &v) || v <= 0) {
      std::cerr << "bad --ratios value '" << r << "'\n";
      return 2;
    }
    ratios.push_back(v);
  }
  std::vector<std::string> workload_names;
  if (absl::GetFlag(FLAGS_workloads) == "all") {
    workload_names = WorkloadNames();
  } else {
    const std::vector<std::string> known = WorkloadNames();
    for (absl::string_view w :
         absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',', absl::SkipEmpty())) {
      if (std::find(known.begin(), known.end(), w) == known.end()) {
        std::cerr << "unknown workload '" << w << "'\n";
        return 2;
      }
      workload_names.emplace_back(w);
    }
  }
  std::vector<PolicySpec> policies;
  if (absl::GetFlag(FLAGS_policies) == "all") {
    policies = AllPolicies(ratios);
  } else {
    policies = {{PolicyKind::kNone}, {PolicyKind::kEager}};
    for (absl::string_view p :
         absl::StrSplit(absl::GetFlag(FLAGS_policies), ',', absl::SkipEmpty())) {
      if (p == "none" || p == "eager") continue;
      if (!ParsePolicy(std::string(p), ratios, &policies)) {
        std::cerr << "unknown policy '" << p << "'\n";
        return 2;
      }
    }
  }
  if (const int samples = absl::GetFlag(FLAGS_sample_count);
      samples < 0 || samples > PlannerOptions::kMaxSampleCount) {
    std::cerr << "--sample_count must be in [1, " << PlannerOptions::kMaxSampleCount
              << "], or 0 for the planner's default\n";
    return 2;
  }
  std::string trace_workload, trace_policy;
  if (const std::string t = absl::GetFlag(FLAGS_trace); !t.empty()) {
    const size_t colon = t.find(':');
    trace_workload = t.substr(0, colon);
    std::vector<PolicySpec> traced;
    if (colon == std::string::npos || !ParsePolicy(t.substr(colon + 1), ratios, &traced) ||
        traced.size() != 1) {
      std::cerr << "--trace wants workload:policy, e.g. seed_chain:prewarm:20\n";
      return 2;
    }
    trace_policy = traced[0].Name();
  }

  WorkloadOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.training_runs = absl::GetFlag(FLAGS_training_runs);
  options.measured_runs = absl::GetFlag(FLAGS_measured_runs);
  const absl::Time epoch = absl::FromUnixSeconds(1'700'000'000);
  std::vector<Workload> workloads;
  std::vector<SimResult> results;
  double cpu = 0;
  for (const std::string& name : workload_names) {
    workloads.push_back(MakeWorkload(name, options, epoch));
    for (const PolicySpec& policy : policies) {
      SimOptions sim_options;
      sim_options.platform.warmup_holds_slot = absl::GetFlag(FLAGS_warmup_holds_slot);
      sim_options.lazy_planning = absl::GetFlag(FLAGS_lazy_planning);
      sim_options.sample_count = absl::GetFlag(FLAGS_sample_count);
      if (name == trace_workload && policy.Name() == trace_policy) sim_options.trace = &std::cout;
      results.push_back(Simulate(workloads.back(), policy, sim_options));
      const SimResult& r = results.back();
      cpu += r.cpu_seconds;
      std::cerr << absl::StrFormat(
          "%-11s %-20s runs=%d delay=%.1fs idle=%.0fs warmups=%d "
          "errors=%d  (%.2f CPU s, %.1f simulated h)\n",
          r.workload, r.policy, r.measured_runs, r.hideable_delay_s, r.policy_idle_s, r.warmups,
          r.errors, r.cpu_seconds, r.simulated_hours);
    }
  }
  std::cerr << absl::StrFormat("%d simulations, %.1f CPU s\n", results.size(), cpu);
  const std::vector<Row> rows = Summarize(results);
  if (const std::string dir = absl::GetFlag(FLAGS_out_dir); !dir.empty()) {
    const std::string base = dir + "/" + absl::GetFlag(FLAGS_output_name);
    std::ofstream csv(base + ".csv");
    std::ofstream md(base + ".md");
    if (!csv || !md) {
      std::cerr << "cannot write to " << dir << "\n";
      return 1;
    }
    WriteCsv(rows, csv);
    WriteMarkdown(rows, workloads, md);
  }
  WriteMarkdown(rows, workloads, std::cout);
  int errors = 0;
  for (const SimResult& r : results) errors += r.errors;
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace prewarm::sim

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return prewarm::sim::Main();
}
