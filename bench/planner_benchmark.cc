// Planning cost against DAG size, memory per active run, and memory per history key.
//
// Reproduce: cmake --build build --target planner_benchmark &&
//            build/bench/planner_benchmark --benchmark_counters_tabular=true
// Arguments: tasks, delay_cost_ratio (20, 200) and lazy planning (1: the default, 0: eager).
//
// Targets (issue 13, one core): 1,000 tasks under 5 ms, 10,000 under 60 ms at the default 128
// samples; 10,000 active runs of 100 tasks in 1 GiB (BM_ActiveRuns: heap bytes per run and the
// process RSS with all of them held). Every task has a full 128-sample duration window; 50
// services with learned cold starts. On a shared machine compare CPU time, not wall time, and
// against a baseline binary run in the same minutes.
#include <malloc.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "predictor/dag.h"
#include "predictor/history.h"
#include "predictor/planner.h"
#include "predictor/random.h"

namespace prewarm {
namespace {

constexpr int kServices = 50;

std::string ServiceOf(int i) { return absl::StrCat("svc-", i % kServices); }

// A chain: t0 -> t1 -> ... -> t(n-1).
std::vector<TaskSpec> Chain(int n) {
  std::vector<TaskSpec> tasks(n);
  for (int i = 0; i < n; ++i) {
    tasks[i].task_id = absl::StrCat("t", i);
    tasks[i].service = ServiceOf(i);
    if (i > 0) tasks[i].upstream_task_ids.push_back(absl::StrCat("t", i - 1));
  }
  return tasks;
}

// Random layered DAG: layers of ~sqrt(n) tasks, each with 1-3 parents in the layer above.
std::vector<TaskSpec> Layered(int n, uint64_t seed) {
  Rng rng(seed);
  const int width = std::max(1, static_cast<int>(std::sqrt(n)));
  std::vector<TaskSpec> tasks(n);
  for (int i = 0; i < n; ++i) {
    tasks[i].task_id = absl::StrCat("t", i);
    tasks[i].service = ServiceOf(i);
    const int layer = i / width;
    if (layer == 0) continue;
    const int parents = 1 + static_cast<int>(rng.Below(3));
    for (int k = 0; k < parents; ++k) {
      const int p = (layer - 1) * width + static_cast<int>(rng.Below(width));
      const std::string id = absl::StrCat("t", p);
      auto& up = tasks[i].upstream_task_ids;
      if (std::find(up.begin(), up.end(), id) == up.end()) up.push_back(id);
    }
  }
  return tasks;
}

History LearnedHistory(const std::vector<TaskSpec>& tasks) {
  History history;
  Rng rng(99);
  for (const TaskSpec& t : tasks) {
    const double median = 1 + 30 * rng.Uniform();
    for (int i = 0; i < 128; ++i) {
      // Lognormal-ish: median * exp(0.3 * z), z from a sum of uniforms.
      const double z = (rng.Uniform() + rng.Uniform() + rng.Uniform() - 1.5) * 2;
      history.AddTaskDuration("wf", t.task_id, t.service,
                              absl::Seconds(median * std::exp(0.3 * z)));
    }
  }
  for (int s = 0; s < kServices; ++s) {
    for (int i = 0; i < 128; ++i) {
      history.AddColdStart(absl::StrCat("svc-", s), absl::Seconds(0.5 + rng.Uniform()));
    }
  }
  return history;
}

struct Fixture {
  std::shared_ptr<const Dag> dag;
  History history;
  RunModel model;
};

Fixture Make(int n, bool chain) {
  std::vector<TaskSpec> tasks = chain ? Chain(n) : Layered(n, 7);
  Fixture f{nullptr, LearnedHistory(tasks), {}};
  f.dag = std::make_shared<const Dag>(*Dag::Build(std::move(tasks)));
  f.model = BuildRunModel(*f.dag, "wf", f.history, [](absl::string_view) {
    return ServiceInfo{.warmable = true, .keep_alive = absl::Seconds(60)};
  });
  return f;
}

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

// Planner options of the benchmark's arguments: range(1) the delay_cost_ratio, range(2) 1 for
// lazy planning (the default), 0 for eager.
PlannerOptions OptionsOf(const benchmark::State& state) {
  PlannerOptions options;
  options.delay_cost_ratio = static_cast<double>(state.range(1));
  options.lazy_planning = state.range(2) != 0;
  return options;
}

void BM_Plan(benchmark::State& state, bool chain) {
  Fixture f = Make(static_cast<int>(state.range(0)), chain);
  const PlannerOptions options = OptionsOf(state);
  size_t bytes = 0;
  int deferred = 0;
  for (auto _ : state) {
    RunPlanner planner(f.dag, f.model, kStart, 1, options);
    planner.PlanAll(kStart);
    bytes = planner.MemoryBytes();
    benchmark::DoNotOptimize(planner.plan(f.dag->size() - 1));
    state.PauseTiming();
    deferred = 0;
    for (int v = 0; v < f.dag->size(); ++v) {
      deferred += planner.plan(v).decision == WarmupDecision::kDeferred;
    }
    state.ResumeTiming();
  }
  state.counters["tasks"] = static_cast<double>(f.dag->size());
  state.counters["deferred"] = deferred;
  state.counters["bytes_per_run"] = static_cast<double>(bytes);
}

// What a Prewarm answer costs the planner: the first plan, then every task's plan read (as
// PlanProto reads them), start quantiles included (found when a plan is read).
void BM_PlanAndShow(benchmark::State& state, bool chain) {
  Fixture f = Make(static_cast<int>(state.range(0)), chain);
  const PlannerOptions options = OptionsOf(state);
  for (auto _ : state) {
    RunPlanner planner(f.dag, f.model, kStart, 1, options);
    planner.PlanAll(kStart);
    for (int v = 0; v < f.dag->size(); ++v) benchmark::DoNotOptimize(planner.plan(v));
  }
  state.counters["tasks"] = static_cast<double>(f.dag->size());
}

// The whole run's planning work with lazy planning: the first plan, then every deferred decision
// at the time it is due (what the server's timer does), until none is left. With eager planning
// (lazy:0) only the first plan. Lazy planning moves work later; this is its total.
void BM_PlanAndDecideAll(benchmark::State& state, bool chain) {
  Fixture f = Make(static_cast<int>(state.range(0)), chain);
  const PlannerOptions options = OptionsOf(state);
  int calls = 0;
  for (auto _ : state) {
    RunPlanner planner(f.dag, f.model, kStart, 1, options);
    planner.PlanAll(kStart);
    calls = 0;
    for (absl::Time t = planner.NextDeferredPlan(); t != absl::InfiniteFuture();
         t = planner.NextDeferredPlan()) {
      planner.PlanDeferred(t);
      ++calls;
    }
    benchmark::DoNotOptimize(planner.plan(f.dag->size() - 1));
  }
  state.counters["deferred_plans"] = calls;
}

// One event in the middle of the DAG: re-plans that task and its descendants only.
void BM_ReplanAfterEvent(benchmark::State& state, bool chain) {
  Fixture f = Make(static_cast<int>(state.range(0)), chain);
  RunPlanner planner(f.dag, f.model, kStart, 1, OptionsOf(state));
  planner.PlanAll(kStart);
  const int task = f.dag->size() / 2;
  size_t touched = 0;
  for (auto _ : state) {
    // Re-reporting a start is allowed (the latest wins), so the same event can repeat.
    auto result = planner.Started(task, kStart + absl::Seconds(10), kStart + absl::Seconds(10));
    touched = result->size();
  }
  state.counters["replanned_tasks"] = static_cast<double>(touched);
}

// VmRSS of this process, in bytes (0 where /proc is missing).
double RssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return 1024.0 * std::atof(line.c_str() + 6);
  }
  return 0;
}

// What the server keeps of the plan of each active run (server/run_registry.h, Run): the run's
// own Dag, its RunModel (snapshotted from one shared History, as BuildRun does) and its planned
// RunPlanner. state.range(0) runs of one 100-task layered workflow are held at once; reports the
// heap bytes per run and the process RSS with all of them alive (target: 10,000 runs in 1 GiB).
void BM_ActiveRuns(benchmark::State& state) {
  const int runs = static_cast<int>(state.range(0));
  PlannerOptions options;
  options.lazy_planning = state.range(1) != 0;
  const std::vector<TaskSpec> specs = Layered(100, 7);
  const History history = LearnedHistory(specs);
  const auto services = [](absl::string_view) {
    return ServiceInfo{.warmable = true, .keep_alive = absl::Seconds(60)};
  };
  struct Held {
    std::shared_ptr<const Dag> dag;
    std::unique_ptr<RunPlanner> planner;
  };
  for (auto _ : state) {
    malloc_trim(0);
    const size_t heap_before = mallinfo2().uordblks;
    const double rss_before = RssBytes();
    std::vector<Held> held;
    held.reserve(runs);
    size_t planner_bytes = 0;
    for (int r = 0; r < runs; ++r) {
      auto dag = std::make_shared<const Dag>(*Dag::Build(specs));
      RunModel model = BuildRunModel(*dag, "wf", history, services);
      auto planner = std::make_unique<RunPlanner>(dag, std::move(model), kStart, r, options);
      planner->PlanAll(kStart);
      planner_bytes += planner->MemoryBytes();
      held.push_back({std::move(dag), std::move(planner)});
    }
    const double heap = static_cast<double>(mallinfo2().uordblks - heap_before);
    state.counters["heap_bytes_per_run"] = heap / runs;
    state.counters["planner_bytes_per_run"] = static_cast<double>(planner_bytes) / runs;
    state.counters["rss_delta_MiB"] = (RssBytes() - rss_before) / (1 << 20);
    state.counters["rss_MiB"] = RssBytes() / (1 << 20);
    benchmark::DoNotOptimize(held);
  }
  state.counters["runs"] = runs;
}

void BM_HistoryMemoryPerKey(benchmark::State& state) {
  const int keys = static_cast<int>(state.range(0));
  double per_key = 0;
  for (auto _ : state) {
    const size_t before = mallinfo2().uordblks;
    auto history = std::make_unique<History>();
    for (int k = 0; k < keys; ++k) {
      const std::string task = absl::StrCat("extract_customer_orders_", k);
      for (int i = 0; i < 200; ++i)
        history->AddTaskDuration("nightly_etl", task, "", absl::Seconds(i));
    }
    per_key = static_cast<double>(mallinfo2().uordblks - before) / keys;
    benchmark::DoNotOptimize(history);
  }
  state.counters["bytes_per_key"] = per_key;
}

// DAGs of 10 to 10,000 tasks, at delay_cost_ratio 20 and 200 (the default), lazy and eager.
void DagSizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"tasks", "ratio", "lazy"})
      ->ArgsProduct({{10, 100, 1'000, 10'000}, {20, 200}, {1, 0}})
      ->Unit(benchmark::kMillisecond);
}

// At the default delay_cost_ratio only.
void ShownDagSizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"tasks", "ratio", "lazy"})
      ->ArgsProduct({{10, 100, 1'000, 10'000}, {200}, {1, 0}})
      ->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_Plan, chain, true)->Apply(DagSizes);
BENCHMARK_CAPTURE(BM_Plan, layered, false)->Apply(DagSizes);
BENCHMARK_CAPTURE(BM_PlanAndShow, chain, true)->Apply(ShownDagSizes);
BENCHMARK_CAPTURE(BM_PlanAndShow, layered, false)->Apply(ShownDagSizes);
BENCHMARK_CAPTURE(BM_PlanAndDecideAll, chain, true)->Apply(DagSizes);
BENCHMARK_CAPTURE(BM_PlanAndDecideAll, layered, false)->Apply(DagSizes);
BENCHMARK_CAPTURE(BM_ReplanAfterEvent, chain, true)->Apply(DagSizes);
BENCHMARK_CAPTURE(BM_ReplanAfterEvent, layered, false)->Apply(DagSizes);
BENCHMARK(BM_ActiveRuns)
    ->ArgNames({"runs", "lazy"})
    ->Args({10'000, 1})
    ->Args({10'000, 0})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HistoryMemoryPerKey)->Arg(10'000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace prewarm

BENCHMARK_MAIN();
