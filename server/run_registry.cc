#include "server/run_registry.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "predictor/names.h"
#include "predictor/random.h"
#include "prewarm/store/v1/store.pb.h"
#include "server/log.h"
#include "server/proto_time.h"

namespace prewarm {
namespace {

constexpr absl::Duration kExpiryInterval = absl::Minutes(1);
constexpr double kMaxDelayCostRatio = 1e6;
constexpr absl::Duration kMaxColdStart = absl::Minutes(10);

HistoryWindow WindowOf(Observation::Kind kind) {
  switch (kind) {
    case Observation::Kind::kTaskDuration:
      return HistoryWindow::kTaskDuration;
    case Observation::Kind::kServiceDuration:
      return HistoryWindow::kServiceDuration;
    case Observation::Kind::kColdStart:
      return HistoryWindow::kColdStart;
    case Observation::Kind::kWarmLatency:
      return HistoryWindow::kWarmLatency;
    case Observation::Kind::kDispatchGap:
      return HistoryWindow::kDispatchGap;
    case Observation::Kind::kTaskRun:
      return HistoryWindow::kTaskRun;
  }
  return HistoryWindow::kTaskDuration;
}

Observation::Kind KindOf(HistoryWindow window) {
  switch (window) {
    case HistoryWindow::kTaskDuration:
      return Observation::Kind::kTaskDuration;
    case HistoryWindow::kServiceDuration:
      return Observation::Kind::kServiceDuration;
    case HistoryWindow::kColdStart:
      return Observation::Kind::kColdStart;
    case HistoryWindow::kWarmLatency:
      return Observation::Kind::kWarmLatency;
    case HistoryWindow::kDispatchGap:
      return Observation::Kind::kDispatchGap;
    case HistoryWindow::kTaskRun:
      return Observation::Kind::kTaskRun;
  }
  return Observation::Kind::kTaskDuration;
}

const char* KindName(Observation::Kind kind) {
  switch (kind) {
    case Observation::Kind::kTaskDuration:
      return "task_duration";
    case Observation::Kind::kServiceDuration:
      return "service_duration";
    case Observation::Kind::kColdStart:
      return "cold_start";
    case Observation::Kind::kWarmLatency:
      return "warm_latency";
    case Observation::Kind::kDispatchGap:
      return "dispatch_gap";
    case Observation::Kind::kTaskRun:
      return "task_run";
  }
  return "unknown";
}

Observation Make(Observation::Kind kind, std::string key, double value, absl::Time at) {
  Observation o;
  o.kind = kind;
  o.key = std::move(key);
  o.value = value;
  o.time = at;
  return o;
}

bool Terminal(TaskState s) {
  return s == TaskState::kSucceeded || s == TaskState::kFailed || s == TaskState::kSkipped;
}

v1::WarmupDecision ToProto(WarmupDecision d) {
  switch (d) {
    case WarmupDecision::kWarm:
      return v1::WARMUP_DECISION_WARM;
    case WarmupDecision::kSkipAlreadyWarm:
      return v1::WARMUP_DECISION_SKIP_ALREADY_WARM;
    case WarmupDecision::kSkipUnlikely:
      return v1::WARMUP_DECISION_SKIP_UNLIKELY;
    case WarmupDecision::kSkipNoService:
      return v1::WARMUP_DECISION_SKIP_NO_SERVICE;
    case WarmupDecision::kSkipStarted:
      return v1::WARMUP_DECISION_SKIP_STARTED;
    case WarmupDecision::kSkipNotWorth:
      return v1::WARMUP_DECISION_SKIP_NOT_WORTH;
    case WarmupDecision::kSkipTooLate:
      return v1::WARMUP_DECISION_SKIP_TOO_LATE;
  }
  return v1::WARMUP_DECISION_UNSPECIFIED;
}

v1::Confidence ToProto(Confidence c) {
  switch (c) {
    case Confidence::kHigh:
      return v1::CONFIDENCE_HIGH;
    case Confidence::kMedium:
      return v1::CONFIDENCE_MEDIUM;
    case Confidence::kLow:
      return v1::CONFIDENCE_LOW;
  }
  return v1::CONFIDENCE_UNSPECIFIED;
}

v1::TaskState ToProto(TaskState s) {
  switch (s) {
    case TaskState::kPending:
      return v1::TASK_STATE_PENDING;
    case TaskState::kRunning:
      return v1::TASK_STATE_RUNNING;
    case TaskState::kSucceeded:
      return v1::TASK_STATE_SUCCEEDED;
    case TaskState::kFailed:
      return v1::TASK_STATE_FAILED;
    case TaskState::kSkipped:
      return v1::TASK_STATE_SKIPPED;
  }
  return v1::TASK_STATE_UNSPECIFIED;
}

void Summarize(const SampleWindow* window, v1::DistributionSummary* out) {
  if (window == nullptr || window->empty()) return;
  const Distribution d = Distribution::FromSamples(window->InOrder());
  out->set_sample_count(window->size());
  *out->mutable_mean() = ToProtoDuration(absl::Seconds(d.Mean()));
  *out->mutable_p50() = ToProtoDuration(absl::Seconds(d.Quantile(0.5)));
  *out->mutable_p90() = ToProtoDuration(absl::Seconds(d.Quantile(0.9)));
  *out->mutable_p99() = ToProtoDuration(absl::Seconds(d.Quantile(0.99)));
}

// Whether an upstream of `v` started (ran, whatever its result).
bool AnyParentRan(const RunPlanner& planner, int v) {
  for (int u : planner.dag().parents(v)) {
    const TaskState state = planner.progress(u).state;
    if (state != TaskState::kPending && state != TaskState::kSkipped) return true;
  }
  return false;
}

store::v1::EstimateSource ToProto(EstimateSource s) {
  switch (s) {
    case EstimateSource::kLearned:
      return store::v1::ESTIMATE_SOURCE_LEARNED;
    case EstimateSource::kFallback:
      return store::v1::ESTIMATE_SOURCE_FALLBACK;
    case EstimateSource::kPrior:
      return store::v1::ESTIMATE_SOURCE_PRIOR;
  }
  return store::v1::ESTIMATE_SOURCE_UNSPECIFIED;
}

// The run's model as stored: distributions once each (tasks share their services' cold starts).
store::v1::RunModel ModelToProto(const RunModel& model) {
  store::v1::RunModel out;
  absl::flat_hash_map<const Distribution*, int> index;
  auto estimate = [&](const Estimate& e, store::v1::Estimate* to) {
    to->set_source(ToProto(e.source));
    if (e.distribution == nullptr) {
      to->set_distribution(-1);
      return;
    }
    auto [it, added] = index.try_emplace(e.distribution.get(), out.distributions_size());
    if (added) {
      auto* seconds = out.add_distributions()->mutable_seconds();
      const std::vector<float>& samples = e.distribution->samples();
      seconds->Add(samples.begin(), samples.end());
    }
    to->set_distribution(it->second);
  };
  for (const TaskModel& t : model.tasks) {
    store::v1::TaskModel* m = out.add_tasks();
    estimate(t.duration, m->mutable_duration());
    estimate(t.cold_start, m->mutable_cold_start());
    m->set_run_probability(t.run_probability);
    m->set_warmable(t.service.warmable);
    *m->mutable_keep_alive() = ToProtoDuration(t.service.keep_alive);
    m->set_container_concurrency(t.service.container_concurrency);
    if (t.service.cold_start_prior.has_value()) {
      *m->mutable_cold_start_prior() = ToProtoDuration(*t.service.cold_start_prior);
    }
    if (t.service.warm_until != absl::InfinitePast()) {
      *m->mutable_warm_until() = ToProtoTimestamp(t.service.warm_until);
    }
  }
  estimate(model.dispatch_gap, out.mutable_dispatch_gap());
  return out;
}

// The inverse of ModelToProto; nullopt when `stored` does not fit a DAG of `tasks` tasks.
std::optional<RunModel> ModelFromProto(const store::v1::RunModel& stored, int tasks) {
  if (stored.tasks_size() != tasks) return std::nullopt;
  std::vector<std::shared_ptr<const Distribution>> distributions;
  for (const store::v1::Samples& s : stored.distributions()) {
    if (s.seconds().empty()) return std::nullopt;
    distributions.push_back(std::make_shared<const Distribution>(
        Distribution::FromSamples({s.seconds().begin(), s.seconds().end()})));
  }
  bool ok = true;
  auto estimate = [&](const store::v1::Estimate& e) {
    Estimate out;
    out.source = e.source() == store::v1::ESTIMATE_SOURCE_LEARNED    ? EstimateSource::kLearned
                 : e.source() == store::v1::ESTIMATE_SOURCE_FALLBACK ? EstimateSource::kFallback
                                                                     : EstimateSource::kPrior;
    if (e.distribution() >= static_cast<int>(distributions.size())) ok = false;
    if (e.distribution() >= 0 && ok) out.distribution = distributions[e.distribution()];
    return out;
  };
  RunModel model;
  for (const store::v1::TaskModel& m : stored.tasks()) {
    TaskModel t;
    t.duration = estimate(m.duration());
    t.cold_start = estimate(m.cold_start());
    t.run_probability = m.run_probability();
    t.service.warmable = m.warmable();
    t.service.keep_alive = FromProto(m.keep_alive(), "").value_or(absl::Seconds(60));
    t.service.container_concurrency = m.container_concurrency();
    if (m.has_cold_start_prior()) {
      t.service.cold_start_prior = FromProto(m.cold_start_prior(), "").value_or(absl::Seconds(2));
    }
    if (m.has_warm_until()) {
      t.service.warm_until = FromProto(m.warm_until(), "").value_or(absl::InfinitePast());
    }
    if (t.duration.distribution == nullptr) ok = false;
    model.tasks.push_back(std::move(t));
  }
  model.dispatch_gap = estimate(stored.dispatch_gap());
  if (!ok || model.dispatch_gap.distribution == nullptr) return std::nullopt;
  return model;
}

}  // namespace

RunRegistry::RunRegistry(RunRegistryOptions options, RunRegistryDeps deps)
    : options_(std::move(options)), deps_(deps), history_(options_.history) {
  expiry_timer_ = ScheduleTimer(deps_.clock->Now() + kExpiryInterval,
                                [this](absl::Duration) { ExpireIdleRuns(); });
}

RunRegistry::~RunRegistry() {
  {
    // First the timers: a running callback may still queue store writes. Not under mu_, which
    // the callback may be waiting for.
    TimerCallbacks* callbacks = timer_callbacks_.get();
    absl::MutexLock lock(&callbacks->mu);
    callbacks->closed = true;
    auto idle = [callbacks]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(callbacks->mu) {
      return callbacks->running == 0;
    };
    callbacks->mu.Await(absl::Condition(&idle));
  }
  {
    // Before mu_: a callback may be waiting for mu_ (its `done` may call into the registry).
    StoreCallbacks* callbacks = store_callbacks_.get();
    absl::MutexLock lock(&callbacks->mu);
    auto drained = [callbacks]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(callbacks->mu) {
      return callbacks->outstanding == 0;
    };
    callbacks->mu.Await(absl::Condition(&drained));
  }
  absl::MutexLock lock(&mu_);
  deps_.timers->Cancel(expiry_timer_);
  for (auto& [id, run] : runs_) {
    for (TaskRuntime& t : run->tasks) {
      if (t.warmup == v1::WARMUP_STATE_PENDING) deps_.timers->Cancel(t.timer);
      if (t.refresh_timer != 0) deps_.timers->Cancel(t.refresh_timer);
    }
  }
}

TimerQueue::TimerId RunRegistry::ScheduleTimer(absl::Time deadline, TimerQueue::Callback fn) {
  return deps_.timers->Schedule(
      deadline, [callbacks = timer_callbacks_, fn = std::move(fn)](absl::Duration lateness) {
        {
          absl::MutexLock lock(&callbacks->mu);
          if (callbacks->closed) return;  // `fn` would use a destroyed registry.
          ++callbacks->running;
        }
        fn(lateness);
        absl::MutexLock lock(&callbacks->mu);
        --callbacks->running;
      });
}

CommitCallback RunRegistry::Tracked(CommitCallback fn) {
  {
    absl::MutexLock lock(&store_callbacks_->mu);
    ++store_callbacks_->outstanding;
  }
  // The callback keeps the counter alive by itself: ~RunRegistry may return (and free the
  // registry) as soon as the count reaches zero, while this thread still unlocks it.
  return [callbacks = store_callbacks_, fn = std::move(fn)](absl::Status status) {
    if (fn) fn(std::move(status));
    absl::MutexLock lock(&callbacks->mu);
    --callbacks->outstanding;
  };
}

RunRegistry::ServiceCounters& RunRegistry::CountersOf(absl::string_view service) {
  if (auto it = counters_.find(service); it != counters_.end()) {
    counters_recency_.splice(counters_recency_.end(), counters_recency_, it->second.recency);
    return it->second;
  }
  counters_recency_.emplace_back(service);
  ServiceCounters& counters = counters_[service];
  counters.recency = std::prev(counters_recency_.end());
  // Registered services are few (max_services); the scan skips them.
  const size_t cap = deps_.services->size() +
                     static_cast<size_t>(std::max(0, options_.max_unregistered_service_counters));
  int64_t evicted = 0;
  for (auto it = counters_recency_.begin();
       counters_.size() > cap && it != std::prev(counters_recency_.end());) {
    if (deps_.services->Find(*it, nullptr)) {
      ++it;
      continue;
    }
    counters_.erase(*it);
    it = counters_recency_.erase(it);
    ++evicted;
  }
  if (evicted > 0) deps_.metrics->ServiceCountersEvicted(evicted);
  return counters;
}

void RunRegistry::Learn(Observation observation, std::vector<Observation>* learned) {
  history_.Add(WindowOf(observation.kind), observation.key, observation.value);
  deps_.metrics->ObservationRecorded(KindName(observation.kind));
  if (learned != nullptr) learned->push_back(std::move(observation));
}

std::function<void()> RunRegistry::Persist(std::vector<Observation> observations,
                                           RunWrite run_write,
                                           std::function<void(absl::Status)> done) {
  struct Pending {
    std::atomic<int> remaining;
    absl::Mutex mu;
    absl::Status first_error;
    std::function<void(absl::Status)> done;
  };
  // Keys the history evicted (adding these observations, or replaying events at restore) leave
  // the store too, queued before the new observations. Those cannot be of an evicted key: a batch
  // adds a few keys and eviction takes the least recent of many (the config requires at least
  // 100).
  std::vector<std::pair<HistoryWindow, std::string>> evicted = history_.TakeEvicted();
  if (!evicted.empty()) {
    deps_.metrics->HistoryKeysEvicted(static_cast<int64_t>(evicted.size()));
    for (auto& [window, key] : evicted) {
      deps_.store->DeleteObservations(KindOf(window), std::move(key), Tracked(nullptr));
    }
  }
  deps_.metrics->SetHistoryKeys(static_cast<int64_t>(history_.key_count()));
  const int writes =
      static_cast<int>(observations.size()) + (run_write.kind == RunWrite::Kind::kNone ? 0 : 1);
  if (writes == 0) {
    return [done = std::move(done)] {
      if (done) done(absl::OkStatus());
    };
  }
  auto pending = std::make_shared<Pending>();
  pending->remaining = writes + 1;  // One more for the returned release.
  pending->done = std::move(done);
  auto finish_one = [pending] {
    if (pending->remaining.fetch_sub(1) == 1 && pending->done) {
      absl::Status result;
      {
        absl::MutexLock lock(&pending->mu);
        result = pending->first_error;
      }
      pending->done(result);
    }
  };
  const absl::Duration started = deps_.clock->MonotonicNow();
  auto on_commit = [this, pending, started, finish_one](absl::Status status) {
    deps_.metrics->StoreWrite(status.ok(), deps_.clock->MonotonicNow() - started);
    if (!status.ok()) {
      absl::MutexLock lock(&pending->mu);
      if (pending->first_error.ok()) {
        pending->first_error =
            absl::UnavailableError(absl::StrCat("the store could not commit: ", status.message()));
      }
    }
    finish_one();
  };
  for (Observation& o : observations)
    deps_.store->AppendObservation(std::move(o), Tracked(on_commit));
  switch (run_write.kind) {
    case RunWrite::Kind::kNone:
      break;
    case RunWrite::Kind::kSnapshot:
      deps_.store->PutRun(std::move(run_write.run_id), std::move(run_write.bytes),
                          Tracked(on_commit));
      break;
    case RunWrite::Kind::kEvent:
      deps_.store->AppendRunEvent(std::move(run_write.run_id), std::move(run_write.bytes),
                                  Tracked(on_commit));
      break;
    case RunWrite::Kind::kDelete:
      deps_.store->DeleteRun(std::move(run_write.run_id), Tracked(on_commit));
      break;
  }
  return finish_one;
}

void RunRegistry::RegisterService(
    const v1::Service& service,
    std::function<void(absl::StatusOr<v1::RegisterServiceResponse>)> done) {
  absl::StatusOr<std::pair<v1::Service, bool>> stored = deps_.services->Register(service);
  if (!stored.ok()) return done(stored.status());
  deps_.metrics->SetRegisteredServices(static_cast<int64_t>(deps_.services->size()));
  v1::RegisterServiceResponse response;
  *response.mutable_service() = stored->first;
  response.set_replaced(stored->second);
  deps_.store->PutService(stored->first.name(), stored->first.SerializeAsString(),
                          Tracked([done = std::move(done), response](absl::Status st) {
                            if (!st.ok()) {
                              return done(absl::UnavailableError(
                                  absl::StrCat("the store could not commit: ", st.message())));
                            }
                            done(response);
                          }));
}

absl::StatusOr<std::unique_ptr<RunRegistry::Run>> RunRegistry::BuildRun(
    const v1::PrewarmRequest& request, absl::Time now, const store::v1::RunModel* stored) {
  if (absl::Status s = ValidateId(request.run_id(), "run_id"); !s.ok()) return s;
  if (absl::Status s = ValidateId(request.workflow_id(), "workflow_id"); !s.ok()) return s;
  if (request.tasks_size() > options_.dag.max_tasks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the DAG has ", request.tasks_size(), " tasks; the limit is ", options_.dag.max_tasks));
  }
  auto run = std::make_unique<Run>();
  run->request = request;
  absl::Time start = now;
  if (request.has_start_time()) {
    absl::StatusOr<absl::Time> t = FromProto(request.start_time(), "start_time");
    if (!t.ok()) return t.status();
    if (*t > now + options_.max_future_start) {
      return absl::InvalidArgumentError(
          absl::StrCat("start_time ", absl::FormatTime(*t), " is more than ",
                       absl::FormatDuration(options_.max_future_start), " in the future"));
    }
    if (*t < now - options_.run_idle_timeout) {
      return absl::InvalidArgumentError(
          absl::StrCat("start_time ", absl::FormatTime(*t), " is more than ",
                       absl::FormatDuration(options_.run_idle_timeout), " in the past"));
    }
    start = *t;
  }
  *run->request.mutable_start_time() = ToProtoTimestamp(start);
  PlannerOptions planner_options = options_.planner;
  planner_options.refresh_warmups = options_.max_warmup_refreshes > 0;
  const double ratio = request.delay_cost_ratio();
  if (ratio != 0) {
    if (!std::isfinite(ratio) || ratio < 0 || ratio > kMaxDelayCostRatio) {
      return absl::InvalidArgumentError(
          absl::StrCat("delay_cost_ratio ", ratio, " must be in (0, ", kMaxDelayCostRatio, "]"));
    }
    planner_options.delay_cost_ratio = ratio;
  }
  run->request.set_delay_cost_ratio(planner_options.delay_cost_ratio);

  std::vector<TaskSpec> specs;
  specs.reserve(request.tasks_size());
  for (const v1::Task& t : request.tasks()) {
    specs.push_back(TaskSpec{
        t.task_id(), t.service(), {t.upstream_task_ids().begin(), t.upstream_task_ids().end()}});
  }
  absl::StatusOr<Dag> dag = Dag::Build(std::move(specs), options_.dag);
  if (!dag.ok()) return dag.status();
  run->dag = std::make_shared<const Dag>(*std::move(dag));
  std::optional<RunModel> restored;
  if (stored != nullptr) {
    restored = ModelFromProto(*stored, run->dag->size());
    if (!restored.has_value())
      return absl::DataLossError("the stored run model does not fit its DAG");
  }
  RunModel model = restored.has_value() ? *std::move(restored)
                                        : BuildRunModel(*run->dag, request.workflow_id(), history_,
                                                        [this, now](absl::string_view s) {
                                                          return deps_.services->Info(s, now);
                                                        });
  if (stored == nullptr) run->model = ModelToProto(model);
  run->planner = std::make_unique<RunPlanner>(run->dag, std::move(model), start,
                                              SeedFromString(request.run_id()), planner_options);
  run->planner->PlanAll(now);
  run->tasks.resize(run->dag->size());
  run->plan_time = now;
  run->last_event = now;
  run->submitted = now;
  return run;
}

void RunRegistry::Prewarm(const v1::PrewarmRequest& request, PlanCallback done) {
  std::function<void()> persisted;
  absl::StatusOr<v1::RunPlan> answer;
  {
    absl::MutexLock lock(&mu_);
    answer = StartRun(request, done, &persisted);
  }
  // Callbacks never run under mu_.
  if (persisted) return persisted();
  done(std::move(answer));
}

absl::StatusOr<v1::RunPlan> RunRegistry::StartRun(const v1::PrewarmRequest& request,
                                                  PlanCallback& done,
                                                  std::function<void()>* persisted) {
  const absl::Time now = deps_.clock->Now();
  if (!request.dry_run()) {
    if (runs_.contains(request.run_id())) {
      return absl::AlreadyExistsError(
          absl::StrCat("run '", request.run_id(), "' is already active"));
    }
    if (static_cast<int>(runs_.size()) >= options_.max_active_runs) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the limit of ", options_.max_active_runs, " active runs is reached"));
    }
  }
  absl::StatusOr<std::unique_ptr<Run>> built = BuildRun(request, now);
  if (!built.ok()) return built.status();
  Run& run = **built;
  if (request.dry_run()) return PlanProto(run);

  std::vector<int> all(run.dag->size());
  for (int v = 0; v < run.dag->size(); ++v) all[v] = v;
  SyncWarmups(run, all);
  for (int v = 0; v < run.dag->size(); ++v) {
    const WarmupDecision d = run.planner->plan(v).decision;
    if (d == WarmupDecision::kSkipAlreadyWarm) {
      deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupSkippedWarm);
    } else if (d == WarmupDecision::kSkipUnlikely) {
      deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupSkippedUnlikely);
    }
  }
  v1::RunPlan plan = PlanProto(run);
  RunWrite write{RunWrite::Kind::kSnapshot, request.run_id(), Snapshot(run)};
  run.model.Clear();  // Stored; not needed in memory.
  runs_[request.run_id()] = *std::move(built);
  deps_.metrics->RunStarted();
  UpdateGauges();
  *persisted = Persist({}, std::move(write),
                       [done = std::move(done), plan = std::move(plan)](absl::Status st) mutable {
                         if (!st.ok()) return done(st);
                         done(std::move(plan));
                       });
  return v1::RunPlan();  // Unused: `persisted` answers.
}

void RunRegistry::ReportTiming(const v1::ReportTimingRequest& request,
                               std::function<void(absl::StatusOr<v1::ReportTimingResponse>)> done) {
  std::function<void()> persisted;
  absl::StatusOr<v1::ReportTimingResponse> answer;
  {
    absl::MutexLock lock(&mu_);
    answer = ApplyReport(request, done, &persisted);
  }
  // Callbacks never run under mu_.
  if (persisted) return persisted();
  done(std::move(answer));
}

absl::StatusOr<v1::ReportTimingResponse> RunRegistry::ApplyReport(
    const v1::ReportTimingRequest& request,
    std::function<void(absl::StatusOr<v1::ReportTimingResponse>)>& done,
    std::function<void()>* persisted) {
  std::vector<Observation> learned;
  v1::ReportTimingResponse response;
  const absl::Time now = deps_.clock->Now();
  auto it = runs_.find(request.run_id());
  if (it == runs_.end()) {
    if (absl::Status s = ValidateId(request.run_id(), "run_id"); !s.ok()) return s;
    // A repeated last event of a run that it ended (delivery at least once).
    if (auto r = retired_.find(request.run_id()); r != retired_.end()) {
      const v1::TaskState ended =
          request.event() == v1::TASK_EVENT_TYPE_FINISHED  ? v1::TASK_STATE_SUCCEEDED
          : request.event() == v1::TASK_EVENT_TYPE_FAILED  ? v1::TASK_STATE_FAILED
          : request.event() == v1::TASK_EVENT_TYPE_SKIPPED ? v1::TASK_STATE_SKIPPED
                                                           : v1::TASK_STATE_UNSPECIFIED;
      for (const v1::TaskPlan& t : r->second.tasks()) {
        if (t.task_id() != request.task_id()) continue;
        if (ended == v1::TASK_STATE_UNSPECIFIED || t.task_state() != ended) break;
        response.set_replan_count(r->second.replan_count());
        response.set_run_finished(true);
        return response;
      }
    }
    return absl::NotFoundError(absl::StrCat("run '", request.run_id(), "' is not active"));
  }
  Run& run = *it->second;
  if (!run.dag->Find(request.task_id()).has_value()) {
    if (absl::Status s = ValidateId(request.task_id(), "task_id"); !s.ok()) return s;
    return absl::NotFoundError(absl::StrCat("run '", request.run_id(), "' has no task '",
                                            request.task_id().substr(0, 250), "'"));
  }
  if (request.event() == v1::TASK_EVENT_TYPE_UNSPECIFIED ||
      !v1::TaskEventType_IsValid(request.event())) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", request.event(), " is not a task event type"));
  }
  v1::ReportTimingRequest event = request;
  absl::Time at = now;
  if (request.has_event_time()) {
    absl::StatusOr<absl::Time> t = FromProto(request.event_time(), "event_time");
    if (!t.ok()) return t.status();
    if (*t > now + options_.max_clock_skew) {
      return absl::InvalidArgumentError(absl::StrCat("event_time ", absl::FormatTime(*t), " is ",
                                                     absl::FormatDuration(*t - now),
                                                     " ahead of the server's clock"));
    }
    at = *t;
  }
  *event.mutable_event_time() = ToProtoTimestamp(at);
  if (request.has_cold_start()) {
    absl::StatusOr<absl::Duration> c = FromProto(request.cold_start(), "cold_start");
    if (!c.ok()) return c.status();
    if (*c < absl::ZeroDuration() || *c > kMaxColdStart) {
      return absl::InvalidArgumentError(absl::StrCat("cold_start ", absl::FormatDuration(*c),
                                                     " must be in [0, ",
                                                     absl::FormatDuration(kMaxColdStart), "]"));
    }
  }
  if (IsRepeat(run, *run.dag->Find(request.task_id()), event)) {
    run.last_event = now;
    response.set_replan_count(run.replans);
    return response;
  }
  if (run.events >= options_.max_events_per_run) {
    return absl::ResourceExhaustedError(
        absl::StrCat("run '", request.run_id(), "' has reached the limit of ",
                     options_.max_events_per_run, " task events (max_events_per_run)"));
  }
  std::vector<int> replanned;
  const int v = *run.dag->Find(request.task_id());
  const bool settled = run.tasks[v].outcome_counted;
  if (absl::Status s = ApplyEvent(run, event, now, &learned, &replanned); !s.ok()) return s;
  // What a restart needs to apply it again exactly: the time it was re-planned as of, and what
  // the container pool decided.
  store::v1::RunEvent record;
  *record.mutable_applied_time() = ToProtoTimestamp(now);
  if (!settled && run.tasks[v].outcome_counted) record.set_outcome(run.tasks[v].outcome);
  if (run.tasks[v].found_warm.has_value()) record.set_found_warm(*run.tasks[v].found_warm);
  run.last_event = now;
  ++run.events;
  for (int v : replanned) TaskPlanProto(run, v, response.add_replanned_tasks());
  response.set_replan_count(run.replans);
  bool finished = true;
  for (int v = 0; v < run.dag->size() && finished; ++v) {
    finished = Terminal(run.planner->progress(v).state);
  }
  response.set_run_finished(finished);
  RunWrite write{RunWrite::Kind::kDelete, request.run_id(), ""};
  if (finished) {
    Retire(request.run_id(), kRunFinished);  // `run` is gone from here on.
  } else {
    *record.mutable_timing() = std::move(event);
    write = {RunWrite::Kind::kEvent, request.run_id(), record.SerializeAsString()};
  }
  UpdateGauges();
  *persisted =
      Persist(std::move(learned), std::move(write),
              [done = std::move(done), response = std::move(response)](absl::Status st) mutable {
                if (!st.ok()) return done(st);
                done(std::move(response));
              });
  return v1::ReportTimingResponse();  // Unused: `persisted` answers.
}

absl::Status RunRegistry::ApplyEvent(Run& run, const v1::ReportTimingRequest& event, absl::Time now,
                                     std::vector<Observation>* learned,
                                     std::vector<int>* replanned) {
  const int v = *run.dag->Find(event.task_id());
  const TaskSpec& spec = run.dag->task(v);
  const std::string& workflow = run.request.workflow_id();
  TaskRuntime& rt = run.tasks[v];
  const absl::Time at = FromProto(event.event_time(), "event_time").value_or(now);
  const bool replay = learned == nullptr;
  const std::optional<bool> cold =
      event.has_cold() ? std::optional<bool>(event.cold()) : std::nullopt;

  absl::StatusOr<std::vector<int>> touched = std::vector<int>{};
  switch (event.event()) {
    case v1::TASK_EVENT_TYPE_STARTED: {
      const TaskProgress before = run.planner->progress(v);
      const absl::Time expected = run.planner->plan(v).expected_start;
      const bool may_start =
          before.state != TaskState::kSucceeded && before.state != TaskState::kSkipped;
      if (may_start && !replay && !spec.service.empty()) AcquireContainer(run, v, at);
      touched = run.planner->Started(v, at, now, ContainerWait(run, v, event, at));
      if (!touched.ok()) return touched.status();
      rt.actual_start = at;
      if (replay) break;
      if (before.state == TaskState::kPending) {
        deps_.metrics->PredictionError(at - expected);
        // The dispatch gap, once every parent is done.
        absl::Time last_parent = absl::InfinitePast();
        bool parents_done = !run.dag->parents(v).empty();
        for (int u : run.dag->parents(v)) {
          const TaskProgress& p = run.planner->progress(u);
          parents_done = parents_done && Terminal(p.state);
          last_parent = std::max(last_parent, p.finished);
        }
        if (parents_done && at >= last_parent) {
          Learn(Make(Observation::Kind::kDispatchGap, workflow,
                     absl::ToDoubleSeconds(at - last_parent), now),
                learned);
        }
      }
      if (!spec.service.empty() && cold.has_value()) SettleOutcome(run, v, cold, at);
      break;
    }
    case v1::TASK_EVENT_TYPE_SERVICE_INVOKED:
      if (!replay && !spec.service.empty()) {
        AcquireContainer(run, v, at);
        SettleOutcome(run, v, cold, at);
      }
      break;
    case v1::TASK_EVENT_TYPE_FINISHED: {
      const TaskProgress before = run.planner->progress(v);
      touched = run.planner->Finished(v, at, now);
      if (!touched.ok()) return touched.status();
      if (replay) break;
      const absl::Time started = before.state == TaskState::kRunning ? before.started : at;
      absl::Duration cold_penalty;
      if (!spec.service.empty()) {
        SettleOutcome(run, v, cold, started);
        if (event.has_cold_start() && event.cold()) {
          cold_penalty = FromProto(event.cold_start(), "").value_or(absl::ZeroDuration());
        } else if (rt.reported_cold_start.has_value()) {  // e.g. by its SERVICE_INVOKED
          cold_penalty = *rt.reported_cold_start;
        } else if (rt.outcome == v1::TASK_OUTCOME_MISS) {
          cold_penalty = run.planner->plan(v).expected_cold_start;
        } else if (rt.outcome == v1::TASK_OUTCOME_LATE && rt.fired_at != absl::InfinitePast()) {
          cold_penalty = std::max(absl::ZeroDuration(),
                                  rt.fired_at + run.planner->plan(v).expected_cold_start - started);
        }
        deps_.services->ReleaseContainer(spec.service, TaskKey(run, v), at);
      }
      // The warm run time: what the task took minus the cold start it paid.
      const double seconds = std::max(0.0, absl::ToDoubleSeconds(at - started - cold_penalty));
      Learn(Make(Observation::Kind::kTaskDuration, History::TaskKey(workflow, spec.task_id),
                 seconds, now),
            learned);
      if (!spec.service.empty()) {
        Learn(Make(Observation::Kind::kServiceDuration, spec.service, seconds, now), learned);
      }
      Learn(Make(Observation::Kind::kTaskRun, History::TaskKey(workflow, spec.task_id), 1, now),
            learned);
      break;
    }
    case v1::TASK_EVENT_TYPE_FAILED:
      touched = run.planner->Failed(v, at, now);
      if (!touched.ok()) return touched.status();
      if (!replay && !spec.service.empty()) {
        SettleOutcome(run, v, cold, at);
        deps_.services->ReleaseContainer(spec.service, TaskKey(run, v), at);
      }
      break;
    case v1::TASK_EVENT_TYPE_SKIPPED:
      touched = run.planner->Skipped(v, at, now);
      if (!touched.ok()) return touched.status();
      if (!spec.service.empty()) deps_.services->ForgetTask(spec.service, TaskKey(run, v));
      // The run probability is conditional on an upstream task having run: a task skipped
      // because all of its upstreams were teaches nothing about its own branch.
      if (!replay && (run.dag->parents(v).empty() || AnyParentRan(*run.planner, v))) {
        Learn(Make(Observation::Kind::kTaskRun, History::TaskKey(workflow, spec.task_id), 0, now),
              learned);
      }
      break;
    default:
      break;
  }
  // A reported cold start teaches the service's cost, whatever the event; once per task, since a
  // reporter may repeat it on SERVICE_INVOKED and FINISHED.
  if (event.has_cold_start() && cold.value_or(true) && !spec.service.empty() &&
      !rt.reported_cold_start.has_value()) {
    const absl::Duration c = FromProto(event.cold_start(), "").value_or(absl::ZeroDuration());
    rt.reported_cold_start = c;  // Also when replayed: a FINISHED after a restart needs it.
    // A late task waited for part of a cold start only: the warm-up's latency measures it whole.
    if (!replay && rt.outcome != v1::TASK_OUTCOME_LATE) {
      Learn(Make(Observation::Kind::kColdStart, spec.service, absl::ToDoubleSeconds(c), now),
            learned);
      deps_.metrics->ColdStartObserved(spec.service, c);
    }
  }
  rt.last_event = event.event();
  if (replanned != nullptr) *replanned = *touched;
  if (!touched->empty()) {
    ++run.replans;
    run.plan_time = now;
    // A replay (Restore) schedules nothing: it marks the fired warm-ups afterwards and then
    // schedules what is still pending, once.
    if (!replay) SyncWarmups(run, *touched);
  }
  return absl::OkStatus();
}

std::optional<absl::Duration> RunRegistry::ContainerWait(const Run& run, int v,
                                                         const v1::ReportTimingRequest& event,
                                                         absl::Time at) const {
  if (run.dag->task(v).service.empty()) return absl::ZeroDuration();
  if (event.has_cold()) {
    if (!event.cold()) return absl::ZeroDuration();
    if (event.has_cold_start())
      return FromProto(event.cold_start(), "").value_or(absl::ZeroDuration());
    return std::nullopt;
  }
  const TaskRuntime& rt = run.tasks[v];
  switch (rt.warmup) {
    case v1::WARMUP_STATE_READY:
      return absl::ZeroDuration();
    case v1::WARMUP_STATE_FIRED:  // Late: the rest of the warm-up's cold start.
      return std::max(absl::ZeroDuration(),
                      rt.fired_at + run.planner->plan(v).expected_cold_start - at);
    default:
      if (rt.found_warm.has_value()) {
        return *rt.found_warm ? std::optional<absl::Duration>(absl::ZeroDuration()) : std::nullopt;
      }
      return absl::ZeroDuration();  // Nothing known (a replay): as its history says.
  }
}

bool RunRegistry::IsRepeat(const Run& run, int v, const v1::ReportTimingRequest& event) const {
  const TaskRuntime& rt = run.tasks[v];
  const TaskState state = run.planner->progress(v).state;
  // What a repeat of a call's report may still teach.
  const bool news = (event.has_cold() && !rt.outcome_counted) ||
                    (event.has_cold_start() && !rt.reported_cold_start.has_value());
  switch (event.event()) {
    case v1::TASK_EVENT_TYPE_STARTED:
      return state == TaskState::kRunning && !news;
    case v1::TASK_EVENT_TYPE_SERVICE_INVOKED:
      return rt.last_event == v1::TASK_EVENT_TYPE_SERVICE_INVOKED && !news;
    case v1::TASK_EVENT_TYPE_FINISHED:
      return state == TaskState::kSucceeded;
    case v1::TASK_EVENT_TYPE_FAILED:
      return state == TaskState::kFailed;
    case v1::TASK_EVENT_TYPE_SKIPPED:
      return state == TaskState::kSkipped;
    default:
      return false;
  }
}

void RunRegistry::SettleOutcome(Run& run, int v, std::optional<bool> reported_cold, absl::Time at) {
  TaskRuntime& rt = run.tasks[v];
  if (rt.outcome_counted) return;
  const std::string& service = run.dag->task(v).service;
  const absl::Duration cold_start = run.planner->plan(v).expected_cold_start;
  v1::TaskOutcome outcome;
  if (reported_cold.has_value()) {
    // A cold call made while this task's warm-up was starting the service only waited for the
    // rest of that start (the report usually arrives after the call, when the warm-up is READY).
    const bool warmup_in_flight =
        rt.warmup == v1::WARMUP_STATE_FIRED ||
        (rt.warmup == v1::WARMUP_STATE_READY && rt.fired_at <= at && at < rt.ready_at);
    outcome = !*reported_cold    ? v1::TASK_OUTCOME_HIT
              : warmup_in_flight ? v1::TASK_OUTCOME_LATE
                                 : v1::TASK_OUTCOME_MISS;
  } else if (rt.warmup == v1::WARMUP_STATE_READY) {
    outcome = v1::TASK_OUTCOME_HIT;
  } else if (rt.warmup == v1::WARMUP_STATE_FIRED) {
    outcome = v1::TASK_OUTCOME_LATE;
  } else {
    // What the container pool saw when the call arrived.
    outcome = rt.found_warm.value_or(false) ? v1::TASK_OUTCOME_HIT : v1::TASK_OUTCOME_MISS;
  }
  rt.outcome = outcome;
  rt.outcome_counted = true;
  ServiceCounters& counters = CountersOf(service);
  switch (outcome) {
    case v1::TASK_OUTCOME_HIT:
      ++counters.hits;
      deps_.metrics->TaskStart(service, kTaskHit);
      if (rt.warmup == v1::WARMUP_STATE_READY) {
        deps_.metrics->ColdStartHidden(service, cold_start);
        deps_.metrics->IdleWarmSeconds(service, std::max(absl::ZeroDuration(), at - rt.ready_at));
      }
      break;
    case v1::TASK_OUTCOME_LATE:
      ++counters.lates;
      deps_.metrics->TaskStart(service, kTaskLate);
      deps_.metrics->ColdStartHidden(
          service, std::clamp(at - rt.fired_at, absl::ZeroDuration(), cold_start));
      break;
    default:
      ++counters.misses;
      deps_.metrics->TaskStart(service, kTaskMiss);
      break;
  }
}

void RunRegistry::CancelWarmup(TaskRuntime& task) {
  if (task.warmup != v1::WARMUP_STATE_PENDING) return;
  deps_.timers->Cancel(task.timer);
  --pending_warmups_;
  task.warmup = v1::WARMUP_STATE_CANCELLED;
  task.scheduled_for = absl::InfiniteFuture();
}

void RunRegistry::SyncWarmups(Run& run, const std::vector<int>& tasks) {
  const std::string run_id = run.request.run_id();
  for (int v : tasks) {
    TaskRuntime& rt = run.tasks[v];
    if (run.planner->progress(v).state != TaskState::kPending) CancelRefresh(rt);
    if (rt.warmup == v1::WARMUP_STATE_FIRED || rt.warmup == v1::WARMUP_STATE_READY ||
        rt.warmup == v1::WARMUP_STATE_FAILED) {
      continue;  // Already fired: nothing left to move.
    }
    const TaskPlan& plan = run.planner->plan(v);
    if (plan.decision != WarmupDecision::kWarm) {
      if (rt.warmup == v1::WARMUP_STATE_PENDING) {
        CancelWarmup(rt);
        deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupCancelled);
        if (run.planner->progress(v).state != TaskState::kPending) {
          LogWarmup(run, v, store::v1::WarmupRecord::KIND_CANCELLED, deps_.clock->Now(),
                    absl::InfinitePast());
        }
      }
      if (run.planner->progress(v).state == TaskState::kPending) rt.warmup = v1::WARMUP_STATE_NONE;
      continue;
    }
    if (rt.warmup == v1::WARMUP_STATE_PENDING) {
      if (rt.scheduled_for == plan.warmup_time) continue;
      deps_.timers->Cancel(rt.timer);
    } else {
      ++pending_warmups_;
    }
    rt.warmup = v1::WARMUP_STATE_PENDING;
    rt.scheduled_for = plan.warmup_time;
    const uint64_t generation = ++rt.generation;
    rt.timer =
        ScheduleTimer(plan.warmup_time, [this, run_id, v, generation](absl::Duration lateness) {
          Fire(run_id, v, generation, lateness);
        });
  }
}

void RunRegistry::Fire(const std::string& run_id, int v, uint64_t generation,
                       absl::Duration lateness) {
  OutgoingWarmup warmup;
  {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return;
    Run& run = *it->second;
    TaskRuntime& rt = run.tasks[v];
    if (rt.warmup != v1::WARMUP_STATE_PENDING || rt.generation != generation) return;
    --pending_warmups_;
    const std::string& name = run.dag->task(v).service;
    const TaskPlan& plan = run.planner->plan(v);
    const absl::Time now = deps_.clock->Now();
    v1::Service service;
    if (!deps_.services->Find(name, &service)) {
      rt.warmup = v1::WARMUP_STATE_NONE;  // Unregistered since the plan was made.
      UpdateGauges();
      return;
    }
    // Another run may have left a container free that stays warm until the task starts: hold it
    // for the task instead of warming another. (A task that holds one already and still plans a
    // warm-up expects to start after it is reclaimed: the warm-up refreshes it.)
    const std::string key = TaskKey(run, v);
    if (deps_.services->HeldUntil(name, key, now) < now &&
        deps_.services->ClaimContainer(name, key, now, plan.expected_start)) {
      rt.warmup = v1::WARMUP_STATE_NONE;
      const absl::Time held = deps_.services->HeldUntil(name, key, now);
      run.planner->SetTaskWarmUntil(v, held);
      LogWarmup(run, v, store::v1::WarmupRecord::KIND_CLAIMED, now, held, false,
                plan.expected_start);
      SyncWarmups(run, run.planner->Replan(v, now));  // Its descendants need not wait for C.
      deps_.metrics->WarmupResult(name, kWarmupSkippedWarm);
      UpdateGauges();
      return;
    }
    rt.warmup = v1::WARMUP_STATE_FIRED;
    rt.fired_at = now;
    // Tell this run's planner: re-plans must not count the task's own cold start again.
    const absl::Time warm_until =
        now + plan.expected_cold_start + deps_.services->Info(name).keep_alive;
    run.planner->SetTaskWarmUntil(v, warm_until);
    rt.warmup_id = next_warmup_id_++;
    ++CountersOf(name).fired;
    deps_.metrics->WarmupResult(name, kWarmupFired);
    deps_.metrics->WarmupLateness(lateness);
    // Remember the firing, so that a restart does not fire it again.
    LogWarmup(run, v, store::v1::WarmupRecord::KIND_FIRED, now, warm_until);
    UpdateGauges();
    warmup = PrepareWarmup(run, v, service, rt.warmup_id, /*refresh=*/false);
  }
  SendWarmup(std::move(warmup));
}

RunRegistry::OutgoingWarmup RunRegistry::PrepareWarmup(const Run& run, int v,
                                                       const v1::Service& service, uint64_t id,
                                                       bool refresh) {
  const std::string& run_id = run.request.run_id();
  const absl::Time now = deps_.clock->Now();
  in_flight_[id] = InFlight{run_id, v, service.name(), now, refresh};
  OutgoingWarmup out;
  out.service = service;
  if (service.mode() == v1::WARMUP_MODE_DELEGATED) {
    const TaskPlan& plan = run.planner->plan(v);
    out.instruction.set_warmup_id(absl::StrCat(id));
    out.instruction.set_service(service.name());
    out.instruction.set_run_id(run_id);
    out.instruction.set_task_id(run.dag->task(v).task_id);
    *out.instruction.mutable_warmup_time() = ToProtoTimestamp(refresh ? now : plan.warmup_time);
    *out.instruction.mutable_expected_start_time() = ToProtoTimestamp(plan.expected_start);
    out.instruction.set_warmup_url(service.warmup_url());
  } else {
    out.http.id = id;
    out.http.url = service.warmup_url();
    out.http.method = service.warmup_method();
    out.http.timeout = FromProto(service.warmup_timeout(), "").value_or(absl::Seconds(30));
    out.http.max_attempts = options_.warmup_attempts;
  }
  return out;
}

void RunRegistry::SendWarmup(OutgoingWarmup warmup) {
  if (warmup.service.mode() == v1::WARMUP_MODE_DELEGATED) {
    const uint64_t id = std::stoull(warmup.instruction.warmup_id());
    if (deps_.delegated->Publish(warmup.instruction) == 0) {
      PREWARM_LOG(WARNING) << "no WatchWarmups subscriber for delegated service '"
                           << warmup.service.name() << "'; warm-up " << id << " is lost";
      (void)OnWarmupResult(id, false, absl::ZeroDuration(), std::nullopt);
    }
    return;
  }
  deps_.warmer->Fire(std::move(warmup.http), [this](const WarmupResult& r) {
    if (!r.success) {
      PREWARM_LOG(WARNING) << "warm-up " << r.id << " failed after " << r.attempts
                           << " attempt(s): " << r.error;
    }
    (void)OnWarmupResult(r.id, r.success, r.latency, std::nullopt,
                         /*shut_down=*/r.error == "shut down");
  });
}

void RunRegistry::ScheduleRefresh(Run& run, int v, absl::Time answered) {
  TaskRuntime& rt = run.tasks[v];
  CancelRefresh(rt);
  if (rt.refreshes >= options_.max_warmup_refreshes ||
      run.planner->progress(v).state != TaskState::kPending) {
    return;
  }
  const absl::Duration keep_alive = deps_.services->Info(run.dag->task(v).service).keep_alive;
  if (keep_alive <= absl::ZeroDuration()) return;  // Never reclaimed: nothing to refresh.
  // A tenth of the keep-alive early: the refresh must reach the container before it is reclaimed.
  const uint64_t id = rt.warmup_id;
  rt.refresh_timer = ScheduleTimer(
      answered + keep_alive * 0.9,
      [this, run_id = run.request.run_id(), v, id](absl::Duration) { Refresh(run_id, v, id); });
}

std::string RunRegistry::TaskKey(const Run& run, int v) {
  return absl::StrCat(run.request.run_id(), "#", v);
}

void RunRegistry::AcquireContainer(Run& run, int v, absl::Time at) {
  TaskRuntime& rt = run.tasks[v];
  std::string displaced;
  const bool warm =
      deps_.services->AcquireContainer(run.dag->task(v).service, TaskKey(run, v), at, &displaced);
  if (!rt.found_warm.has_value()) rt.found_warm = warm;
  if (!displaced.empty()) Rewarm(displaced);
}

void RunRegistry::LogWarmup(const Run& run, int v, store::v1::WarmupRecord::Kind kind,
                            absl::Time at, absl::Time warm_until, bool cold, absl::Time needed) {
  store::v1::RunEvent record;
  store::v1::WarmupRecord* w = record.mutable_warmup();
  w->set_task_id(run.dag->task(v).task_id);
  w->set_kind(kind);
  *w->mutable_time() = ToProtoTimestamp(at);
  if (warm_until != absl::InfinitePast()) *w->mutable_warm_until() = ToProtoTimestamp(warm_until);
  w->set_cold(cold);
  if (needed != absl::InfinitePast()) *w->mutable_needed() = ToProtoTimestamp(needed);
  *record.mutable_applied_time() = ToProtoTimestamp(at);
  // Nothing runs after the commit but the bookkeeping of Tracked.
  deps_.store->AppendRunEvent(run.request.run_id(), record.SerializeAsString(), Tracked(nullptr));
}

void RunRegistry::Rewarm(absl::string_view task_key) {
  const size_t hash = task_key.rfind('#');
  int v = -1;
  if (hash == absl::string_view::npos || !absl::SimpleAtoi(task_key.substr(hash + 1), &v)) return;
  auto it = runs_.find(task_key.substr(0, hash));
  if (it == runs_.end()) return;
  Run& run = *it->second;
  if (v < 0 || v >= run.dag->size() || run.planner->progress(v).state != TaskState::kPending) {
    return;
  }
  TaskRuntime& rt = run.tasks[v];
  if (rt.warmup == v1::WARMUP_STATE_PENDING || rt.warmup == v1::WARMUP_STATE_FIRED) return;
  CancelRefresh(rt);
  deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupDisplaced);
  // Plan it again as cold: a passed deadline fires at once.
  rt.warmup = v1::WARMUP_STATE_NONE;
  run.planner->SetTaskWarmUntil(v, absl::InfinitePast());
  const absl::Time now = deps_.clock->Now();
  LogWarmup(run, v, store::v1::WarmupRecord::KIND_DISPLACED, now, absl::InfinitePast());
  SyncWarmups(run, run.planner->Replan(v, now));
}

void RunRegistry::CancelRefresh(TaskRuntime& task) {
  if (task.refresh_timer == 0) return;
  deps_.timers->Cancel(task.refresh_timer);
  task.refresh_timer = 0;
}

void RunRegistry::Refresh(const std::string& run_id, int v, uint64_t warmup_id) {
  OutgoingWarmup warmup;
  {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return;
    Run& run = *it->second;
    TaskRuntime& rt = run.tasks[v];
    if (rt.warmup_id != warmup_id || rt.refresh_timer == 0) return;  // Stale timer.
    rt.refresh_timer = 0;
    if (rt.warmup != v1::WARMUP_STATE_READY ||
        run.planner->progress(v).state != TaskState::kPending) {
      return;
    }
    v1::Service service;
    if (!deps_.services->Find(run.dag->task(v).service, &service)) return;
    ++rt.refreshes;
    LogWarmup(run, v, store::v1::WarmupRecord::KIND_REFRESHED, deps_.clock->Now(),
              absl::InfinitePast());
    deps_.metrics->WarmupResult(service.name(), kWarmupRefreshed);
    warmup = PrepareWarmup(run, v, service, rt.warmup_id, /*refresh=*/true);
  }
  SendWarmup(std::move(warmup));
}

absl::Status RunRegistry::OnWarmupResult(uint64_t warmup_id, bool success, absl::Duration latency,
                                         std::optional<bool> cold, bool shut_down) {
  std::vector<Observation> learned;
  std::function<void()> persisted;
  {
    absl::MutexLock lock(&mu_);
    auto it = in_flight_.find(warmup_id);
    if (it == in_flight_.end()) {
      return absl::NotFoundError(
          absl::StrCat("warm-up ", warmup_id, " is unknown or already reported"));
    }
    const InFlight flight = std::move(it->second);
    in_flight_.erase(it);
    const absl::Time now = deps_.clock->Now();
    Run* run = nullptr;
    TaskRuntime* rt = nullptr;
    // A run reusing the id of the retired run this warm-up belonged to has its own tasks and
    // warm-ups.
    if (auto found = runs_.find(flight.run_id);
        found != runs_.end() && flight.task < static_cast<int>(found->second->tasks.size()) &&
        found->second->tasks[flight.task].warmup_id == warmup_id) {
      run = found->second.get();
      rt = &run->tasks[flight.task];
    }
    // A warm-up of a retired run gets a name no task has ('\x1f' is refused in ids), so that
    // it cannot touch the hold of a new run that reuses the id.
    const std::string task_key =
        rt != nullptr ? TaskKey(*run, flight.task) : absl::StrCat("\x1fwarmup#", warmup_id);
    // Whoever it was for, the container it reached is warm now; held for the task if it still
    // waits for it, else free for others.
    const bool holds =
        rt != nullptr && run->planner->progress(flight.task).state == TaskState::kPending;
    const bool was_cold = latency > deps_.services->WarmLatency(flight.service);
    if (success) {
      deps_.services->WarmupAnswered(flight.service, task_key, now, cold.value_or(was_cold));
      absl::Time held = absl::InfinitePast();
      if (!holds) {
        deps_.services->ForgetTask(flight.service, task_key);
      } else {
        held = deps_.services->HeldUntil(flight.service, task_key, now);
        run->planner->SetTaskWarmUntil(flight.task, held);
      }
      if (rt != nullptr) {
        rt->answered = now;
        LogWarmup(*run, flight.task, store::v1::WarmupRecord::KIND_READY, now, held,
                  cold.value_or(was_cold));
      }
    } else if (rt != nullptr && !flight.refresh && rt->warmup == v1::WARMUP_STATE_FIRED &&
               !shut_down) {
      LogWarmup(*run, flight.task, store::v1::WarmupRecord::KIND_FAILED, now, absl::InfinitePast());
    }
    if (flight.refresh) {
      // Sent to a warm container: nothing to learn of its cold start.
      if (success) {
        if (holds && rt->warmup == v1::WARMUP_STATE_READY) {
          ScheduleRefresh(*run, flight.task, now);
        }
      } else {
        deps_.metrics->WarmupResult(flight.service, kWarmupRefreshFailed);
      }
    } else if (success) {
      deps_.metrics->WarmupLatency(flight.service, latency);
      deps_.metrics->WarmupResult(flight.service, kWarmupReady);
      if (cold.value_or(was_cold)) {
        Learn(Make(Observation::Kind::kColdStart, flight.service, absl::ToDoubleSeconds(latency),
                   now),
              &learned);
        deps_.metrics->ColdStartObserved(flight.service, latency);
      } else {
        Learn(Make(Observation::Kind::kWarmLatency, flight.service, absl::ToDoubleSeconds(latency),
                   now),
              &learned);
      }
      if (rt != nullptr && rt->warmup == v1::WARMUP_STATE_FIRED) {
        rt->warmup = v1::WARMUP_STATE_READY;
        rt->ready_at = now;
        ScheduleRefresh(*run, flight.task, now);
      }
    } else {
      deps_.metrics->WarmupResult(flight.service, kWarmupFailed);
      ++CountersOf(flight.service).failed;
      if (rt != nullptr && rt->warmup == v1::WARMUP_STATE_FIRED) {
        rt->warmup = v1::WARMUP_STATE_FAILED;
      }
    }
    persisted = Persist(std::move(learned), {}, nullptr);
  }
  persisted();
  return absl::OkStatus();
}

absl::Status RunRegistry::ReportWarmup(const v1::ReportWarmupRequest& request) {
  uint64_t id = 0;
  if (request.warmup_id().empty() || !absl::SimpleAtoi(request.warmup_id(), &id)) {
    return absl::InvalidArgumentError(absl::StrCat("warmup_id '", request.warmup_id().substr(0, 40),
                                                   "' is not an id from WatchWarmups"));
  }
  absl::Duration latency;
  if (request.has_latency()) {
    absl::StatusOr<absl::Duration> d = FromProto(request.latency(), "latency");
    if (!d.ok()) return d.status();
    if (*d < absl::ZeroDuration() || *d > kMaxColdStart) {
      return absl::InvalidArgumentError(absl::StrCat("latency ", absl::FormatDuration(*d),
                                                     " must be in [0, ",
                                                     absl::FormatDuration(kMaxColdStart), "]"));
    }
    latency = *d;
  } else if (request.success()) {
    return absl::InvalidArgumentError("latency is required for a successful warm-up");
  }
  return OnWarmupResult(id, request.success(), latency,
                        request.has_cold() ? std::optional<bool>(request.cold()) : std::nullopt);
}

absl::StatusOr<v1::RunPlan> RunRegistry::GetPlan(absl::string_view run_id) const {
  absl::MutexLock lock(&mu_);
  if (auto it = runs_.find(run_id); it != runs_.end()) return PlanProto(*it->second);
  if (auto it = retired_.find(run_id); it != retired_.end()) return it->second;
  if (absl::Status s = ValidateId(run_id, "run_id"); !s.ok()) return s;
  return absl::NotFoundError(absl::StrCat("run '", run_id, "' is unknown"));
}

absl::StatusOr<int> RunRegistry::CancelRun(absl::string_view run_id,
                                           std::function<void(absl::StatusOr<int>)> committed) {
  int cancelled = 0;
  std::function<void()> persisted;
  {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) {
      if (absl::Status s = ValidateId(run_id, "run_id"); !s.ok()) return s;
      return absl::NotFoundError(absl::StrCat("run '", run_id, "' is not active"));
    }
    for (const TaskRuntime& t : it->second->tasks) {
      cancelled += t.warmup == v1::WARMUP_STATE_PENDING;
    }
    Retire(std::string(run_id), kRunCancelled);
    UpdateGauges();
    std::function<void(absl::Status)> done;
    if (committed) {
      done = [committed = std::move(committed), cancelled](absl::Status st) {
        if (!st.ok()) return committed(st);
        committed(cancelled);
      };
    }
    persisted = Persist({}, {RunWrite::Kind::kDelete, std::string(run_id), ""}, std::move(done));
  }
  persisted();
  return cancelled;
}

void RunRegistry::Retire(const std::string& run_id, absl::string_view outcome) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  for (int v = 0; v < run.dag->size(); ++v) {
    TaskRuntime& t = run.tasks[v];
    if (t.warmup == v1::WARMUP_STATE_PENDING) {
      CancelWarmup(t);
      deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupCancelled);
    }
    CancelRefresh(t);
    // Its holds and unfinished calls end with it.
    if (!run.dag->task(v).service.empty()) {
      deps_.services->ForgetTask(run.dag->task(v).service, TaskKey(run, v));
    }
  }
  if (retired_.contains(run_id)) {  // A reused id: its older retirement is superseded.
    retired_order_.erase(std::find(retired_order_.begin(), retired_order_.end(), run_id));
  }
  retired_[run_id] = PlanProto(run);
  retired_order_.push_back(run_id);
  while (static_cast<int>(retired_order_.size()) > options_.max_retired_runs) {
    retired_.erase(retired_order_.front());
    retired_order_.pop_front();
  }
  runs_.erase(it);
  deps_.metrics->RunFinished(outcome);
}

void RunRegistry::ExpireIdleRuns() {
  std::vector<std::function<void()>> persisted;
  std::vector<uint64_t> unreported;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = deps_.clock->Now();
    for (const auto& [id, flight] : in_flight_) {
      if (now - flight.fired_at > options_.warmup_report_timeout) unreported.push_back(id);
    }
    std::vector<std::string> expired;
    for (const auto& [id, run] : runs_) {
      // A run scheduled ahead is not idle while it waits for its start.
      const absl::Time active = std::max(run->last_event, run->planner->start());
      if (now - active > options_.run_idle_timeout) expired.push_back(id);
    }
    for (std::string& id : expired) {
      PREWARM_LOG(INFO) << "run '" << id << "' expired after "
                        << absl::FormatDuration(options_.run_idle_timeout) << " without events";
      Retire(id, kRunExpired);
      persisted.push_back(Persist({}, {RunWrite::Kind::kDelete, std::move(id), ""}, nullptr));
    }
    UpdateGauges();
    expiry_timer_ =
        ScheduleTimer(now + kExpiryInterval, [this](absl::Duration) { ExpireIdleRuns(); });
  }
  for (auto& release : persisted) release();
  for (uint64_t id : unreported) {
    PREWARM_LOG(WARNING) << "warm-up " << id << " was not reported within "
                         << absl::FormatDuration(options_.warmup_report_timeout)
                         << "; counted as failed";
    (void)OnWarmupResult(id, false, absl::ZeroDuration(), std::nullopt);
  }
}

absl::StatusOr<v1::GetServiceStatsResponse> RunRegistry::GetServiceStats(
    absl::string_view service) const {
  if (absl::Status s = ValidateServiceName(service, "service"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  const bool registered = deps_.services->Find(service, nullptr);
  const SampleWindow* durations = history_.ServiceDurations(service);
  const SampleWindow* colds = history_.ColdStarts(service);
  if (!registered && durations == nullptr && colds == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("service '", service, "' is not registered and has no history"));
  }
  v1::GetServiceStatsResponse out;
  out.set_service(std::string(service));
  Summarize(durations, out.mutable_duration());
  Summarize(colds, out.mutable_cold_start());
  Summarize(history_.WarmLatencies(service), out.mutable_warm_latency());
  if (auto it = counters_.find(service); it != counters_.end()) {
    out.set_hit_count(it->second.hits);
    out.set_miss_count(it->second.misses);
    out.set_late_count(it->second.lates);
    out.set_warmups_fired(it->second.fired);
    out.set_warmups_failed(it->second.failed);
  }
  const absl::Time warm_until = deps_.services->WarmUntil(service, deps_.clock->Now());
  if (warm_until > deps_.clock->Now()) *out.mutable_warm_until() = ToProtoTimestamp(warm_until);
  return out;
}

v1::RunPlan RunRegistry::PlanProto(const Run& run) const {
  v1::RunPlan out;
  out.set_run_id(run.request.run_id());
  out.set_workflow_id(run.request.workflow_id());
  *out.mutable_start_time() = run.request.start_time();
  *out.mutable_plan_time() = ToProtoTimestamp(run.plan_time);
  out.set_replan_count(run.replans);
  for (int v = 0; v < run.dag->size(); ++v) TaskPlanProto(run, v, out.add_tasks());
  return out;
}

void RunRegistry::TaskPlanProto(const Run& run, int v, v1::TaskPlan* t) const {
  const TaskPlan& p = run.planner->plan(v);
  const TaskProgress& progress = run.planner->progress(v);
  const TaskRuntime& rt = run.tasks[v];
  t->set_task_id(run.dag->task(v).task_id);
  t->set_service(run.dag->task(v).service);
  *t->mutable_expected_start_time() = ToProtoTimestamp(p.expected_start);
  *t->mutable_start_time_p10() = ToProtoTimestamp(p.start_p10);
  *t->mutable_start_time_p90() = ToProtoTimestamp(p.start_p90);
  if (p.decision == WarmupDecision::kWarm) {
    *t->mutable_warmup_time() = ToProtoTimestamp(p.warmup_time);
  } else if (rt.fired_at != absl::InfinitePast()) {
    *t->mutable_warmup_time() = ToProtoTimestamp(rt.fired_at);
  }
  *t->mutable_expected_cold_start() = ToProtoDuration(p.expected_cold_start);
  t->set_decision(ToProto(p.decision));
  t->set_reason(p.reason);
  t->set_confidence(ToProto(p.confidence));
  t->set_run_probability(p.run_probability);
  *t->mutable_expected_delay() = ToProtoDuration(p.expected_delay);
  *t->mutable_expected_idle() = ToProtoDuration(p.expected_idle);
  t->set_warmup_state(rt.warmup);
  t->set_task_state(ToProto(progress.state));
  t->set_outcome(rt.outcome);
  if (rt.actual_start != absl::InfinitePast()) {
    *t->mutable_actual_start_time() = ToProtoTimestamp(rt.actual_start);
  }
}

std::string RunRegistry::Snapshot(const Run& run) const {
  store::v1::RunSnapshot snapshot;
  *snapshot.mutable_request() = run.request;
  *snapshot.mutable_last_event_time() = ToProtoTimestamp(run.submitted);
  *snapshot.mutable_model() = run.model;
  return snapshot.SerializeAsString();
}

void RunRegistry::UpdateGauges() {
  deps_.metrics->SetActiveRuns(static_cast<int64_t>(runs_.size()));
  deps_.metrics->SetPendingWarmups(pending_warmups_);
}

int RunRegistry::active_runs() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(runs_.size());
}

int RunRegistry::pending_warmups() const {
  absl::MutexLock lock(&mu_);
  return pending_warmups_;
}

void RunRegistry::Replay(Run& run, const store::v1::RunEvent& e, int64_t seq, absl::Time now,
                         std::vector<PoolOp>* pool_ops) {
  const std::string& run_id = run.request.run_id();
  const absl::Time applied = FromProto(e.applied_time(), "").value_or(now);
  auto pool = [&](PoolOp::Kind kind, int v, absl::Time at) -> PoolOp* {
    const std::string& service = run.dag->task(v).service;
    if (service.empty()) return nullptr;
    pool_ops->push_back(PoolOp{applied, run_id, seq, kind, service, TaskKey(run, v), at});
    return &pool_ops->back();
  };
  if (e.has_timing()) {
    const v1::ReportTimingRequest& timing = e.timing();
    const absl::Time at = FromProto(timing.event_time(), "").value_or(now);
    // Records written before applied_time existed are re-planned as of their event time.
    const absl::Time as_of = e.has_applied_time() ? applied : at;
    std::optional<int> v = run.dag->Find(timing.task_id());
    if (!v.has_value()) return;
    TaskRuntime& rt = run.tasks[*v];
    const TaskState before = run.planner->progress(*v).state;
    if (e.has_found_warm() && !rt.found_warm.has_value()) rt.found_warm = e.found_warm();
    if (!ApplyEvent(run, timing, as_of, nullptr).ok()) return;
    ++run.events;
    if (e.outcome() != v1::TASK_OUTCOME_UNSPECIFIED && !rt.outcome_counted) {
      rt.outcome = e.outcome();
      rt.outcome_counted = true;  // Counted before the restart.
    }
    switch (timing.event()) {
      case v1::TASK_EVENT_TYPE_STARTED:
        if (before != TaskState::kSucceeded && before != TaskState::kSkipped) {
          pool(PoolOp::Kind::kAcquire, *v, at);
        }
        break;
      case v1::TASK_EVENT_TYPE_SERVICE_INVOKED:
        pool(PoolOp::Kind::kAcquire, *v, at);
        break;
      case v1::TASK_EVENT_TYPE_FINISHED:
      case v1::TASK_EVENT_TYPE_FAILED:
        pool(PoolOp::Kind::kRelease, *v, at);
        break;
      case v1::TASK_EVENT_TYPE_SKIPPED:
        pool(PoolOp::Kind::kForget, *v, at);
        break;
      default:
        break;
    }
    return;
  }
  if (!e.has_warmup()) {  // Written before WarmupRecord: the warm-up fired.
    if (auto v = run.dag->Find(e.fired_task_id())) run.tasks[*v].warmup = v1::WARMUP_STATE_READY;
    return;
  }
  const store::v1::WarmupRecord& w = e.warmup();
  std::optional<int> found = run.dag->Find(w.task_id());
  if (!found.has_value()) return;
  const int v = *found;
  TaskRuntime& rt = run.tasks[v];
  const absl::Time at = FromProto(w.time(), "").value_or(now);
  const absl::Time warm_until = w.has_warm_until()
                                    ? FromProto(w.warm_until(), "").value_or(absl::InfinitePast())
                                    : absl::InfinitePast();
  switch (w.kind()) {
    case store::v1::WarmupRecord::KIND_FIRED:
      rt.warmup = v1::WARMUP_STATE_FIRED;
      rt.fired_at = at;
      run.planner->SetTaskWarmUntil(v, warm_until);
      break;
    case store::v1::WarmupRecord::KIND_READY: {
      const bool holds = run.planner->progress(v).state == TaskState::kPending;
      if (holds) run.planner->SetTaskWarmUntil(v, warm_until);
      rt.answered = at;
      if (rt.warmup == v1::WARMUP_STATE_FIRED) {
        rt.warmup = v1::WARMUP_STATE_READY;
        rt.ready_at = at;
      }
      if (PoolOp* op = pool(PoolOp::Kind::kAnswered, v, at)) {
        op->cold = w.cold();
        op->forget_after = !holds;
      }
      break;
    }
    case store::v1::WarmupRecord::KIND_FAILED:
      if (rt.warmup == v1::WARMUP_STATE_FIRED) rt.warmup = v1::WARMUP_STATE_FAILED;
      break;
    case store::v1::WarmupRecord::KIND_REFRESHED:
      ++rt.refreshes;
      break;
    case store::v1::WarmupRecord::KIND_CLAIMED:
      rt.warmup = v1::WARMUP_STATE_NONE;
      run.planner->SetTaskWarmUntil(v, warm_until);
      run.planner->Replan(v, at);
      if (PoolOp* op = pool(PoolOp::Kind::kClaim, v, at)) {
        op->needed = FromProto(w.needed(), "").value_or(at);
      }
      break;
    case store::v1::WarmupRecord::KIND_CANCELLED:
      rt.warmup = v1::WARMUP_STATE_CANCELLED;
      break;
    case store::v1::WarmupRecord::KIND_DISPLACED:
      rt.warmup = v1::WARMUP_STATE_NONE;
      run.planner->SetTaskWarmUntil(v, absl::InfinitePast());
      run.planner->Replan(v, at);
      break;
    default:
      break;
  }
}

absl::Status RunRegistry::Restore() {
  // Services first: plans need them.
  absl::Status status = deps_.store->LoadServices([&](absl::string_view, absl::string_view bytes) {
    v1::Service s;
    if (s.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      deps_.services->Restore(std::move(s));
    }
  });
  if (!status.ok()) return status;
  deps_.metrics->SetRegisteredServices(static_cast<int64_t>(deps_.services->size()));
  absl::MutexLock lock(&mu_);
  // The store loads keys in (kind, key) order, not in the order they were observed: load them
  // all without a cap while noting each key's newest observation, touch them oldest first so that
  // eviction order survives the restart, then evict down to the cap (those leave the store too).
  // Memory exceeds the cap only while loading a store that holds more keys than it (written with
  // a larger cap, or before there was one), and only once.
  using KindKey = std::pair<int, std::string>;
  absl::flat_hash_map<KindKey, absl::Time> newest;
  history_.SetMaxKeys(0);
  int64_t observations = 0;
  // Runs within LoadObservations, under the lock held here.
  status =
      deps_.store->LoadObservations([&](const Observation& o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        history_.Add(WindowOf(o.kind), o.key, o.value);
        ++observations;
        absl::Time& t =
            newest.try_emplace(KindKey(static_cast<int>(o.kind), o.key), absl::InfinitePast())
                .first->second;
        t = std::max(t, o.time);
      });
  if (!status.ok()) return status;
  std::vector<std::pair<absl::Time, KindKey>> by_age;
  by_age.reserve(newest.size());
  for (auto& [kind_key, time] : newest) by_age.emplace_back(time, kind_key);
  newest = {};
  std::sort(by_age.begin(), by_age.end());  // Oldest first; ties by (kind, key).
  for (const auto& [time, kind_key] : by_age) {
    history_.Touch(WindowOf(static_cast<Observation::Kind>(kind_key.first)), kind_key.second);
  }
  history_.SetMaxKeys(options_.history.max_keys);
  std::vector<std::pair<HistoryWindow, std::string>> dropped = history_.TakeEvicted();
  for (auto& [window, key] : dropped) {
    deps_.store->DeleteObservations(KindOf(window), std::move(key), Tracked(nullptr));
  }
  if (!dropped.empty()) {
    PREWARM_LOG(WARNING) << "the store held " << by_age.size() << " history keys, more than "
                         << "max_history_keys " << options_.history.max_keys << ": dropped the "
                         << dropped.size() << " least recently observed";
    deps_.metrics->HistoryKeysEvicted(static_cast<int64_t>(dropped.size()));
  }
  deps_.metrics->SetHistoryKeys(static_cast<int64_t>(history_.key_count()));
  const absl::Time now = deps_.clock->Now();
  int restored = 0;
  std::vector<std::string> unreadable;
  // Snapshots first, then each run's log in order.
  absl::flat_hash_map<std::string, store::v1::RunSnapshot> snapshots;
  absl::flat_hash_map<std::string, std::vector<store::v1::RunEvent>> logs;
  status = deps_.store->LoadRuns([&](absl::string_view run_id, absl::string_view bytes) {
    store::v1::RunSnapshot snapshot;
    if (!snapshot.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      unreadable.emplace_back(run_id);
      return;
    }
    snapshots[run_id] = std::move(snapshot);
  });
  if (!status.ok()) return status;
  status = deps_.store->LoadRunEvents([&](absl::string_view run_id, absl::string_view bytes) {
    store::v1::RunEvent event;
    if (event.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      logs[run_id].push_back(std::move(event));
    }
  });
  if (!status.ok()) return status;
  for (const auto& [run_id, log] : logs) {
    // Events of a run retired while its last events were queued: clean them up.
    if (!snapshots.contains(run_id)) unreadable.push_back(run_id);
  }
  std::vector<PoolOp> pool_ops;
  for (auto& [run_id, snapshot] : snapshots) {
    const absl::Time start = FromProto(snapshot.request().start_time(), "").value_or(now);
    // A run stored with its model is rebuilt exactly as it was planned: same estimates, same
    // planning time, every re-plan as of the time it was first made. One stored before is
    // planned again from today's history, as of now.
    const bool exact = snapshot.has_model();
    const absl::Time submitted =
        exact ? FromProto(snapshot.last_event_time(), "").value_or(start) : start;
    absl::StatusOr<std::unique_ptr<Run>> built =
        BuildRun(snapshot.request(), submitted, exact ? &snapshot.model() : nullptr);
    if (!built.ok()) {
      PREWARM_LOG(WARNING) << "dropping stored run '" << run_id << "': " << built.status();
      unreadable.push_back(run_id);
      continue;
    }
    Run& run = **built;
    int64_t seq = 0;
    for (const store::v1::RunEvent& e : logs[run_id]) Replay(run, e, seq++, now, &pool_ops);
    for (int v = 0; v < run.dag->size(); ++v) {
      TaskRuntime& rt = run.tasks[v];
      // Killed while its warm-up was in flight: the request left, so count it answered when it
      // was expected to be.
      if (rt.warmup == v1::WARMUP_STATE_FIRED) {
        rt.warmup = v1::WARMUP_STATE_READY;
        rt.ready_at = rt.fired_at + run.planner->plan(v).expected_cold_start;
        rt.answered = rt.ready_at;
      }
      if (rt.warmup == v1::WARMUP_STATE_READY) rt.warmup_id = next_warmup_id_++;
    }
    run.last_event = now;  // A restart gives the run a fresh idle timeout.
    if (!exact) {
      run.planner->PlanAll(now);  // As of now: passed deadlines fire at once.
      run.plan_time = now;
    }
    for (int v = 0; v < run.dag->size(); ++v) {
      // Refreshes resume where they were (a passed one is sent at once).
      if (exact && run.tasks[v].warmup == v1::WARMUP_STATE_READY &&
          run.tasks[v].answered != absl::InfinitePast()) {
        ScheduleRefresh(run, v, run.tasks[v].answered);
      }
    }
    std::vector<int> all(run.dag->size());
    for (int v = 0; v < run.dag->size(); ++v) all[v] = v;
    SyncWarmups(run, all);
    runs_[run_id] = *std::move(built);
    ++restored;
  }
  // The container pools, as the restored runs' calls and warm-ups left them, in the order the
  // server first made the changes. (Containers only retired runs used are not known.)
  std::sort(pool_ops.begin(), pool_ops.end(), [](const PoolOp& a, const PoolOp& b) {
    return std::tie(a.applied, a.run_id, a.seq) < std::tie(b.applied, b.run_id, b.seq);
  });
  for (const PoolOp& op : pool_ops) {
    std::string displaced;  // Its own record in the displaced run's log says what followed.
    switch (op.kind) {
      case PoolOp::Kind::kAcquire:
        deps_.services->AcquireContainer(op.service, op.task_key, op.at, &displaced);
        break;
      case PoolOp::Kind::kRelease:
        deps_.services->ReleaseContainer(op.service, op.task_key, op.at);
        break;
      case PoolOp::Kind::kForget:
        deps_.services->ForgetTask(op.service, op.task_key);
        break;
      case PoolOp::Kind::kAnswered:
        deps_.services->WarmupAnswered(op.service, op.task_key, op.at, op.cold);
        if (op.forget_after) deps_.services->ForgetTask(op.service, op.task_key);
        break;
      case PoolOp::Kind::kClaim:
        deps_.services->ClaimContainer(op.service, op.task_key, op.at, op.needed);
        break;
    }
  }
  UpdateGauges();
  PREWARM_LOG(INFO) << "restored " << deps_.services->size() << " services, " << observations
                    << " observations and " << restored << " active runs";
  for (std::string& id : unreadable) {
    Persist({}, {RunWrite::Kind::kDelete, std::move(id), ""}, nullptr)();
  }
  return status;
}

}  // namespace prewarm
