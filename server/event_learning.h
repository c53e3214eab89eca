#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "predictor/history.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/history_store.h"
#include "server/run_state.h"

namespace prewarm {

// What a task event or a warm-up result teaches: pure functions of a run's state and the event,
// returning observations (for the history and the store) and outcomes. They change nothing; the
// registry applies what they return, counts it and stores it. `event` is always an event that
// ParseTaskEvent accepted (event_time filled in, cold_start in range); `v` a task of the run.

// The history window an observation kind feeds, and back.
HistoryWindow WindowOf(Observation::Kind kind);
Observation::Kind KindOf(HistoryWindow window);
// The kind's label in prewarm_observations_total.
const char* KindName(Observation::Kind kind);
Observation MakeObservation(Observation::Kind kind, std::string key, double value, absl::Time at);

// Whether `event` repeats what task `v` already did and carries nothing new: STARTED while it
// runs, SERVICE_INVOKED after SERVICE_INVOKED, FINISHED / FAILED / SKIPPED of a task that ended
// so. A repeat whose coldness or cold start is still unknown to the task is news, not a repeat.
bool IsRepeat(const Run& run, int v, const v1::ReportTimingRequest& event);

// How long task v's call waits for a container (TaskProgress::container_wait) when it starts at
// `at`: none without a service or for a reported warm call, the reported cold start of a cold
// one (nullopt: cold, cost unknown), else what its warm-up says (READY: none; FIRED: the rest of
// the warm-up's expected cold start), else what the container pool saw.
std::optional<absl::Duration> ContainerWait(const Run& run, int v,
                                            const v1::ReportTimingRequest& event, absl::Time at);

// Whether task v found its service warm, for a call at `at`: from the reported coldness when
// there is one (a cold call made while the task's own warm-up was starting the service is LATE:
// it waited only for the rest of that start), else from the task's warm-up (READY: HIT, FIRED:
// LATE), else from what the container pool saw.
v1::TaskOutcome DecideOutcome(const TaskRuntime& rt, std::optional<bool> reported_cold,
                              absl::Time at);

// The dispatch gap a STARTED event of a pending task teaches: the time from its last parent's
// finish to `at`, once every parent is done (nothing for a root or a start before that finish).
std::optional<Observation> DispatchGapLesson(const Run& run, int v, absl::Time at, absl::Time now);

// The cold start task v's FINISHED subtracts from its run time: the one the event reports, else
// one reported before, else the expected cold start for a MISS, else the part of it the task
// waited for when LATE. REQUIRES: the task's outcome is settled.
absl::Duration ColdPenalty(const Run& run, int v, const v1::ReportTimingRequest& event,
                           absl::Time started);

// What a FINISHED of task v that started at `started` and finished at `at` teaches: its warm run
// time (task and, with a service, service duration) and that it ran.
// REQUIRES: with a service, the task's outcome is settled.
std::vector<Observation> FinishedLessons(const Run& run, int v,
                                         const v1::ReportTimingRequest& event, absl::Time started,
                                         absl::Time at, absl::Time now);

// What a SKIPPED of task v teaches: that its branch did not run, unless none of its upstreams
// ran (run probabilities are conditional on an upstream having run).
// REQUIRES: the planner already applied the skip.
std::optional<Observation> SkippedLesson(const Run& run, int v, absl::Time now);

// A cold start the event reports for task v's call that the task has not learned yet (once per
// task: reporters repeat it on SERVICE_INVOKED and FINISHED); nullopt for a warm call or a task
// without a service.
std::optional<absl::Duration> NewReportedColdStart(const Run& run, int v,
                                                   const v1::ReportTimingRequest& event);
// Whether a reported cold start of task v measures the service's whole cold start: not when the
// task was LATE (it waited only for the rest of its warm-up's start).
bool ReportedColdStartIsWhole(const TaskRuntime& rt);

// What an answered warm-up of `service` teaches: a cold start when it started a container, else
// the latency of a warm call. Nothing when it was cold but `joined_start`: sent while another
// warm-up of the service was starting a container that serves more than one request at once, it
// may have joined that start and waited only for the rest of it (issue 13), which is no measure
// of the whole.
std::optional<Observation> WarmupLesson(absl::string_view service, absl::Duration latency,
                                        bool cold, bool joined_start, absl::Time now);

}  // namespace prewarm
