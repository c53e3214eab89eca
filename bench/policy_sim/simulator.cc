#include "bench/policy_sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/policy_sim/platform.h"
#include "predictor/check.h"
#include "predictor/random.h"
#include "server/delegated_warmups.h"
#include "server/history_store.h"
#include "server/http_warmer.h"
#include "server/metrics.h"
#include "server/proto_time.h"
#include "server/run_registry.h"
#include "server/service_registry.h"
#include "server/timer_queue.h"
#include "server/url_allowlist.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/in_memory_history_store.h"

namespace prewarm::sim {

std::string PolicySpec::Name() const {
  switch (kind) {
    case PolicyKind::kNone:
      return "none";
    case PolicyKind::kEager:
      return "eager";
    case PolicyKind::kLookahead:
      return "lookahead";
    case PolicyKind::kPinger:
      return "pinger";
    case PolicyKind::kAlwaysOn:
      return "always_on";
    case PolicyKind::kHistogram:
      return "histogram";
    case PolicyKind::kPrewarm:
      return absl::StrFormat("prewarm(a/b=%g)", delay_cost_ratio);
    case PolicyKind::kOracle:
      return "oracle95";
  }
  return "unknown";
}

std::vector<PolicySpec> AllPolicies(const std::vector<double>& ratios) {
  std::vector<PolicySpec> out = {{PolicyKind::kNone},      {PolicyKind::kEager},
                                 {PolicyKind::kLookahead}, {PolicyKind::kPinger},
                                 {PolicyKind::kAlwaysOn},  {PolicyKind::kHistogram},
                                 {PolicyKind::kOracle}};
  for (double r : ratios) out.push_back({PolicyKind::kPrewarm, r});
  return out;
}

bool ParsePolicy(const std::string& name, const std::vector<double>& ratios,
                 std::vector<PolicySpec>* out) {
  static const std::pair<const char*, PolicyKind> kNames[] = {
      {"none", PolicyKind::kNone},           {"eager", PolicyKind::kEager},
      {"lookahead", PolicyKind::kLookahead}, {"pinger", PolicyKind::kPinger},
      {"always_on", PolicyKind::kAlwaysOn},  {"histogram", PolicyKind::kHistogram},
      {"oracle95", PolicyKind::kOracle}};
  for (const auto& [n, kind] : kNames) {
    if (name == n) {
      out->push_back({kind});
      return true;
    }
  }
  if (name == "prewarm") {
    for (double r : ratios) out->push_back({PolicyKind::kPrewarm, r});
    return true;
  }
  double ratio = 0;
  if (absl::StartsWith(name, "prewarm:") && absl::SimpleAtod(name.substr(8), &ratio) && ratio > 0) {
    out->push_back({PolicyKind::kPrewarm, ratio});
    return true;
  }
  return false;
}

namespace {

absl::Time Epoch() { return absl::FromUnixSeconds(1'700'000'000); }

// A task that waited longer than this for a container paid a cold start (the registry's default
// warm-latency threshold); shorter waits (queued behind a 5 ms warm-up) still count as delay.
constexpr absl::Duration kColdThreshold = absl::Milliseconds(50);

std::string WarmupUrl(const std::string& service) {
  return absl::StrCat("http://", service, ".sim.svc.cluster.local/warmup");
}

// The simulated platform behind prewarm's HttpWarmer interface: a warm-up to a cold service
// answers after the service's cold start, to a warm one after a few milliseconds, both in
// simulated time (the result arrives through the simulator's event queue, on its only thread).
class SimWarmer final : public HttpWarmer {
 public:
  SimWarmer(Platform& platform, absl::flat_hash_map<std::string, int> services)
      : platform_(platform), services_(std::move(services)) {}

  void Fire(WarmupRequest request, std::function<void(const WarmupResult&)> done) override {
    WarmupResult result;
    result.id = request.id;
    auto it = services_.find(request.url);
    if (it == services_.end()) {
      result.error = "unknown url";
      done(result);
      return;
    }
    ++in_flight_;
    platform_.Warmup(it->second,
                     [this, result, done = std::move(done)](absl::Duration latency) mutable {
                       --in_flight_;
                       result.success = true;
                       result.http_status = 200;
                       result.attempts = 1;
                       result.latency = latency;
                       result.total_time = latency;
                       done(result);
                     });
  }
  int in_flight() const override { return in_flight_; }
  void Shutdown() override {}

 private:
  Platform& platform_;
  absl::flat_hash_map<std::string, int> services_;  // by warm-up URL
  int in_flight_ = 0;
};

class Simulation;

// A warm-up policy: hooks the simulator calls. The prewarm policy does almost nothing here: the
// RunRegistry plans and fires on its own.
class Policy {
 public:
  explicit Policy(Simulation& sim) : sim_(sim) {}
  virtual ~Policy() = default;
  virtual void Start() {}
  // A run was submitted to the registry, which answered with `plan`.
  virtual void OnSubmit(int run, const v1::RunPlan& plan) {}
  virtual void OnRunStart(int run) {}
  // A task's request reached service `s` / its request ended.
  virtual void OnInvoke(int s) {}
  virtual void OnInvokeDone(int s) {}
  // Task `v` of run `r` was dispatched (started) / finished or was skipped.
  virtual void OnTaskStarted(int r, int v) {}
  virtual void OnTaskTerminal(int r, int v) {}

 protected:
  Simulation& sim_;
};

class Simulation {
 public:
  Simulation(const Workload& workload, const PolicySpec& spec, const SimOptions& options);
  SimResult Run();

  absl::Time Now() const { return clock_.Now(); }
  EventQueue& events() { return events_; }
  Platform& platform() { return platform_; }
  RunRegistry& registry() { return *registry_; }
  const Workload& workload() const { return workload_; }
  const RunDef& run(int r) const { return workload_.runs[r]; }
  const WorkflowDef& workflow_of(int r) const { return workload_.workflows[run(r).workflow]; }
  // A warm-up fired by a baseline policy (nobody waits for its answer).
  void WarmUp(int s) {
    platform_.Warmup(s, [](absl::Duration) {});
  }
  bool Hideable(int r, int v) const {
    return run(r).scheduled || !workflow_of(r).tasks[v].parents.empty();
  }
  // The index of `task_id` in the run's workflow, -1 if none.
  int TaskIndex(int r, const std::string& task_id) const;
  const std::vector<int>& children(int r, int v) const { return children_[run(r).workflow][v]; }

  struct RunState {
    std::vector<int> pending_parents;
    std::vector<bool> terminal;
    std::vector<bool> skipped;
    std::vector<absl::Duration> waited;
    std::vector<absl::Time> started;  // dispatch time; InfinitePast until dispatched
    std::vector<absl::Time> ended;    // finish or skip time
    // The registry's last decision for each task while it was pending (for traces).
    std::vector<v1::WarmupDecision> decision;
    int remaining = 0;
  };
  const RunState& state(int r) const { return runs_[r]; }

 private:
  void Submit(int r);
  void StartRun(int r);
  void Ready(int r, int v);
  void Dispatch(int r, int v);
  void Finished(int r, int v);
  void Complete(int r, int v);
  void RunFinished(int r);
  void Report(int r, int v, v1::TaskEventType event, std::optional<absl::Duration> waited = {});
  void Error(const absl::Status& status, absl::string_view what);
  // Remembers the decisions of the tasks still pending in `plans`.
  template <typename Plans>
  void NoteDecisions(int r, const Plans& plans);
  std::unique_ptr<Policy> MakePolicy();

  const Workload& workload_;
  const PolicySpec spec_;
  const SimOptions options_;
  std::vector<std::vector<std::vector<int>>> children_;  // [workflow][task]
  FakeClock clock_{Epoch()};
  EventQueue events_;
  Platform platform_;
  TimerQueue timers_{clock_};
  ServiceRegistry services_{UrlAllowlist::Default(), ServiceDefaults{}};
  DelegatedWarmups delegated_;
  std::unique_ptr<HistoryStore> store_ = NewInMemoryHistoryStore();
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<SimWarmer> warmer_;
  std::unique_ptr<RunRegistry> registry_;  // after everything it uses: destroyed first
  std::unique_ptr<Policy> policy_;
  std::vector<RunState> runs_;
  int runs_left_ = 0;
  SimResult result_;
};

// ---------------------------------------------------------------------------------------------
// The baselines.

// The seed paper: when a run starts, warm the service of every downstream task (one warm-up per
// task, so that parallel tasks on one service each get a container).
class EagerPolicy final : public Policy {
 public:
  using Policy::Policy;
  void OnRunStart(int r) override {
    const WorkflowDef& wf = sim_.workflow_of(r);
    for (const TaskDef& t : wf.tasks) {
      if (!t.parents.empty()) sim_.WarmUp(t.service);
    }
  }
};

// ORION-like fixed look-ahead: at submission, warm each task at its mean expected start minus
// the mean cold start, both from the registry's plan (the same learned history prewarm uses);
// never moved afterwards. Roots of runs that start at once cannot be helped.
class LookaheadPolicy final : public Policy {
 public:
  using Policy::Policy;
  void OnSubmit(int r, const v1::RunPlan& plan) override {
    for (const v1::TaskPlan& t : plan.tasks()) {
      const int v = sim_.TaskIndex(r, t.task_id());
      if (v < 0 || !sim_.Hideable(r, v)) continue;
      const absl::Time start = FromProto(t.expected_start_time(), "").value_or(sim_.Now());
      const absl::Duration cold = FromProto(t.expected_cold_start(), "").value_or(absl::Seconds(2));
      const int s = sim_.workflow_of(r).tasks[v].service;
      sim_.events().At(std::max(sim_.Now(), start - cold), [this, s] { sim_.WarmUp(s); });
    }
  }
};

// serverless-plugin-warmup: every 5 minutes, one warm-up to every service.
class PingerPolicy final : public Policy {
 public:
  using Policy::Policy;
  void Start() override { Ping(); }

 private:
  void Ping() {
    for (int s = 0; s < sim_.platform().service_count(); ++s) sim_.WarmUp(s);
    sim_.events().At(sim_.Now() + absl::Minutes(5), [this] { Ping(); });
  }
};

// Knative min-scale 1 / Lambda provisioned concurrency 1: one container per service, always.
class AlwaysOnPolicy final : public Policy {
 public:
  using Policy::Policy;
  void Start() override {
    for (int s = 0; s < sim_.platform().service_count(); ++s) sim_.platform().Pin(s);
  }
};

// Serverless in the Wild (ATC '20), hybrid histogram policy, per service: the idle times between
// one invocation's end and the next one's start feed a histogram; once it holds enough samples,
// after each invocation the service is unloaded and pre-warmed at the 5th percentile of idle time
// (minus a 10% margin) and kept alive until the 99th (plus 10%). When the pre-warm point falls
// inside the platform's own keep-alive, the container just stays (keep-alive to the 99th). With
// too few samples the platform's default keep-alive applies. (Simplified: no ARIMA for
// out-of-range idle times, no coefficient-of-variation test.)
class HistogramPolicy final : public Policy {
 public:
  explicit HistogramPolicy(Simulation& sim) : Policy(sim), state_(sim.platform().service_count()) {}

  void OnInvoke(int s) override {
    State& st = state_[s];
    if (st.active == 0 && st.last_end != absl::InfinitePast()) {
      st.idle_times.push_back(absl::ToDoubleSeconds(sim_.Now() - st.last_end));
      if (st.idle_times.size() > kWindow) st.idle_times.erase(st.idle_times.begin());
    }
    ++st.generation;  // A pending pre-warm is moot.
    ++st.active;
  }

  void OnInvokeDone(int s) override {
    State& st = state_[s];
    if (--st.active > 0) return;
    st.last_end = sim_.Now();
    if (st.idle_times.size() < kMinSamples) return;
    std::vector<double> sorted = st.idle_times;
    std::sort(sorted.begin(), sorted.end());
    auto quantile = [&](double q) { return sorted[static_cast<size_t>(q * (sorted.size() - 1))]; };
    const absl::Duration prewarm = absl::Seconds(0.9 * quantile(0.05));
    const absl::Duration keep = absl::Seconds(1.1 * quantile(0.99));
    Platform& platform = sim_.platform();
    platform.SetKeepUntil(s, sim_.Now() + keep);
    if (prewarm > platform.config(s).keep_alive) {
      platform.ReleaseIdle(s);
      const uint64_t generation = st.generation;
      sim_.events().At(sim_.Now() + prewarm, [this, s, generation] {
        if (state_[s].generation == generation) sim_.WarmUp(s);
      });
    }
  }

 private:
  static constexpr size_t kWindow = 200;
  static constexpr size_t kMinSamples = 10;
  struct State {
    int active = 0;
    absl::Time last_end = absl::InfinitePast();
    std::vector<double> idle_times;
    uint64_t generation = 0;
  };
  std::vector<State> state_;
};

// prewarm: the services are registered as managed warm-up targets; the registry plans each run
// and fires warm-ups through SimWarmer on its own timers.
class PrewarmPolicy final : public Policy {
 public:
  using Policy::Policy;
  void Start() override {
    for (int s = 0; s < sim_.platform().service_count(); ++s) {
      const ServiceConfig& c = sim_.platform().config(s);
      v1::Service service;
      service.set_name(c.name);
      service.set_warmup_url(WarmupUrl(c.name));
      service.set_mode(v1::WARMUP_MODE_MANAGED);
      *service.mutable_keep_alive() = ToProtoDuration(c.keep_alive);
      service.set_container_concurrency(c.concurrency);
      sim_.registry().RegisterService(service, [](absl::StatusOr<v1::RegisterServiceResponse> r) {
        PREWARM_CHECK(r.ok(), "RegisterService");
      });
    }
  }
};

// The reference policy (see PolicyKind::kOracle). It uses the workload's true distributions, not
// the registry, and the same information prewarm gets: which tasks have started and finished.
class OraclePolicy final : public Policy {
 public:
  explicit OraclePolicy(Simulation& sim) : Policy(sim), rng_(0x0c1e) {}

  void OnSubmit(int r, const v1::RunPlan&) override {
    if (!sim_.run(r).scheduled) return;
    const WorkflowDef& wf = sim_.workflow_of(r);
    for (int v = 0; v < static_cast<int>(wf.tasks.size()); ++v) {
      if (!wf.tasks[v].parents.empty()) continue;
      std::vector<double> x(kSamples);
      for (double& xi : x) xi = Rel(sim_.run(r).start) - ColdStart(wf.tasks[v].service);
      Plan(r, v, std::move(x));
    }
  }
  void OnTaskStarted(int r, int v) override {
    tasks_[Key(r, v)].done = true;
    for (int c : sim_.children(r, v)) MaybePlan(r, c);
  }
  void OnTaskTerminal(int r, int v) override {
    tasks_[Key(r, v)].done = true;
    for (int c : sim_.children(r, v)) MaybePlan(r, c);
  }

 private:
  static constexpr int kSamples = 400;
  struct Task {
    bool planned = false;
    bool done = false;  // started or skipped: no more warm-ups
  };
  static int64_t Key(int r, int v) { return (static_cast<int64_t>(r) << 16) | v; }
  static double Rel(absl::Time t) { return absl::ToDoubleSeconds(t - Epoch()); }
  double ColdStart(int s) {
    const ServiceConfig& c = sim_.platform().config(s);
    const double j = c.cold_start_jitter;
    return absl::ToDoubleSeconds(c.cold_start) * (1 - j + 2 * j * rng_.Uniform());
  }
  double Gap() {
    const Workload& w = sim_.workload();
    return absl::ToDoubleSeconds(w.gap_min) +
           absl::ToDoubleSeconds(w.gap_max - w.gap_min) * rng_.Uniform();
  }

  // Plans task `v` once every parent has started or ended (and not all were skipped).
  void MaybePlan(int r, int v) {
    Task& t = tasks_[Key(r, v)];
    if (t.planned || t.done) return;
    const TaskDef& def = sim_.workflow_of(r).tasks[v];
    const Simulation::RunState& st = sim_.state(r);
    bool any_ran = false;
    for (int u : def.parents) {
      if (st.started[u] == absl::InfinitePast() && !st.terminal[u]) return;
      any_ran = any_ran || !st.skipped[u];
    }
    if (!any_ran) return;
    const double now = Rel(sim_.Now());
    std::vector<double> x(kSamples);
    for (double& xi : x) {
      double ready = 0;
      for (int u : def.parents) {
        double finish;
        if (st.terminal[u]) {
          finish = Rel(st.ended[u]);
        } else {
          // Running since its start: its duration, conditioned on having run this long.
          const double started = Rel(st.started[u]);
          const double elapsed = now - started;
          const DurationModel& m = sim_.workflow_of(r).tasks[u].duration;
          double d = elapsed;
          for (int attempt = 0; attempt < 1000; ++attempt) {
            const double draw = m.Seconds(StandardNormal(rng_), sim_.run(r).progress);
            if (draw >= elapsed) {
              d = draw;
              break;
            }
          }
          finish = started + d;
        }
        ready = std::max(ready, finish);
      }
      xi = ready + Gap() - ColdStart(def.service);
    }
    Plan(r, v, std::move(x));
  }

  void Plan(int r, int v, std::vector<double> x) {
    tasks_[Key(r, v)].planned = true;
    std::sort(x.begin(), x.end());
    const double fire_at = x[static_cast<size_t>(0.05 * (x.size() - 1))];
    const absl::Time at = std::max(sim_.Now(), Epoch() + absl::Seconds(fire_at));
    sim_.events().At(at, [this, r, v] { Fire(r, v); });
  }

  void Fire(int r, int v) {
    if (tasks_[Key(r, v)].done) return;
    const int s = sim_.workflow_of(r).tasks[v].service;
    sim_.WarmUp(s);
    const ServiceConfig& c = sim_.platform().config(s);
    // Once the container is surely ready, and before the platform reclaims it.
    const absl::Duration first =
        c.cold_start * (1 - c.cold_start_jitter) + c.keep_alive - absl::Seconds(1);
    sim_.events().At(sim_.Now() + first, [this, r, v] { Refresh(r, v); });
  }

  void Refresh(int r, int v) {
    if (tasks_[Key(r, v)].done) return;
    const int s = sim_.workflow_of(r).tasks[v].service;
    sim_.WarmUp(s);
    sim_.events().At(sim_.Now() + sim_.platform().config(s).keep_alive - absl::Seconds(1),
                     [this, r, v] { Refresh(r, v); });
  }

  Rng rng_;
  absl::flat_hash_map<int64_t, Task> tasks_;
};

// ---------------------------------------------------------------------------------------------

Simulation::Simulation(const Workload& workload, const PolicySpec& spec, const SimOptions& options)
    : workload_(workload),
      spec_(spec),
      options_(options),
      platform_(events_, clock_, workload.services, MixSeed(SeedFromString(workload.name), 7),
                options.platform) {
  for (const WorkflowDef& wf : workload_.workflows) {
    std::vector<std::vector<int>> children(wf.tasks.size());
    for (int v = 0; v < static_cast<int>(wf.tasks.size()); ++v) {
      for (int u : wf.tasks[v].parents) children[u].push_back(v);
    }
    children_.push_back(std::move(children));
  }
  metrics_ = Metrics::Create({.listen_address = ""}).value();
  absl::flat_hash_map<std::string, int> urls;
  for (int s = 0; s < platform_.service_count(); ++s) urls[WarmupUrl(platform_.config(s).name)] = s;
  warmer_ = std::make_unique<SimWarmer>(platform_, std::move(urls));
  RunRegistryOptions registry_options;
  registry_options.max_active_runs = 100'000;
  // The look-ahead baseline reads every task's expected start from the plan at submission: it
  // gets eager plans (a deferred task shows only its earliest start).
  registry_options.planner.lazy_planning =
      options_.lazy_planning && spec_.kind != PolicyKind::kLookahead;
  if (options_.sample_count > 0) registry_options.planner.sample_count = options_.sample_count;
  registry_ =
      std::make_unique<RunRegistry>(registry_options, RunRegistryDeps{.clock = &clock_,
                                                                      .services = &services_,
                                                                      .timers = &timers_,
                                                                      .warmer = warmer_.get(),
                                                                      .delegated = &delegated_,
                                                                      .store = store_.get(),
                                                                      .metrics = metrics_.get()});
  policy_ = MakePolicy();
}

std::unique_ptr<Policy> Simulation::MakePolicy() {
  switch (spec_.kind) {
    case PolicyKind::kNone:
      return std::make_unique<Policy>(*this);
    case PolicyKind::kEager:
      return std::make_unique<EagerPolicy>(*this);
    case PolicyKind::kLookahead:
      return std::make_unique<LookaheadPolicy>(*this);
    case PolicyKind::kPinger:
      return std::make_unique<PingerPolicy>(*this);
    case PolicyKind::kAlwaysOn:
      return std::make_unique<AlwaysOnPolicy>(*this);
    case PolicyKind::kHistogram:
      return std::make_unique<HistogramPolicy>(*this);
    case PolicyKind::kPrewarm:
      return std::make_unique<PrewarmPolicy>(*this);
    case PolicyKind::kOracle:
      return std::make_unique<OraclePolicy>(*this);
  }
  return nullptr;
}

int Simulation::TaskIndex(int r, const std::string& task_id) const {
  const WorkflowDef& wf = workflow_of(r);
  for (int v = 0; v < static_cast<int>(wf.tasks.size()); ++v) {
    if (wf.tasks[v].id == task_id) return v;
  }
  return -1;
}

void Simulation::Error(const absl::Status& status, absl::string_view what) {
  if (++result_.errors <= 3) {
    std::cerr << workload_.name << " / " << spec_.Name() << ": " << what << ": " << status << "\n";
  }
}

SimResult Simulation::Run() {
  const std::clock_t cpu_start = std::clock();
  result_.workload = workload_.name;
  result_.policy = spec_.Name();
  result_.delay_cost_ratio = spec_.delay_cost_ratio;
  policy_->Start();
  runs_.resize(workload_.runs.size());
  runs_left_ = static_cast<int>(workload_.runs.size());
  absl::Time measure_start = absl::InfiniteFuture();
  for (int r = 0; r < static_cast<int>(workload_.runs.size()); ++r) {
    events_.At(run(r).submit, [this, r] { Submit(r); });
    if (run(r).measured) measure_start = std::min(measure_start, run(r).submit);
  }
  PlatformStats at_start;
  events_.At(measure_start, [&] {
    platform_.StartMeasurement(Now());
    at_start = platform_.stats();
  });
  while (runs_left_ > 0) {
    const absl::Time next = std::min(events_.next(), timers_.NextDeadline());
    PREWARM_CHECK(next != absl::InfiniteFuture(), "the simulation ran out of events");
    clock_.AdvanceTo(next);
    timers_.RunDue();
    while (!events_.empty() && events_.next() <= Now()) events_.RunNext();
  }
  platform_.EndMeasurement(Now());
  if (options_.trace != nullptr) {
    // The registry's own account (whole simulation, training included), summed over services.
    std::map<std::string, double> totals;
    for (absl::string_view line : absl::StrSplit(metrics_->Scrape(), '\n', absl::SkipEmpty())) {
      if (!absl::StartsWith(line, "prewarm_warmups_total") &&
          !absl::StartsWith(line, "prewarm_task_starts_total")) {
        continue;
      }
      const size_t brace = line.find('{'), space = line.rfind(' ');
      std::string key(line.substr(0, brace));
      for (absl::string_view label : {"result=\"", "outcome=\""}) {
        if (const size_t at = line.find(label); at != absl::string_view::npos) {
          const size_t from = at + label.size();
          absl::StrAppend(&key, " ", line.substr(from, line.find('"', from) - from));
        }
      }
      double value = 0;
      if (absl::SimpleAtod(line.substr(space + 1), &value)) totals[key] += value;
    }
    for (const auto& [key, value] : totals)
      *options_.trace << "metric " << key << " " << value << "\n";
  }
  const PlatformStats& stats = platform_.stats();
  result_.policy_idle_s = stats.policy_idle_s;
  result_.platform_idle_s = stats.platform_idle_s;
  result_.idle_after_warmup_s = stats.idle_after_warmup_s;
  result_.idle_warmup_spare_s = stats.idle_warmup_spare_s;
  result_.idle_pinned_s = stats.idle_pinned_s;
  result_.idle_extended_s = stats.idle_extended_s;
  result_.warmups = stats.warmup_requests - at_start.warmup_requests;
  result_.containers_started = stats.containers_started - at_start.containers_started;
  result_.simulated_hours = absl::ToDoubleHours(Now() - Epoch());
  result_.cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  return result_;
}

void Simulation::Submit(int r) {
  const RunDef& def = run(r);
  const WorkflowDef& wf = workflow_of(r);
  RunState& state = runs_[r];
  const int n = static_cast<int>(wf.tasks.size());
  state.pending_parents.resize(n);
  state.terminal.assign(n, false);
  state.skipped.assign(n, false);
  state.waited.assign(n, absl::ZeroDuration());
  state.started.assign(n, absl::InfinitePast());
  state.ended.assign(n, absl::InfinitePast());
  state.decision.assign(n, v1::WARMUP_DECISION_UNSPECIFIED);
  state.remaining = n;
  v1::PrewarmRequest request;
  request.set_run_id(def.run_id);
  request.set_workflow_id(wf.id);
  for (int v = 0; v < n; ++v) {
    const TaskDef& t = wf.tasks[v];
    state.pending_parents[v] = static_cast<int>(t.parents.size());
    v1::Task* task = request.add_tasks();
    task->set_task_id(t.id);
    task->set_service(workload_.services[t.service].name);
    for (int u : t.parents) task->add_upstream_task_ids(wf.tasks[u].id);
  }
  if (def.scheduled) *request.mutable_start_time() = ToProtoTimestamp(def.start);
  if (spec_.kind == PolicyKind::kPrewarm) request.set_delay_cost_ratio(spec_.delay_cost_ratio);
  v1::RunPlan plan;
  registry_->Prewarm(request, [&](absl::StatusOr<v1::RunPlan> p) {
    if (!p.ok()) return Error(p.status(), "Prewarm");
    plan = *std::move(p);
  });
  NoteDecisions(r, plan.tasks());
  policy_->OnSubmit(r, plan);
  events_.At(def.start, [this, r] { StartRun(r); });
}

void Simulation::StartRun(int r) {
  policy_->OnRunStart(r);
  const WorkflowDef& wf = workflow_of(r);
  for (int v = 0; v < static_cast<int>(wf.tasks.size()); ++v) {
    if (wf.tasks[v].parents.empty()) Ready(r, v);
  }
}

void Simulation::Ready(int r, int v) {
  const TaskDef& t = workflow_of(r).tasks[v];
  RunState& state = runs_[r];
  bool all_parents_skipped = !t.parents.empty();
  for (int u : t.parents) all_parents_skipped = all_parents_skipped && state.skipped[u];
  if (all_parents_skipped || run(r).skip_draw[v]) {
    state.skipped[v] = true;
    Report(r, v, v1::TASK_EVENT_TYPE_SKIPPED);
    Complete(r, v);
    return;
  }
  events_.At(Now() + run(r).gap[v], [this, r, v] { Dispatch(r, v); });
}

void Simulation::Dispatch(int r, int v) {
  const int s = workflow_of(r).tasks[v].service;
  runs_[r].started[v] = Now();
  Report(r, v, v1::TASK_EVENT_TYPE_STARTED);
  policy_->OnTaskStarted(r, v);
  policy_->OnInvoke(s);
  platform_.Invoke(
      s, run(r).duration[v], [this, r, v](absl::Duration waited) { runs_[r].waited[v] = waited; },
      [this, r, v] { Finished(r, v); });
}

void Simulation::Finished(int r, int v) {
  policy_->OnInvokeDone(workflow_of(r).tasks[v].service);
  Report(r, v, v1::TASK_EVENT_TYPE_FINISHED, runs_[r].waited[v]);
  Complete(r, v);
}

void Simulation::Complete(int r, int v) {
  RunState& state = runs_[r];
  state.terminal[v] = true;
  state.ended[v] = Now();
  policy_->OnTaskTerminal(r, v);
  for (int c : children_[run(r).workflow][v]) {
    if (--state.pending_parents[c] == 0) Ready(r, c);
  }
  if (--state.remaining == 0) RunFinished(r);
}

void Simulation::RunFinished(int r) {
  --runs_left_;
  const RunDef& def = run(r);
  if (!def.measured) return;
  const RunState& state = runs_[r];
  const WorkflowDef& wf = workflow_of(r);
  ++result_.measured_runs;
  result_.added_latency_s.push_back(absl::ToDoubleSeconds(Now() - def.start - def.ideal_makespan));
  for (int v = 0; v < static_cast<int>(wf.tasks.size()); ++v) {
    if (state.skipped[v]) {
      ++result_.tasks_skipped;
      continue;
    }
    ++result_.tasks_run;
    const double waited = absl::ToDoubleSeconds(state.waited[v]);
    if (Hideable(r, v)) {
      ++result_.hideable_tasks;
      result_.hideable_delay_s += waited;
      result_.hideable_cold_tasks += state.waited[v] > kColdThreshold;
    } else {
      result_.unhideable_delay_s += waited;
    }
  }
  if (options_.trace == nullptr) return;
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan(def.run_id);
  std::ostream& out = *options_.trace;
  out << absl::StrFormat(
      "run %s%s start=%.1fs makespan=%.1fs ideal=%.1fs\n", def.run_id,
      def.scheduled ? " (scheduled)" : "", absl::ToDoubleSeconds(def.start - Epoch()),
      absl::ToDoubleSeconds(Now() - def.start), absl::ToDoubleSeconds(def.ideal_makespan));
  for (int v = 0; v < static_cast<int>(wf.tasks.size()); ++v) {
    std::string detail;
    if (plan.ok()) {
      for (const v1::TaskPlan& t : plan->tasks()) {
        if (t.task_id() != wf.tasks[v].id) continue;
        auto rel = [&](const google::protobuf::Timestamp& ts) {
          return absl::ToDoubleSeconds(FromProto(ts, "").value_or(def.start) - def.start);
        };
        detail = absl::StrFormat(
            "decision=%s warmup=%s fired_at=%+.1f expected_start=%+.1f cold=%.2f outcome=%s",
            v1::WarmupDecision_Name(state.decision[v]), v1::WarmupState_Name(t.warmup_state()),
            t.has_warmup_time() ? rel(t.warmup_time()) : NAN, rel(t.expected_start_time()),
            absl::ToDoubleSeconds(
                FromProto(t.expected_cold_start(), "").value_or(absl::ZeroDuration())),
            v1::TaskOutcome_Name(t.outcome()));
      }
    }
    out << absl::StrFormat(
        "  %-10s %s start=%+.1f waited=%.2f %s\n", wf.tasks[v].id,
        state.skipped[v] ? "skipped "
        : Hideable(r, v) ? "hideable"
                         : "root    ",
        state.skipped[v] ? NAN : absl::ToDoubleSeconds(state.started[v] - def.start),
        absl::ToDoubleSeconds(state.waited[v]), detail);
  }
}

void Simulation::Report(int r, int v, v1::TaskEventType event,
                        std::optional<absl::Duration> waited) {
  v1::ReportTimingRequest request;
  request.set_run_id(run(r).run_id);
  request.set_task_id(workflow_of(r).tasks[v].id);
  request.set_event(event);
  *request.mutable_event_time() = ToProtoTimestamp(Now());
  if (waited.has_value()) {
    // The task's operator knows whether its call was cold and how long it waited.
    const bool cold = *waited > kColdThreshold;
    request.set_cold(cold);
    if (cold) *request.mutable_cold_start() = ToProtoDuration(*waited);
  }
  registry_->ReportTiming(request, [this, r](absl::StatusOr<v1::ReportTimingResponse> response) {
    if (!response.ok()) return Error(response.status(), "ReportTiming");
    NoteDecisions(r, response->replanned_tasks());
  });
}

template <typename Plans>
void Simulation::NoteDecisions(int r, const Plans& plans) {
  if (options_.trace == nullptr) return;
  for (const v1::TaskPlan& t : plans) {
    if (t.task_state() != v1::TASK_STATE_PENDING) continue;
    if (const int v = TaskIndex(r, t.task_id()); v >= 0) runs_[r].decision[v] = t.decision();
  }
}

}  // namespace

SimResult Simulate(const Workload& workload, const PolicySpec& policy, const SimOptions& options) {
  Simulation sim(workload, policy, options);
  return sim.Run();
}

}  // namespace prewarm::sim
