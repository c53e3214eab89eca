#include "server/run_journal.h"

#include <algorithm>
#include <atomic>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "server/event_learning.h"
#include "server/log.h"
#include "server/proto_time.h"

namespace prewarm {
namespace {

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

}  // namespace

RunJournal::RunJournal(HistoryStore* store, Metrics* metrics, Clock* clock)
    : store_(store), metrics_(metrics), clock_(clock) {}

CommitCallback RunJournal::Tracked(CommitCallback fn) {
  {
    absl::MutexLock lock(&callbacks_->mu);
    ++callbacks_->outstanding;
  }
  // The callback keeps the counter alive by itself: the journal's owner may return (and free the
  // journal) as soon as the count reaches zero, while this thread still unlocks it.
  return [callbacks = callbacks_, fn = std::move(fn)](absl::Status status) {
    if (fn) fn(std::move(status));
    absl::MutexLock lock(&callbacks->mu);
    --callbacks->outstanding;
  };
}

void RunJournal::WaitForCallbacks() {
  Callbacks* callbacks = callbacks_.get();
  absl::MutexLock lock(&callbacks->mu);
  auto drained = [callbacks]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(callbacks->mu) {
    return callbacks->outstanding == 0;
  };
  callbacks->mu.Await(absl::Condition(&drained));
}

std::function<void()> RunJournal::Write(std::vector<std::pair<HistoryWindow, std::string>> evicted,
                                        size_t history_keys, std::vector<Observation> observations,
                                        RunWrite run_write,
                                        std::function<void(absl::Status)> done) {
  struct Pending {
    std::atomic<int> remaining;
    absl::Mutex mu;
    absl::Status first_error ABSL_GUARDED_BY(mu);
    std::function<void(absl::Status)> done;
  };
  // Keys the history evicted (adding these observations, or replaying events at restore) leave
  // the store too, queued before the new observations. Those cannot be of an evicted key: a batch
  // adds a few keys and eviction takes the least recent of many (the config requires at least
  // 100).
  if (!evicted.empty()) {
    metrics_->HistoryKeysEvicted(static_cast<int64_t>(evicted.size()));
    for (auto& [window, key] : evicted) {
      store_->DeleteObservations(KindOf(window), std::move(key), Tracked(nullptr));
    }
  }
  metrics_->SetHistoryKeys(static_cast<int64_t>(history_keys));
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
  const absl::Duration started = clock_->MonotonicNow();
  auto on_commit = [this, pending, started, finish_one](absl::Status status) {
    metrics_->StoreWrite(status.ok(), clock_->MonotonicNow() - started);
    if (!status.ok()) {
      absl::MutexLock lock(&pending->mu);
      if (pending->first_error.ok()) {
        pending->first_error =
            absl::UnavailableError(absl::StrCat("the store could not commit: ", status.message()));
      }
    }
    finish_one();
  };
  for (Observation& o : observations) store_->AppendObservation(std::move(o), Tracked(on_commit));
  switch (run_write.kind) {
    case RunWrite::Kind::kNone:
      break;
    case RunWrite::Kind::kSnapshot:
      store_->PutRun(std::move(run_write.run_id), std::move(run_write.bytes), Tracked(on_commit));
      break;
    case RunWrite::Kind::kEvent:
      store_->AppendRunEvent(std::move(run_write.run_id), std::move(run_write.bytes),
                             Tracked(on_commit));
      break;
    case RunWrite::Kind::kDelete:
      store_->DeleteRun(std::move(run_write.run_id), Tracked(on_commit));
      break;
  }
  return finish_one;
}

void RunJournal::LogDeferredPlan(const Run& run, absl::Time at) {
  store::v1::RunEvent record;
  *record.mutable_deferred_planned() = ToProtoTimestamp(at);
  *record.mutable_applied_time() = ToProtoTimestamp(at);
  store_->AppendRunEvent(run.request.run_id(), record.SerializeAsString(), Tracked(nullptr));
}

void RunJournal::LogWarmup(const Run& run, int v, store::v1::WarmupRecord::Kind kind, absl::Time at,
                           absl::Time warm_until, bool cold, absl::Time needed) {
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
  store_->AppendRunEvent(run.request.run_id(), record.SerializeAsString(), Tracked(nullptr));
}

std::string RunJournal::Snapshot(const Run& run) {
  store::v1::RunSnapshot snapshot;
  *snapshot.mutable_request() = run.request;
  *snapshot.mutable_last_event_time() = ToProtoTimestamp(run.submitted);
  *snapshot.mutable_model() = run.model;
  return snapshot.SerializeAsString();
}

absl::StatusOr<int64_t> RunJournal::LoadHistory(History& history, int max_keys) {
  // The store loads keys in (kind, key) order, not in the order they were observed: load them
  // all without a cap while noting each key's newest observation, touch them oldest first so that
  // eviction order survives the restart, then evict down to the cap (those leave the store too).
  // Memory exceeds the cap only while loading a store that holds more keys than it (written with
  // a larger cap, or before there was one), and only once.
  using KindKey = std::pair<int, std::string>;
  absl::flat_hash_map<KindKey, absl::Time> newest;
  history.SetMaxKeys(0);
  int64_t observations = 0;
  absl::Status status = store_->LoadObservations([&](const Observation& o) {
    history.Add(WindowOf(o.kind), o.key, o.value);
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
    history.Touch(WindowOf(static_cast<Observation::Kind>(kind_key.first)), kind_key.second);
  }
  history.SetMaxKeys(max_keys);
  std::vector<std::pair<HistoryWindow, std::string>> dropped = history.TakeEvicted();
  for (auto& [window, key] : dropped) {
    store_->DeleteObservations(KindOf(window), std::move(key), Tracked(nullptr));
  }
  if (!dropped.empty()) {
    PREWARM_LOG(WARNING) << "the store held " << by_age.size() << " history keys, more than "
                         << "max_history_keys " << max_keys << ": dropped the " << dropped.size()
                         << " least recently observed";
    metrics_->HistoryKeysEvicted(static_cast<int64_t>(dropped.size()));
  }
  metrics_->SetHistoryKeys(static_cast<int64_t>(history.key_count()));
  return observations;
}

absl::StatusOr<StoredRuns> RunJournal::LoadRuns() {
  StoredRuns out;
  absl::Status status = store_->LoadRuns([&](absl::string_view run_id, absl::string_view bytes) {
    store::v1::RunSnapshot snapshot;
    if (!snapshot.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      out.unreadable.emplace_back(run_id);
      return;
    }
    out.snapshots[run_id] = std::move(snapshot);
  });
  if (!status.ok()) return status;
  status = store_->LoadRunEvents([&](absl::string_view run_id, absl::string_view bytes) {
    store::v1::RunEvent event;
    if (event.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      out.logs[run_id].push_back(std::move(event));
    }
  });
  if (!status.ok()) return status;
  for (const auto& [run_id, log] : out.logs) {
    // Events of a run retired while its last events were queued: clean them up.
    if (!out.snapshots.contains(run_id)) out.unreadable.push_back(run_id);
  }
  return out;
}

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
  for (const ChildOutcomes& c : model.child_outcomes) {
    store::v1::ChildOutcomes* m = out.add_child_outcomes();
    m->set_parent(c.parent);
    m->mutable_masks()->Add(c.masks.begin(), c.masks.end());
  }
  return out;
}

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
  for (const store::v1::ChildOutcomes& c : stored.child_outcomes()) {
    // Ascending, distinct parents inside the DAG: what BuildRunModel produces.
    const int previous = model.child_outcomes.empty() ? -1 : model.child_outcomes.back().parent;
    if (c.parent() <= previous || c.parent() >= tasks || c.masks().empty()) return std::nullopt;
    model.child_outcomes.push_back({c.parent(), {c.masks().begin(), c.masks().end()}});
  }
  if (!ok || model.dispatch_gap.distribution == nullptr) return std::nullopt;
  return model;
}

void ReplayRecord(
    Run& run, const store::v1::RunEvent& e, int64_t seq, absl::Time now,
    const std::function<bool(Run&, const v1::ReportTimingRequest&, absl::Time as_of)>& apply_event,
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
    if (!apply_event(run, timing, as_of)) return;
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
  if (e.has_deferred_planned()) {
    run.planner->PlanDeferred(FromProto(e.deferred_planned(), "").value_or(applied));
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

void ApplyPoolOps(std::vector<PoolOp> ops, ServiceRegistry& services) {
  std::sort(ops.begin(), ops.end(), [](const PoolOp& a, const PoolOp& b) {
    return std::tie(a.applied, a.run_id, a.seq) < std::tie(b.applied, b.run_id, b.seq);
  });
  for (const PoolOp& op : ops) {
    std::vector<std::string>
        displaced;  // Its own record in the displaced run's log says what followed.
    switch (op.kind) {
      case PoolOp::Kind::kAcquire:
        services.AcquireContainer(op.service, op.task_key, op.at, &displaced);
        break;
      case PoolOp::Kind::kRelease:
        services.ReleaseContainer(op.service, op.task_key, op.at);
        break;
      case PoolOp::Kind::kForget:
        services.ForgetTask(op.service, op.task_key);
        break;
      case PoolOp::Kind::kAnswered:
        services.WarmupAnswered(op.service, op.task_key, op.at, op.cold);
        if (op.forget_after) services.ForgetTask(op.service, op.task_key);
        break;
      case PoolOp::Kind::kClaim:
        services.ClaimContainer(op.service, op.task_key, op.at, op.needed);
        break;
    }
  }
}

}  // namespace prewarm
