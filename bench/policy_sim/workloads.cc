#include "bench/policy_sim/workloads.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "predictor/check.h"
#include "predictor/random.h"

namespace prewarm::sim {
namespace {

constexpr double kPi = 3.14159265358979323846;

double Normal(Rng& rng) {
  const double u1 = std::max(rng.Uniform(), 1e-12);
  const double u2 = rng.Uniform();
  return std::sqrt(-2 * std::log(u1)) * std::cos(2 * kPi * u2);
}

double Exponential(Rng& rng, double mean) {
  return -mean * std::log(std::max(1e-12, 1 - rng.Uniform()));
}

// How runs of one workflow arrive: the next start is the previous one plus `min_spacing` plus an
// exponential with mean `mean_extra`; a share of runs is scheduled (known `lead` ahead).
struct Arrivals {
  absl::Duration min_spacing = absl::Minutes(5);
  absl::Duration mean_extra = absl::Minutes(15);
  double scheduled_share = 0.5;
  absl::Duration lead = absl::Minutes(5);
  absl::Duration gap_min = absl::Milliseconds(500);
  absl::Duration gap_max = absl::Milliseconds(2500);
};

class Builder {
 public:
  Builder(std::string name, std::string description) {
    w_.name = std::move(name);
    w_.description = std::move(description);
  }

  int Service(const std::string& name, double cold_start_s, int concurrency = 1) {
    ServiceConfig c;
    c.name = name;
    c.cold_start = absl::Seconds(cold_start_s);
    c.concurrency = concurrency;
    w_.services.push_back(c);
    return static_cast<int>(w_.services.size()) - 1;
  }

  int Workflow(const std::string& id) {
    w_.workflows.push_back(WorkflowDef{id, {}});
    return static_cast<int>(w_.workflows.size()) - 1;
  }

  int Task(int wf, const std::string& id, int service, std::vector<int> parents,
           DurationModel model, double skip = 0) {
    std::vector<TaskDef>& tasks = w_.workflows[wf].tasks;
    for (int p : parents) PREWARM_CHECK(p < static_cast<int>(tasks.size()), "topological order");
    tasks.push_back(TaskDef{id, service, std::move(parents), skip, model});
    if (skip > 0) w_.has_skips = true;
    return static_cast<int>(tasks.size()) - 1;
  }

  // Draws the runs of every workflow and merges them by submit time.
  Workload Build(const WorkloadOptions& options, absl::Time epoch, const Arrivals& arrivals) {
    Rng rng(MixSeed(options.seed, SeedFromString(w_.name)));
    w_.gap_min = arrivals.gap_min;
    w_.gap_max = arrivals.gap_max;
    const int n = options.training_runs + options.measured_runs;
    for (int wf = 0; wf < static_cast<int>(w_.workflows.size()); ++wf) {
      absl::Time start = epoch + absl::Minutes(10);
      for (int i = 0; i < n; ++i) {
        if (i > 0) {
          start += arrivals.min_spacing +
                   absl::Seconds(Exponential(rng, absl::ToDoubleSeconds(arrivals.mean_extra)));
        } else {
          start += absl::Seconds(rng.Uniform() * absl::ToDoubleSeconds(arrivals.mean_extra));
        }
        w_.runs.push_back(DrawRun(wf, i, n, start, options.training_runs, arrivals, rng));
      }
    }
    std::stable_sort(w_.runs.begin(), w_.runs.end(),
                     [](const RunDef& a, const RunDef& b) { return a.submit < b.submit; });
    return std::move(w_);
  }

 private:
  RunDef DrawRun(int wf, int i, int n, absl::Time start, int training, const Arrivals& arrivals,
                 Rng& rng) {
    const WorkflowDef& def = w_.workflows[wf];
    RunDef r;
    r.run_id = absl::StrCat(def.id, "-", i);
    r.workflow = wf;
    r.start = start;
    r.scheduled = rng.Uniform() < arrivals.scheduled_share;
    r.submit = r.scheduled ? start - arrivals.lead : start;
    r.measured = i >= training;
    const double progress = n > 1 ? static_cast<double>(i) / (n - 1) : 0;
    r.progress = progress;
    const int tasks = static_cast<int>(def.tasks.size());
    r.duration.resize(tasks);
    r.gap.resize(tasks);
    r.skip_draw.resize(tasks);
    for (int v = 0; v < tasks; ++v) {
      r.duration[v] = absl::Seconds(def.tasks[v].duration.Seconds(Normal(rng), progress));
      const double u = rng.Uniform();
      r.gap[v] = def.tasks[v].parents.empty()
                     ? absl::ZeroDuration()
                     : arrivals.gap_min + (arrivals.gap_max - arrivals.gap_min) * u;
      r.skip_draw[v] = rng.Uniform() < def.tasks[v].skip_probability;
    }
    // The makespan with every service warm: what a perfect policy achieves.
    std::vector<absl::Duration> finish(tasks);
    std::vector<bool> skipped(tasks);
    absl::Duration makespan;
    for (int v = 0; v < tasks; ++v) {
      absl::Duration ready;
      bool all_parents_skipped = !def.tasks[v].parents.empty();
      for (int u : def.tasks[v].parents) {
        ready = std::max(ready, finish[u]);
        all_parents_skipped = all_parents_skipped && skipped[u];
      }
      skipped[v] = all_parents_skipped || r.skip_draw[v];
      finish[v] = skipped[v] ? ready : ready + r.gap[v] + r.duration[v];
      makespan = std::max(makespan, finish[v]);
    }
    r.ideal_makespan = makespan;
    return r;
  }

  Workload w_;
};

DurationModel Normal(double mean_s, double cv = 0.1, double drift_to = 1) {
  return DurationModel{false, mean_s, cv, drift_to};
}
DurationModel LogNormal(double median_s, double sigma) {
  return DurationModel{true, median_s, sigma, 1};
}

Workload SeedChain(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("seed_chain", "the seed paper's chain: 3 s -> 7 s -> 5 s, 1 s cold starts");
  const int wf = b.Workflow("seed");
  const int a = b.Task(wf, "a", b.Service("seed-a", 1), {}, Normal(3));
  const int t2 = b.Task(wf, "b", b.Service("seed-b", 1), {a}, Normal(7));
  b.Task(wf, "c", b.Service("seed-c", 1), {t2}, Normal(5));
  return b.Build(o, epoch, {});
}

Workload SeedFixed(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("seed_fixed",
            "the seed chain without noise: exactly 3 s -> 7 s -> 5 s, dispatch gaps exactly 1 s "
            "(only the cold start varies, +-15%)");
  const int wf = b.Workflow("fixed");
  const int a = b.Task(wf, "a", b.Service("fixed-a", 1), {}, Normal(3, 0));
  const int t2 = b.Task(wf, "b", b.Service("fixed-b", 1), {a}, Normal(7, 0));
  b.Task(wf, "c", b.Service("fixed-c", 1), {t2}, Normal(5, 0));
  Arrivals arrivals;
  arrivals.gap_min = arrivals.gap_max = absl::Seconds(1);
  return b.Build(o, epoch, arrivals);
}

Workload LongChain(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("long_chain",
            "5 tasks of 2-8 minutes (longer than the 60 s keep-alive), 3 s cold starts");
  const int wf = b.Workflow("long");
  const double minutes[] = {2, 5, 3, 8, 4};
  int previous = -1;
  for (int i = 0; i < 5; ++i) {
    const int s = b.Service(absl::StrCat("long-", i + 1), 3);
    previous = b.Task(wf, absl::StrCat("step", i + 1), s,
                      previous < 0 ? std::vector<int>{} : std::vector<int>{previous},
                      Normal(60 * minutes[i], 0.15));
  }
  Arrivals arrivals;
  arrivals.min_spacing = absl::Minutes(30);
  return b.Build(o, epoch, arrivals);
}

Workload FanOut(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("fan_out",
            "split (5 s) -> 8 parallel map tasks on one service (lognormal, median 30 s) -> "
            "reduce (10 s); cold starts 1/4/2 s, one request per container");
  const int wf = b.Workflow("fanout");
  const int split = b.Task(wf, "split", b.Service("fan-split", 1), {}, Normal(5));
  const int mapper = b.Service("fan-map", 4);
  std::vector<int> maps;
  for (int i = 0; i < 8; ++i) {
    maps.push_back(b.Task(wf, absl::StrCat("map", i), mapper, {split}, LogNormal(30, 0.3)));
  }
  b.Task(wf, "reduce", b.Service("fan-reduce", 2), maps, Normal(10));
  return b.Build(o, epoch, {});
}

Workload Branchy(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("branchy",
            "a router and three branches skipped with probability 0.3 / 0.7 / 0.9, joined by a "
            "publish task; 2 s cold starts");
  const int wf = b.Workflow("branchy");
  const int route = b.Task(wf, "route", b.Service("br-route", 2), {}, Normal(4));
  const int b1a = b.Task(wf, "b1a", b.Service("br-1a", 2), {route}, Normal(10), 0.3);
  const int b1b = b.Task(wf, "b1b", b.Service("br-1b", 2), {b1a}, Normal(6));
  const int b2a = b.Task(wf, "b2a", b.Service("br-2a", 2), {route}, Normal(15), 0.7);
  const int b2b = b.Task(wf, "b2b", b.Service("br-2b", 2), {b2a}, Normal(5));
  const int b3a = b.Task(wf, "b3a", b.Service("br-3a", 2), {route}, Normal(8), 0.9);
  b.Task(wf, "publish", b.Service("br-publish", 2), {b1b, b2b, b3a}, Normal(3));
  return b.Build(o, epoch, {});
}

Workload HeavyTail(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("heavy_tail",
            "diamond with lognormal durations, sigma 1 (medians 10/20/20/5 s; p99 about 10x the "
            "median); 2 s cold starts");
  const int wf = b.Workflow("heavy");
  const int a = b.Task(wf, "a", b.Service("ht-a", 2), {}, LogNormal(10, 1));
  const int x = b.Task(wf, "b", b.Service("ht-b", 2), {a}, LogNormal(20, 1));
  const int y = b.Task(wf, "c", b.Service("ht-c", 2), {a}, LogNormal(20, 1));
  b.Task(wf, "d", b.Service("ht-d", 2), {x, y}, LogNormal(5, 1));
  return b.Build(o, epoch, {});
}

Workload Drift(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("drift",
            "chain 20/40/30/15 s whose durations grow linearly to 2.5x over the runs; 2 s cold "
            "starts");
  const int wf = b.Workflow("drift");
  const double means[] = {20, 40, 30, 15};
  int previous = -1;
  for (int i = 0; i < 4; ++i) {
    previous = b.Task(wf, absl::StrCat("t", i + 1), b.Service(absl::StrCat("drift-", i + 1), 2),
                      previous < 0 ? std::vector<int>{} : std::vector<int>{previous},
                      Normal(means[i], 0.1, 2.5));
  }
  return b.Build(o, epoch, {});
}

Workload Concurrent(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("concurrent",
            "3 workflows sharing 5 services, runs arriving every 30 s on average (overlapping), "
            "cold starts 1-4 s, one request per container");
  const int p1 = b.Service("pool-1", 1), p2 = b.Service("pool-2", 2), p3 = b.Service("pool-3", 3),
            p4 = b.Service("pool-4", 1.5), p5 = b.Service("pool-5", 4);
  {
    const int wf = b.Workflow("etl");
    const int a = b.Task(wf, "extract", p1, {}, Normal(10, 0.2));
    const int t = b.Task(wf, "transform", p2, {a}, Normal(30, 0.2));
    const int l = b.Task(wf, "load", p3, {t}, Normal(20, 0.2));
    b.Task(wf, "notify", p4, {l}, Normal(5, 0.2));
  }
  {
    const int wf = b.Workflow("ml");
    const int f = b.Task(wf, "features", p2, {}, Normal(20, 0.2));
    const int t = b.Task(wf, "train", p3, {f}, Normal(60, 0.2));
    const int e = b.Task(wf, "eval", p5, {f}, Normal(40, 0.2));
    b.Task(wf, "register", p1, {t, e}, Normal(10, 0.2));
  }
  {
    const int wf = b.Workflow("report");
    const int q = b.Task(wf, "query", p1, {}, Normal(5, 0.2));
    const int g = b.Task(wf, "aggregate", p4, {q}, Normal(15, 0.2));
    const int r = b.Task(wf, "render", p5, {g}, Normal(25, 0.2));
    b.Task(wf, "send", p2, {r}, Normal(10, 0.2));
  }
  Arrivals arrivals;
  arrivals.min_spacing = absl::ZeroDuration();
  arrivals.mean_extra = absl::Seconds(90);  // per workflow: 30 s between runs overall
  return b.Build(o, epoch, arrivals);
}

Workload ColdRange(const WorkloadOptions& o, absl::Time epoch) {
  Builder b("cold_range", "chain of 6 services with cold starts 0.2, 0.5, 1, 2, 5 and 10 s");
  const int wf = b.Workflow("coldrange");
  const double cold[] = {0.2, 0.5, 1, 2, 5, 10};
  const double means[] = {15, 10, 20, 12, 25, 8};
  int previous = -1;
  for (int i = 0; i < 6; ++i) {
    previous = b.Task(wf, absl::StrCat("t", i + 1), b.Service(absl::StrCat("cr-", i + 1), cold[i]),
                      previous < 0 ? std::vector<int>{} : std::vector<int>{previous},
                      Normal(means[i], 0.15));
  }
  return b.Build(o, epoch, {});
}

}  // namespace

double DurationModel::Seconds(double z, double progress) const {
  const double factor = 1 + (drift_to - 1) * progress;
  const double seconds =
      lognormal ? center_s * std::exp(spread * z) : center_s * std::max(0.2, 1 + spread * z);
  return seconds * factor;
}

double StandardNormal(Rng& rng) { return Normal(rng); }

std::vector<std::string> WorkloadNames() {
  return {"seed_chain", "seed_fixed", "long_chain", "fan_out",   "branchy",
          "heavy_tail", "drift",      "concurrent", "cold_range"};
}

Workload MakeWorkload(const std::string& name, const WorkloadOptions& options, absl::Time start) {
  if (name == "seed_chain") return SeedChain(options, start);
  if (name == "seed_fixed") return SeedFixed(options, start);
  if (name == "long_chain") return LongChain(options, start);
  if (name == "fan_out") return FanOut(options, start);
  if (name == "branchy") return Branchy(options, start);
  if (name == "heavy_tail") return HeavyTail(options, start);
  if (name == "drift") return Drift(options, start);
  if (name == "concurrent") return Concurrent(options, start);
  if (name == "cold_range") return ColdRange(options, start);
  PREWARM_CHECK(false, "unknown workload");
  return {};
}

}  // namespace prewarm::sim
