#include "server/warmup_dispatcher.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/event_learning.h"
#include "server/log.h"
#include "server/proto_time.h"

namespace prewarm {

TimerQueue::TimerId GuardedTimers::Schedule(absl::Time deadline, TimerQueue::Callback fn) {
  return timers_->Schedule(deadline, [state = state_, fn = std::move(fn)](absl::Duration lateness) {
    {
      absl::MutexLock lock(&state->mu);
      if (state->closed) return;  // `fn` would use a destroyed owner.
      ++state->running;
    }
    fn(lateness);
    absl::MutexLock lock(&state->mu);
    --state->running;
  });
}

void GuardedTimers::Close() {
  State* state = state_.get();
  absl::MutexLock lock(&state->mu);
  state->closed = true;
  auto idle = [state]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) { return state->running == 0; };
  state->mu.Await(absl::Condition(&idle));
}

void SendWarmup(OutgoingWarmup warmup, HttpWarmer& warmer, DelegatedWarmups& delegated,
                const std::function<void(uint64_t id, bool success, absl::Duration latency,
                                         bool shut_down)>& result) {
  if (warmup.service.mode() == v1::WARMUP_MODE_DELEGATED) {
    const uint64_t id = std::stoull(warmup.instruction.warmup_id());
    if (delegated.Publish(warmup.instruction) == 0) {
      PREWARM_LOG(WARNING) << "no WatchWarmups subscriber for delegated service '"
                           << warmup.service.name() << "'; warm-up " << id << " is lost";
      result(id, false, absl::ZeroDuration(), false);
    }
    return;
  }
  warmer.Fire(std::move(warmup.http), [result](const WarmupResult& r) {
    if (!r.success) {
      PREWARM_LOG(WARNING) << "warm-up " << r.id << " failed after " << r.attempts
                           << " attempt(s): " << r.error;
    }
    result(r.id, r.success, r.latency, /*shut_down=*/r.error == "shut down");
  });
}

WarmupDispatcher::WarmupDispatcher(Options options, Deps deps, Hooks hooks)
    : options_(options), deps_(deps), hooks_(std::move(hooks)) {}

void WarmupDispatcher::Cancel(TaskRuntime& task) {
  if (task.warmup != v1::WARMUP_STATE_PENDING) return;
  deps_.timers->Cancel(task.timer);
  --pending_warmups_;
  task.warmup = v1::WARMUP_STATE_CANCELLED;
  task.scheduled_for = absl::InfiniteFuture();
}

void WarmupDispatcher::CancelTimers(Run& run) {
  for (TaskRuntime& t : run.tasks) {
    if (t.warmup == v1::WARMUP_STATE_PENDING) deps_.timers->Cancel(t.timer);
    if (t.refresh_timer != 0) deps_.timers->Cancel(t.refresh_timer);
  }
  CancelDeferred(run);
}

void WarmupDispatcher::CancelDeferred(Run& run) {
  if (run.deferred_timer != 0) deps_.timers->Cancel(run.deferred_timer);
  run.deferred_timer = 0;
  run.deferred_at = absl::InfiniteFuture();
}

std::vector<int> WarmupDispatcher::PlanDeferred(Run& run, uint64_t generation) {
  if (run.deferred_generation != generation || run.deferred_timer == 0) return {};
  run.deferred_timer = 0;
  run.deferred_at = absl::InfiniteFuture();
  const absl::Time now = deps_.clock->Now();
  std::vector<int> touched = run.planner->PlanDeferred(now);
  // Logged before what Sync logs (warm-ups fired at once), in the order a restart replays them.
  deps_.journal->LogDeferredPlan(run, now);
  Sync(run, touched);
  return touched;
}

void WarmupDispatcher::Sync(Run& run, const std::vector<int>& tasks) {
  const std::string run_id = run.request.run_id();
  for (int v : tasks) {
    TaskRuntime& rt = run.tasks[v];
    if (run.planner->progress(v).state != TaskState::kPending) CancelRefresh(rt);
    if (rt.warmup == v1::WARMUP_STATE_FIRED || rt.warmup == v1::WARMUP_STATE_READY ||
        rt.warmup == v1::WARMUP_STATE_FAILED) {
      continue;  // Already fired: nothing left to move.
    }
    if (run.planner->decision(v) != WarmupDecision::kWarm) {
      if (rt.warmup == v1::WARMUP_STATE_PENDING) {
        Cancel(rt);
        deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupCancelled);
        if (run.planner->progress(v).state != TaskState::kPending) {
          deps_.journal->LogWarmup(run, v, store::v1::WarmupRecord::KIND_CANCELLED,
                                   deps_.clock->Now(), absl::InfinitePast());
        }
      }
      if (run.planner->progress(v).state == TaskState::kPending) rt.warmup = v1::WARMUP_STATE_NONE;
      continue;
    }
    const absl::Time warmup_time = run.planner->warmup_time(v);
    if (rt.warmup == v1::WARMUP_STATE_PENDING) {
      if (rt.scheduled_for == warmup_time) continue;
      deps_.timers->Cancel(rt.timer);
    } else {
      ++pending_warmups_;
    }
    rt.warmup = v1::WARMUP_STATE_PENDING;
    rt.scheduled_for = warmup_time;
    const uint64_t generation = ++rt.generation;
    rt.timer = deps_.timers->Schedule(
        warmup_time, [due = hooks_.due, run_id, v, generation](absl::Duration lateness) {
          due(run_id, v, generation, lateness);
        });
  }
  // One timer per run for its deferred tasks, at the earliest of them.
  const absl::Time next = run.planner->NextDeferredPlan();
  if (next == run.deferred_at) return;
  CancelDeferred(run);
  if (next == absl::InfiniteFuture()) return;
  run.deferred_at = next;
  const uint64_t generation = run.deferred_generation = ++deferred_generations_;
  run.deferred_timer = deps_.timers->Schedule(
      next,
      [due = hooks_.deferred_due, run_id, generation](absl::Duration) { due(run_id, generation); });
}

WarmupDispatcher::FireResult WarmupDispatcher::Fire(Run& run, int v, uint64_t generation,
                                                    absl::Duration lateness, OutgoingWarmup* out) {
  TaskRuntime& rt = run.tasks[v];
  if (rt.warmup != v1::WARMUP_STATE_PENDING || rt.generation != generation) {
    return FireResult::kStale;
  }
  --pending_warmups_;
  const std::string& name = run.dag->task(v).service;
  // The planner's accessors, not plan(): that formats a reason and may find start quantiles.
  const absl::Time expected_start = run.planner->expected_start(v);
  const absl::Time now = deps_.clock->Now();
  v1::Service service;
  if (!deps_.services->Find(name, &service)) {
    rt.warmup = v1::WARMUP_STATE_NONE;  // Unregistered since the plan was made.
    return FireResult::kUnregistered;
  }
  // Another run may have left a container free that stays warm until the task starts: hold it
  // for the task instead of warming another. (A task that holds one already and still plans a
  // warm-up expects to start after it is reclaimed: the warm-up refreshes it.)
  const std::string key = TaskKey(run, v);
  if (deps_.services->HeldUntil(name, key, now) < now &&
      deps_.services->ClaimContainer(name, key, now, expected_start)) {
    rt.warmup = v1::WARMUP_STATE_NONE;
    const absl::Time held = deps_.services->HeldUntil(name, key, now);
    run.planner->SetTaskWarmUntil(v, held);
    deps_.journal->LogWarmup(run, v, store::v1::WarmupRecord::KIND_CLAIMED, now, held, false,
                             expected_start);
    Sync(run, run.planner->Replan(v, now));  // Its descendants need not wait for C.
    deps_.metrics->WarmupResult(name, kWarmupSkippedWarm);
    return FireResult::kClaimed;
  }
  rt.warmup = v1::WARMUP_STATE_FIRED;
  rt.fired_at = now;
  // Tell this run's planner: re-plans must not count the task's own cold start again.
  const absl::Time warm_until =
      now + run.planner->expected_cold_start(v) + deps_.services->Info(name).keep_alive;
  run.planner->SetTaskWarmUntil(v, warm_until);
  rt.warmup_id = NextId();
  deps_.metrics->WarmupResult(name, kWarmupFired);
  deps_.metrics->WarmupLateness(lateness);
  // Remember the firing, so that a restart does not fire it again.
  deps_.journal->LogWarmup(run, v, store::v1::WarmupRecord::KIND_FIRED, now, warm_until);
  *out = Prepare(run, v, service, rt.warmup_id, /*refresh=*/false);
  return FireResult::kFired;
}

OutgoingWarmup WarmupDispatcher::Prepare(const Run& run, int v, const v1::Service& service,
                                         uint64_t id, bool refresh) {
  const std::string& run_id = run.request.run_id();
  const absl::Time now = deps_.clock->Now();
  InFlight& flight = in_flight_[id] = InFlight{run_id, v, service.name(), now, refresh};
  if (!refresh) {
    int& starting = starting_[service.name()];
    flight.joined_start = starting > 0 && service.container_concurrency() != 1;
    ++starting;
  }
  OutgoingWarmup out;
  out.service = service;
  if (service.mode() == v1::WARMUP_MODE_DELEGATED) {
    out.instruction.set_warmup_id(absl::StrCat(id));
    out.instruction.set_service(service.name());
    out.instruction.set_run_id(run_id);
    out.instruction.set_task_id(run.dag->task(v).task_id);
    *out.instruction.mutable_warmup_time() =
        ToProtoTimestamp(refresh ? now : run.planner->warmup_time(v));
    *out.instruction.mutable_expected_start_time() =
        ToProtoTimestamp(run.planner->expected_start(v));
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

void WarmupDispatcher::ScheduleRefresh(Run& run, int v, absl::Time answered) {
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
  rt.refresh_timer = deps_.timers->Schedule(
      answered + keep_alive * 0.9, [refresh_due = hooks_.refresh_due, run_id = run.request.run_id(),
                                    v, id](absl::Duration) { refresh_due(run_id, v, id); });
}

void WarmupDispatcher::CancelRefresh(TaskRuntime& task) {
  if (task.refresh_timer == 0) return;
  deps_.timers->Cancel(task.refresh_timer);
  task.refresh_timer = 0;
}

void WarmupDispatcher::Rewarm(Run& run, int v) {
  TaskRuntime& rt = run.tasks[v];
  if (rt.warmup == v1::WARMUP_STATE_PENDING || rt.warmup == v1::WARMUP_STATE_FIRED) return;
  CancelRefresh(rt);
  deps_.metrics->WarmupResult(run.dag->task(v).service, kWarmupDisplaced);
  // Plan it again as cold: a passed deadline fires at once.
  rt.warmup = v1::WARMUP_STATE_NONE;
  run.planner->SetTaskWarmUntil(v, absl::InfinitePast());
  const absl::Time now = deps_.clock->Now();
  deps_.journal->LogWarmup(run, v, store::v1::WarmupRecord::KIND_DISPLACED, now,
                           absl::InfinitePast());
  Sync(run, run.planner->Replan(v, now));
}

bool WarmupDispatcher::Refresh(Run& run, int v, uint64_t warmup_id, OutgoingWarmup* out) {
  TaskRuntime& rt = run.tasks[v];
  if (rt.warmup_id != warmup_id || rt.refresh_timer == 0) return false;  // Stale timer.
  rt.refresh_timer = 0;
  if (rt.warmup != v1::WARMUP_STATE_READY ||
      run.planner->progress(v).state != TaskState::kPending) {
    return false;
  }
  v1::Service service;
  if (!deps_.services->Find(run.dag->task(v).service, &service)) return false;
  ++rt.refreshes;
  deps_.journal->LogWarmup(run, v, store::v1::WarmupRecord::KIND_REFRESHED, deps_.clock->Now(),
                           absl::InfinitePast());
  deps_.metrics->WarmupResult(service.name(), kWarmupRefreshed);
  *out = Prepare(run, v, service, rt.warmup_id, /*refresh=*/true);
  return true;
}

std::optional<InFlight> WarmupDispatcher::TakeInFlight(uint64_t id) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return std::nullopt;
  InFlight flight = std::move(it->second);
  in_flight_.erase(it);
  if (!flight.refresh) {
    if (auto s = starting_.find(flight.service); s != starting_.end() && --s->second == 0) {
      starting_.erase(s);
    }
  }
  return flight;
}

std::vector<uint64_t> WarmupDispatcher::Overdue(absl::Time now, absl::Duration timeout) const {
  std::vector<uint64_t> out;
  for (const auto& [id, flight] : in_flight_) {
    if (now - flight.fired_at > timeout) out.push_back(id);
  }
  return out;
}

WarmupDispatcher::Answer WarmupDispatcher::Answered(Run* run, const InFlight& flight,
                                                    uint64_t warmup_id, bool success,
                                                    absl::Duration latency,
                                                    std::optional<bool> cold, bool shut_down) {
  Answer answer;
  const absl::Time now = deps_.clock->Now();
  TaskRuntime* rt = run != nullptr ? &run->tasks[flight.task] : nullptr;
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
      deps_.journal->LogWarmup(*run, flight.task, store::v1::WarmupRecord::KIND_READY, now, held,
                               cold.value_or(was_cold));
    }
  } else if (rt != nullptr && !flight.refresh && rt->warmup == v1::WARMUP_STATE_FIRED &&
             !shut_down) {
    deps_.journal->LogWarmup(*run, flight.task, store::v1::WarmupRecord::KIND_FAILED, now,
                             absl::InfinitePast());
  }
  if (flight.refresh) {
    // Sent to a warm container: nothing to learn of its cold start.
    if (success) {
      if (holds && rt->warmup == v1::WARMUP_STATE_READY) ScheduleRefresh(*run, flight.task, now);
    } else {
      deps_.metrics->WarmupResult(flight.service, kWarmupRefreshFailed);
    }
  } else if (success) {
    deps_.metrics->WarmupLatency(flight.service, latency);
    deps_.metrics->WarmupResult(flight.service, kWarmupReady);
    answer.lesson =
        WarmupLesson(flight.service, latency, cold.value_or(was_cold), flight.joined_start, now);
    if (answer.lesson.has_value() && answer.lesson->kind == Observation::Kind::kColdStart) {
      deps_.metrics->ColdStartObserved(flight.service, latency);
    }
    if (rt != nullptr && rt->warmup == v1::WARMUP_STATE_FIRED) {
      rt->warmup = v1::WARMUP_STATE_READY;
      rt->ready_at = now;
      ScheduleRefresh(*run, flight.task, now);
    }
  } else {
    deps_.metrics->WarmupResult(flight.service, kWarmupFailed);
    answer.failed = true;
    if (rt != nullptr && rt->warmup == v1::WARMUP_STATE_FIRED) {
      rt->warmup = v1::WARMUP_STATE_FAILED;
    }
  }
  return answer;
}

}  // namespace prewarm
