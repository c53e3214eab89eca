#pragma once

// The policy comparison's discrete-event simulation. One Simulate() call replays one workload
// under one policy, through the shipped server logic: a real RunRegistry (with its planner and
// history) on a FakeClock, a real TimerQueue driven by RunDue(), the in-memory history store, real
// Metrics and ServiceRegistry, and a simulated platform behind the HttpWarmer interface.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "bench/policy_sim/workloads.h"

namespace prewarm::sim {

enum class PolicyKind {
  kNone,       // nothing: the platform's keep-alive only
  kEager,      // the seed paper: at run start, warm the service of every downstream task
  kLookahead,  // ORION-like: warm each task at mean expected start - mean cold start, fixed
  kPinger,     // serverless-plugin-warmup: warm every service every 5 minutes
  kAlwaysOn,   // min-scale 1 / provisioned concurrency: one container per service, always
  kHistogram,  // Serverless in the Wild: per-service idle-time histogram, pre-warm + keep-alive
  kPrewarm,    // prewarm: RunRegistry firing its own warm-ups through the simulated platform
  // A reference, not a product: knows the true duration, gap and cold-start distributions the
  // workload is drawn from; when a task's last parent starts it fires at the 5% quantile of the
  // task's latest useful firing time (so 95% of cold starts are hidden) and re-pings the warm
  // container every keep-alive until the task starts (so the keep-alive cliff never bites).
  kOracle,
};

struct PolicySpec {
  PolicyKind kind = PolicyKind::kNone;
  // prewarm's delay_cost_ratio (alpha/beta); 0 for the other policies.
  double delay_cost_ratio = 0;
  // "none", "eager", ..., "prewarm(a/b=20)".
  std::string Name() const;
};

// Every policy of the comparison, prewarm at the given ratios.
std::vector<PolicySpec> AllPolicies(const std::vector<double>& ratios);
// "none", "eager", "lookahead", "pinger", "always_on", "histogram", "oracle95", "prewarm" (all
// ratios) or "prewarm:R" (one ratio). False for an unknown name.
bool ParsePolicy(const std::string& name, const std::vector<double>& ratios,
                 std::vector<PolicySpec>* out);

struct SimOptions {
  PlatformOptions platform;
  // When set, every measured task is printed (decision, warm-up and start times, delay).
  std::ostream* trace = nullptr;
  // The server's lazy planning (PlannerOptions::lazy_planning; on by default, as in prewarmd).
  bool lazy_planning = true;
  // The planner's Monte Carlo samples per task (PlannerOptions::sample_count); 0: its default.
  int sample_count = 0;
};

struct SimResult {
  std::string workload;
  std::string policy;
  double delay_cost_ratio = 0;
  int measured_runs = 0;
  int tasks_run = 0;
  int tasks_skipped = 0;
  // Tasks whose cold start a policy can hide: tasks with upstreams, and roots of scheduled runs.
  int hideable_tasks = 0;
  int hideable_cold_tasks = 0;          // of those, how many waited (> 50 ms) for a container
  double hideable_delay_s = 0;          // cold-start delay those tasks paid
  double unhideable_delay_s = 0;        // paid by roots of runs that start when submitted
  std::vector<double> added_latency_s;  // per measured run: makespan - makespan all warm
  double policy_idle_s = 0;             // idle warm container-seconds the policy caused
  // policy_idle_s by cause (see PlatformStats).
  double idle_after_warmup_s = 0;
  double idle_warmup_spare_s = 0;
  double idle_pinned_s = 0;
  double idle_extended_s = 0;
  double platform_idle_s = 0;      // the platform's own idle (keep-alive after tasks, spares)
  int64_t warmups = 0;             // warm-up requests sent to the platform (measured window)
  int64_t containers_started = 0;  // measured window
  int errors = 0;                  // RPCs the registry refused (should be 0)
  double simulated_hours = 0;
  double cpu_seconds = 0;
};

SimResult Simulate(const Workload& workload, const PolicySpec& policy, const SimOptions& options);

}  // namespace prewarm::sim
