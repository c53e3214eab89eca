// Plans the seed paper's workflow (three chained tasks of 3 s, 7 s and 5 s calling services with
// 1 s cold starts) after a few learned runs, and prints the plan: what prewarm decides and why.
//
// Run: build/bench/plan_example [--delay_cost_ratio=R]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "predictor/dag.h"
#include "predictor/history.h"
#include "predictor/planner.h"
#include "predictor/random.h"

int main(int argc, char** argv) {
  using namespace prewarm;
  PlannerOptions options;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--delay_cost_ratio=", 19) == 0) {
      options.delay_cost_ratio = std::atof(argv[i] + 19);
    } else {
      std::fprintf(stderr, "usage: %s [--delay_cost_ratio=R]\n", argv[0]);
      return 2;
    }
  }
  if (!(options.delay_cost_ratio > 0)) {
    std::fprintf(stderr, "--delay_cost_ratio must be > 0\n");
    return 2;
  }

  // Ten learned runs with a little jitter, as the server would have recorded them.
  History history;
  Rng rng(2022);
  const struct {
    const char* task;
    double seconds;
  } kSeed[] = {{"task1", 3}, {"task2", 7}, {"task3", 5}};
  for (int run = 0; run < 10; ++run) {
    for (const auto& t : kSeed) {
      const std::string service = absl::StrFormat("svc-%s", t.task);
      history.AddTaskDuration("seed", t.task, service,
                              absl::Seconds(t.seconds + 0.1 * (rng.Uniform() - 0.5)));
      history.AddColdStart(service, absl::Seconds(1 + 0.2 * (rng.Uniform() - 0.5)));
    }
  }
  absl::StatusOr<Dag> dag = Dag::Build({{"task1", "svc-task1", {}},
                                        {"task2", "svc-task2", {"task1"}},
                                        {"task3", "svc-task3", {"task2"}}});
  if (!dag.ok()) {
    std::fprintf(stderr, "%s\n", std::string(dag.status().message()).c_str());
    return 1;
  }
  auto shared = std::make_shared<const Dag>(*std::move(dag));
  const absl::Time start = absl::Now();
  RunPlanner planner(shared,
                     BuildRunModel(*shared, "seed", history,
                                   [](absl::string_view) {
                                     return ServiceInfo{.warmable = true,
                                                        .keep_alive = absl::Seconds(60)};
                                   }),
                     start, SeedFromString("example-run"), options);
  planner.PlanAll(start);

  std::printf("Seed workflow plan (t = seconds after the run starts, delay_cost_ratio %g)\n\n",
              options.delay_cost_ratio);
  std::printf("%-6s %-10s %8s %8s %8s  %-17s %s\n", "task", "service", "start", "warm-up", "cold",
              "decision", "reason");
  for (int v = 0; v < shared->size(); ++v) {
    const TaskPlan& p = planner.plan(v);
    const std::string warmup =
        p.decision == WarmupDecision::kWarm
            ? absl::StrFormat("%.2f", absl::ToDoubleSeconds(p.warmup_time - start))
            : "-";
    std::printf("%-6s %-10s %8.2f %8s %8.2f  %-17s %s\n", shared->task(v).task_id.c_str(),
                shared->task(v).service.c_str(), absl::ToDoubleSeconds(p.expected_start - start),
                warmup.c_str(), absl::ToDoubleSeconds(p.expected_cold_start),
                WarmupDecisionName(p.decision), p.reason.c_str());
  }
  return 0;
}
