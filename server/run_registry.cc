#include "server/run_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "predictor/branch_outcomes.h"
#include "predictor/names.h"
#include "server/event_learning.h"
#include "server/log.h"
#include "server/proto_time.h"
#include "server/run_request.h"

namespace prewarm {
namespace {

constexpr absl::Duration kExpiryInterval = absl::Minutes(1);

}  // namespace

RunRegistry::RunRegistry(RunRegistryOptions options, RunRegistryDeps deps)
    : options_(std::move(options)),
      deps_(deps),
      journal_(deps_.store, deps_.metrics, deps_.clock),
      timers_(deps_.timers),
      warmups_({.warmup_attempts = options_.warmup_attempts,
                .max_warmup_refreshes = options_.max_warmup_refreshes},
               {.clock = deps_.clock,
                .services = deps_.services,
                .timers = &timers_,
                .metrics = deps_.metrics,
                .journal = &journal_},
               {.due = [this](const std::string& run_id, int v, uint64_t generation,
                              absl::Duration lateness) { Fire(run_id, v, generation, lateness); },
                .refresh_due = [this](const std::string& run_id, int v,
                                      uint64_t warmup_id) { Refresh(run_id, v, warmup_id); },
                .deferred_due = [this](const std::string& run_id,
                                       uint64_t generation) { PlanDeferred(run_id, generation); }}),
      history_(options_.history) {
  expiry_timer_ = timers_.Schedule(deps_.clock->Now() + kExpiryInterval,
                                   [this](absl::Duration) { ExpireIdleRuns(); });
}

RunRegistry::~RunRegistry() {
  // First the timers: a running callback may still queue store writes. Not under mu_, which
  // the callback may be waiting for.
  timers_.Close();
  // Before mu_: a callback may be waiting for mu_ (its `done` may call into the registry).
  journal_.WaitForCallbacks();
  absl::MutexLock lock(&mu_);
  timers_.Cancel(expiry_timer_);
  for (auto& [id, run] : runs_) warmups_.CancelTimers(*run);
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
  return journal_.Write(history_.TakeEvicted(), history_.key_count(), std::move(observations),
                        std::move(run_write), std::move(done));
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
                          journal_.Tracked([done = std::move(done), response](absl::Status st) {
                            if (!st.ok()) {
                              return done(absl::UnavailableError(
                                  absl::StrCat("the store could not commit: ", st.message())));
                            }
                            done(response);
                          }));
}

absl::StatusOr<std::unique_ptr<Run>> RunRegistry::BuildRun(const v1::PrewarmRequest& request,
                                                           absl::Time now,
                                                           const store::v1::RunModel* stored) {
  absl::StatusOr<RunRequest> checked =
      ParseRunRequest(request, now,
                      {.dag = options_.dag,
                       .max_future_start = options_.max_future_start,
                       .max_past_start = options_.run_idle_timeout,
                       .default_delay_cost_ratio = options_.planner.delay_cost_ratio});
  if (!checked.ok()) return checked.status();
  PlannerOptions planner_options = options_.planner;
  planner_options.refresh_warmups = options_.max_warmup_refreshes > 0;
  planner_options.delay_cost_ratio = checked->delay_cost_ratio;
  // A dry run has no timer to decide deferred tasks later: every decision at once.
  if (request.dry_run()) planner_options.lazy_planning = false;
  std::optional<RunModel> restored;
  if (stored != nullptr) {
    restored = ModelFromProto(*stored, checked->dag->size());
    if (!restored.has_value()) {
      return absl::DataLossError("the stored run model does not fit its DAG");
    }
  }
  RunModel model = restored.has_value() ? *std::move(restored)
                                        : BuildRunModel(*checked->dag, request.workflow_id(),
                                                        history_, [this, now](absl::string_view s) {
                                                          return deps_.services->Info(s, now);
                                                        });
  store::v1::RunModel to_store;
  if (stored == nullptr) to_store = ModelToProto(model);
  // A restored run's plans are not shown at once; a new run's are (the Prewarm answer).
  std::unique_ptr<Run> run =
      NewPlannedRun(std::move(checked->request), std::move(checked->dag), std::move(model),
                    checked->start, planner_options, now, /*shown=*/stored == nullptr);
  run->model = std::move(to_store);
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
  warmups_.Sync(run, all);
  CountSkips(run, all);
  v1::RunPlan plan = PlanProto(run);
  RunWrite write{RunWrite::Kind::kSnapshot, request.run_id(), RunJournal::Snapshot(run)};
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
  auto response = std::make_shared<v1::ReportTimingResponse>();
  v1::ReportTimingResponse* out = response.get();
  ReportTiming(request, out,
               [response = std::move(response), done = std::move(done)](absl::Status st) {
                 if (!st.ok()) return done(st);
                 done(std::move(*response));
               });
}

void RunRegistry::ReportTiming(const v1::ReportTimingRequest& request,
                               v1::ReportTimingResponse* response,
                               std::function<void(absl::Status)> done) {
  std::function<void()> persisted;
  absl::Status answer;
  {
    absl::MutexLock lock(&mu_);
    answer = ApplyReport(request, response, done, &persisted);
  }
  // Callbacks never run under mu_.
  if (persisted) return persisted();
  if (!answer.ok()) response->Clear();
  done(std::move(answer));
}

absl::Status RunRegistry::ApplyReport(const v1::ReportTimingRequest& request,
                                      v1::ReportTimingResponse* response,
                                      std::function<void(absl::Status)>& done,
                                      std::function<void()>* persisted) {
  if (absl::Status s = CheckReportView(request); !s.ok()) return s;
  const absl::Time now = deps_.clock->Now();
  auto it = runs_.find(request.run_id());
  if (it == runs_.end()) {
    // A repeated last event of a run that it ended (delivery at least once).
    if (auto r = retired_.find(request.run_id());
        r != retired_.end() && ValidateId(request.run_id(), "run_id").ok()) {
      const v1::TaskState ended =
          request.event() == v1::TASK_EVENT_TYPE_FINISHED  ? v1::TASK_STATE_SUCCEEDED
          : request.event() == v1::TASK_EVENT_TYPE_FAILED  ? v1::TASK_STATE_FAILED
          : request.event() == v1::TASK_EVENT_TYPE_SKIPPED ? v1::TASK_STATE_SKIPPED
                                                           : v1::TASK_STATE_UNSPECIFIED;
      for (const v1::TaskPlan& t : r->second.tasks()) {
        if (t.task_id() != request.task_id()) continue;
        if (ended == v1::TASK_STATE_UNSPECIFIED || t.task_state() != ended) break;
        response->set_replan_count(r->second.replan_count());
        response->set_run_finished(true);
        return absl::OkStatus();
      }
    }
    return RunNotActiveError(request.run_id());
  }
  Run& run = *it->second;
  const std::optional<int> task = run.dag->Find(request.task_id());
  if (!task.has_value()) return TaskNotFoundError(request.run_id(), request.task_id());
  const int v = *task;
  absl::StatusOr<v1::ReportTimingRequest> event =
      ParseTaskEvent(request, now, options_.max_clock_skew);
  if (!event.ok()) return event.status();
  if (IsRepeat(run, v, *event)) {
    run.last_event = now;
    response->set_replan_count(run.replans);
    return absl::OkStatus();
  }
  if (run.events >= options_.max_events_per_run) {
    return absl::ResourceExhaustedError(
        absl::StrCat("run '", request.run_id(), "' has reached the limit of ",
                     options_.max_events_per_run, " task events (max_events_per_run)"));
  }
  std::vector<Observation> learned;
  std::vector<int> replanned;
  const bool settled = run.tasks[v].outcome_counted;
  // The full view shows the re-planned tasks' plans: their start quantiles are found while the
  // re-plan has their samples at hand. The summary view never reads them.
  const bool full = request.view() != v1::REPORT_TIMING_VIEW_SUMMARY;
  run.planner->set_start_quantiles_at_once(full);
  absl::Status applied = ApplyEvent(run, *event, now, &learned, &replanned);
  run.planner->set_start_quantiles_at_once(false);
  if (!applied.ok()) return applied;
  // What a restart needs to apply it again exactly: the time it was re-planned as of, and what
  // the container pool decided.
  store::v1::RunEvent record;
  *record.mutable_applied_time() = ToProtoTimestamp(now);
  if (!settled && run.tasks[v].outcome_counted) record.set_outcome(run.tasks[v].outcome);
  if (run.tasks[v].found_warm.has_value()) record.set_found_warm(*run.tasks[v].found_warm);
  run.last_event = now;
  ++run.events;
  // The summary view leaves out the plans (most of a full answer's size and cost).
  if (full) {
    for (int u : replanned) TaskPlanProto(run, u, response->add_replanned_tasks());
  }
  response->set_replanned_task_count(static_cast<int32_t>(replanned.size()));
  response->set_replan_count(run.replans);
  bool finished = true;
  for (int u = 0; u < run.dag->size() && finished; ++u) {
    finished = Terminal(run.planner->progress(u).state);
  }
  response->set_run_finished(finished);
  RunWrite write{RunWrite::Kind::kDelete, request.run_id(), ""};
  if (finished) {
    Retire(request.run_id(), kRunFinished);  // `run` is gone from here on.
  } else {
    *record.mutable_timing() = *std::move(event);
    write = {RunWrite::Kind::kEvent, request.run_id(), record.SerializeAsString()};
  }
  UpdateGauges();
  *persisted = Persist(std::move(learned), std::move(write),
                       [done = std::move(done), response](absl::Status st) {
                         if (!st.ok()) response->Clear();
                         done(st);
                       });
  return absl::OkStatus();  // Unused: `persisted` answers.
}

absl::Status RunRegistry::ApplyEvent(Run& run, const v1::ReportTimingRequest& event, absl::Time now,
                                     std::vector<Observation>* learned,
                                     std::vector<int>* replanned) {
  const int v = *run.dag->Find(event.task_id());
  const TaskSpec& spec = run.dag->task(v);
  TaskRuntime& rt = run.tasks[v];
  const absl::Time at = FromProto(event.event_time(), "event_time").value_or(now);
  const bool replay = learned == nullptr;
  const std::optional<bool> cold =
      event.has_cold() ? std::optional<bool>(event.cold()) : std::nullopt;
  const TaskState state_before = run.planner->progress(v).state;

  absl::StatusOr<std::vector<int>> touched = std::vector<int>{};
  switch (event.event()) {
    case v1::TASK_EVENT_TYPE_STARTED: {
      const TaskProgress before = run.planner->progress(v);
      const absl::Time expected = run.planner->expected_start(v);
      const bool may_start =
          before.state != TaskState::kSucceeded && before.state != TaskState::kSkipped;
      if (may_start && !replay && !spec.service.empty()) AcquireContainer(run, v, at);
      touched = run.planner->Started(v, at, now, ContainerWait(run, v, event, at));
      if (!touched.ok()) return touched.status();
      rt.actual_start = at;
      if (replay) break;
      if (before.state == TaskState::kPending) {
        deps_.metrics->PredictionError(at - expected);
        if (std::optional<Observation> gap = DispatchGapLesson(run, v, at, now)) {
          Learn(*std::move(gap), learned);
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
      if (!spec.service.empty()) {
        SettleOutcome(run, v, cold, started);
        deps_.services->ReleaseContainer(spec.service, TaskKey(run, v), at);
      }
      for (Observation& o : FinishedLessons(run, v, event, started, at, now)) {
        Learn(std::move(o), learned);
      }
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
      if (!replay) {
        if (std::optional<Observation> ran = SkippedLesson(run, v, now)) {
          Learn(*std::move(ran), learned);
        }
      }
      break;
    default:
      break;
  }
  if (std::optional<absl::Duration> c = NewReportedColdStart(run, v, event)) {
    rt.reported_cold_start = *c;  // Also when replayed: a FINISHED after a restart needs it.
    if (!replay && ReportedColdStartIsWhole(rt)) {
      Learn(MakeObservation(Observation::Kind::kColdStart, spec.service, absl::ToDoubleSeconds(*c),
                            now),
            learned);
      deps_.metrics->ColdStartObserved(spec.service, *c);
    }
  }
  if (!replay) {
    // Which children of a branching parent ran together, once all of them are known.
    for (ChildOutcome& o :
         ChildOutcomesSettledBy(*run.planner, run.request.workflow_id(), v, state_before)) {
      Learn(MakeObservation(Observation::Kind::kChildOutcomes, std::move(o.key), o.value, now),
            learned);
    }
  }
  rt.last_event = event.event();
  if (replanned != nullptr) *replanned = *touched;
  if (!touched->empty()) {
    ++run.replans;
    run.plan_time = now;
    // A replay (Restore) schedules nothing: it marks the fired warm-ups afterwards and then
    // schedules what is still pending, once.
    if (!replay) warmups_.Sync(run, *touched);
  }
  return absl::OkStatus();
}

void RunRegistry::SettleOutcome(Run& run, int v, std::optional<bool> reported_cold, absl::Time at) {
  TaskRuntime& rt = run.tasks[v];
  if (rt.outcome_counted) return;
  const std::string& service = run.dag->task(v).service;
  const absl::Duration cold_start = run.planner->expected_cold_start(v);
  const v1::TaskOutcome outcome = DecideOutcome(rt, reported_cold, at);
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

void RunRegistry::Fire(const std::string& run_id, int v, uint64_t generation,
                       absl::Duration lateness) {
  OutgoingWarmup warmup;
  {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return;
    Run& run = *it->second;
    switch (warmups_.Fire(run, v, generation, lateness, &warmup)) {
      case WarmupDispatcher::FireResult::kStale:
        return;
      case WarmupDispatcher::FireResult::kUnregistered:
      case WarmupDispatcher::FireResult::kClaimed:
        UpdateGauges();
        return;
      case WarmupDispatcher::FireResult::kFired:
        ++CountersOf(run.dag->task(v).service).fired;
        UpdateGauges();
        break;
    }
  }
  Send(std::move(warmup));
}

void RunRegistry::CountSkips(const Run& run, const std::vector<int>& tasks) {
  for (int v : tasks) {
    const WarmupDecision d = run.planner->decision(v);
    if (d == WarmupDecision::kSkipAlreadyWarm) {
      deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupSkippedWarm);
    } else if (d == WarmupDecision::kSkipUnlikely) {
      deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupSkippedUnlikely);
    }
  }
}

void RunRegistry::PlanDeferred(const std::string& run_id, uint64_t generation) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  const std::vector<int> touched = warmups_.PlanDeferred(run, generation);
  if (touched.empty()) return;
  // Decided now, as they would have been at the run's start: counted as StartRun counts.
  CountSkips(run, touched);
  UpdateGauges();
}

void RunRegistry::Refresh(const std::string& run_id, int v, uint64_t warmup_id) {
  OutgoingWarmup warmup;
  {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return;
    if (!warmups_.Refresh(*it->second, v, warmup_id, &warmup)) return;
  }
  Send(std::move(warmup));
}

void RunRegistry::Send(OutgoingWarmup warmup) {
  SendWarmup(std::move(warmup), *deps_.warmer, *deps_.delegated,
             [this](uint64_t id, bool success, absl::Duration latency, bool shut_down) {
               (void)OnWarmupResult(id, success, latency, std::nullopt, shut_down);
             });
}

void RunRegistry::AcquireContainer(Run& run, int v, absl::Time at) {
  TaskRuntime& rt = run.tasks[v];
  std::vector<std::string> displaced;
  const bool warm =
      deps_.services->AcquireContainer(run.dag->task(v).service, TaskKey(run, v), at, &displaced);
  if (!rt.found_warm.has_value()) rt.found_warm = warm;
  for (const std::string& task_key : displaced) Rewarm(task_key);
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
  warmups_.Rewarm(run, v);
}

absl::Status RunRegistry::OnWarmupResult(uint64_t warmup_id, bool success, absl::Duration latency,
                                         std::optional<bool> cold, bool shut_down) {
  std::function<void()> persisted;
  {
    absl::MutexLock lock(&mu_);
    std::optional<InFlight> flight = warmups_.TakeInFlight(warmup_id);
    if (!flight.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("warm-up ", warmup_id, " is unknown or already reported"));
    }
    // A run reusing the id of the retired run this warm-up belonged to has its own tasks and
    // warm-ups.
    Run* run = nullptr;
    if (auto found = runs_.find(flight->run_id);
        found != runs_.end() && flight->task < static_cast<int>(found->second->tasks.size()) &&
        found->second->tasks[flight->task].warmup_id == warmup_id) {
      run = found->second.get();
    }
    WarmupDispatcher::Answer answer =
        warmups_.Answered(run, *flight, warmup_id, success, latency, cold, shut_down);
    std::vector<Observation> learned;
    if (answer.lesson.has_value()) Learn(*std::move(answer.lesson), &learned);
    if (answer.failed) ++CountersOf(flight->service).failed;
    persisted = Persist(std::move(learned), {}, nullptr);
  }
  persisted();
  return absl::OkStatus();
}

absl::Status RunRegistry::ReportWarmup(const v1::ReportWarmupRequest& request) {
  absl::StatusOr<WarmupReport> report = ParseWarmupReport(request);
  if (!report.ok()) return report.status();
  return OnWarmupResult(report->id, report->success, report->latency, report->cold);
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
    if (it == runs_.end()) return RunNotActiveError(run_id);
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
      warmups_.Cancel(t);
      deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupCancelled);
    }
    warmups_.CancelRefresh(t);
    // Its holds and unfinished calls end with it.
    if (!run.dag->task(v).service.empty()) {
      deps_.services->ForgetTask(run.dag->task(v).service, TaskKey(run, v));
    }
  }
  if (retired_.contains(run_id)) {  // A reused id: its older retirement is superseded.
    retired_order_.erase(std::find(retired_order_.begin(), retired_order_.end(), run_id));
  }
  warmups_.CancelDeferred(run);
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
    unreported = warmups_.Overdue(now, options_.warmup_report_timeout);
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
        timers_.Schedule(now + kExpiryInterval, [this](absl::Duration) { ExpireIdleRuns(); });
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
  if (!deps_.services->Find(service, nullptr) && history_.ServiceDurations(service) == nullptr &&
      history_.ColdStarts(service) == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("service '", service, "' is not registered and has no history"));
  }
  auto it = counters_.find(service);
  const absl::Time now = deps_.clock->Now();
  return ServiceStatsProto(service, history_, it != counters_.end() ? &it->second : nullptr,
                           deps_.services->WarmUntil(service, now), now);
}

void RunRegistry::UpdateGauges() {
  deps_.metrics->SetActiveRuns(static_cast<int64_t>(runs_.size()));
  deps_.metrics->SetPendingWarmups(warmups_.pending());
}

int RunRegistry::active_runs() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(runs_.size());
}

int RunRegistry::pending_warmups() const {
  absl::MutexLock lock(&mu_);
  return warmups_.pending();
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
  absl::StatusOr<int64_t> observations = journal_.LoadHistory(history_, options_.history.max_keys);
  if (!observations.ok()) return observations.status();
  absl::StatusOr<StoredRuns> stored = journal_.LoadRuns();
  if (!stored.ok()) return stored.status();
  const absl::Time now = deps_.clock->Now();
  int restored = 0;
  std::vector<std::string>& unreadable = stored->unreadable;
  auto replay = [this](Run& run, const v1::ReportTimingRequest& event, absl::Time as_of)
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                      return ApplyEvent(run, event, as_of, nullptr).ok();
                    };
  std::vector<PoolOp> pool_ops;
  for (auto& [run_id, snapshot] : stored->snapshots) {
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
    for (const store::v1::RunEvent& e : stored->logs[run_id]) {
      ReplayRecord(run, e, seq++, now, replay, &pool_ops);
    }
    for (int v = 0; v < run.dag->size(); ++v) {
      TaskRuntime& rt = run.tasks[v];
      // Killed while its warm-up was in flight: the request left, so count it answered when it
      // was expected to be.
      if (rt.warmup == v1::WARMUP_STATE_FIRED) {
        rt.warmup = v1::WARMUP_STATE_READY;
        rt.ready_at = rt.fired_at + run.planner->expected_cold_start(v);
        rt.answered = rt.ready_at;
      }
      if (rt.warmup == v1::WARMUP_STATE_READY) rt.warmup_id = warmups_.NextId();
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
        warmups_.ScheduleRefresh(run, v, run.tasks[v].answered);
      }
    }
    std::vector<int> all(run.dag->size());
    for (int v = 0; v < run.dag->size(); ++v) all[v] = v;
    warmups_.Sync(run, all);
    runs_[run_id] = *std::move(built);
    ++restored;
  }
  // The container pools, as the restored runs' calls and warm-ups left them.
  ApplyPoolOps(std::move(pool_ops), *deps_.services);
  UpdateGauges();
  PREWARM_LOG(INFO) << "restored " << deps_.services->size() << " services, " << *observations
                    << " observations and " << restored << " active runs";
  for (std::string& id : unreadable) {
    Persist({}, {RunWrite::Kind::kDelete, std::move(id), ""}, nullptr)();
  }
  return absl::OkStatus();
}

}  // namespace prewarm
