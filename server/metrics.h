#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prewarm {

// Values of the bounded labels. A value outside its set, an empty value, and a service or
// method beyond its cap are all reported as kOtherLabel, so a caller bug can never explode the
// number of series.
inline constexpr char kOtherLabel[] = "_other";

// `result` of prewarm_warmups_total: fired (request sent, managed or delegated), ready (the
// service answered: it is warm), failed (error or timeout after the retries), skipped_warm
// (expected warm already), skipped_unlikely (task unlikely to run), cancelled (run cancelled or
// task skipped), refreshed (a ready warm-up sent again before the keep-alive ran out, its task
// still pending), refresh_failed, displaced (another call took the container warmed for the task:
// warmed again).
inline constexpr char kWarmupFired[] = "fired";
inline constexpr char kWarmupReady[] = "ready";
inline constexpr char kWarmupFailed[] = "failed";
inline constexpr char kWarmupSkippedWarm[] = "skipped_warm";
inline constexpr char kWarmupSkippedUnlikely[] = "skipped_unlikely";
inline constexpr char kWarmupCancelled[] = "cancelled";
inline constexpr char kWarmupRefreshed[] = "refreshed";
inline constexpr char kWarmupRefreshFailed[] = "refresh_failed";
inline constexpr char kWarmupDisplaced[] = "displaced";

// `outcome` of prewarm_task_starts_total: hit (service warm on arrival), miss (cold: the task
// paid the cold start), late (warm-up still in flight: the task paid part of it).
inline constexpr char kTaskHit[] = "hit";
inline constexpr char kTaskMiss[] = "miss";
inline constexpr char kTaskLate[] = "late";

// `outcome` of prewarm_runs_finished_total.
inline constexpr char kRunFinished[] = "finished";
inline constexpr char kRunCancelled[] = "cancelled";
inline constexpr char kRunExpired[] = "expired";

struct MetricsOptions {
  // Where /metrics is served, "host:port"; port 0 picks a free port (see port()). Empty: no
  // HTTP listener, Scrape() still works (tests, embedding).
  std::string listen_address = "127.0.0.1:9464";
  // Distinct `service` label values; services seen after that share kOtherLabel.
  int max_service_labels = 1000;
  // Labels of prewarm_build_info.
  std::string version = "0.1.0";
  std::string git_commit = "unknown";
};

// All prewarm metrics, in the Prometheus data model, plus the standard process_* metrics. Names
// and labels are a public contract (dashboards and alerts use them): the full list is in
// metrics.cc. Durations are recorded in seconds; negative durations count as zero and infinite
// ones are ignored. Labels never carry run or task ids: `method` (capped at 64 values), `code`
// (gRPC code names), `kind` (capped at 32), `service` (capped by max_service_labels) and the
// fixed sets above.
//
// Example:
//   absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create({});
//   (*metrics)->RpcHandled("Prewarm", "OK", absl::Milliseconds(3));
//
// Thread-safe: every method may be called concurrently.
class Metrics {
 public:
  // Starts the HTTP listener unless options.listen_address is empty. Errors: InvalidArgument for
  // bad options, Unavailable naming the address when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(MetricsOptions options);

  virtual ~Metrics() = default;

  // The bound port of the HTTP listener (the real one when asked for port 0); 0 without one.
  virtual int port() const = 0;
  // Everything in the text exposition format: what /metrics serves, minus prometheus-cpp's own
  // exposer_* metrics about the HTTP endpoint.
  virtual std::string Scrape() const = 0;

  // RPCs. `method` is the short RPC name ("Prewarm"); `code` a gRPC code name ("OK",
  // "INVALID_ARGUMENT"), as absl::StatusCodeToString gives.
  virtual void RpcHandled(absl::string_view method, absl::string_view code,
                          absl::Duration latency) = 0;

  // Warm-ups. `result` is one of the kWarmup* values.
  virtual void WarmupResult(absl::string_view service, absl::string_view result) = 0;
  // Time from sending a warm-up to its answer.
  virtual void WarmupLatency(absl::string_view service, absl::Duration latency) = 0;
  // A cold start measured, by a warm-up or reported by a task.
  virtual void ColdStartObserved(absl::string_view service, absl::Duration cold) = 0;
  // Firing time minus the planned deadline; early firing counts as zero.
  virtual void WarmupLateness(absl::Duration lateness) = 0;

  // Task starts. `outcome` is one of the kTask* values.
  virtual void TaskStart(absl::string_view service, absl::string_view outcome) = 0;
  // Cold-start time a warm-up kept off a task's start.
  virtual void ColdStartHidden(absl::string_view service, absl::Duration hidden) = 0;
  // Time a warmed container sat idle, until used or reclaimed: the cost of warming early.
  virtual void IdleWarmSeconds(absl::string_view service, absl::Duration idle) = 0;
  // Actual minus expected start of a task; recorded as its absolute value.
  virtual void PredictionError(absl::Duration signed_error) = 0;

  // Current sizes.
  virtual void SetActiveRuns(int64_t n) = 0;
  virtual void SetPendingWarmups(int64_t n) = 0;
  virtual void SetRegisteredServices(int64_t n) = 0;
  // Keys held by the learned history (bounded by its max_keys), and keys evicted from it.
  virtual void SetHistoryKeys(int64_t n) = 0;
  virtual void HistoryKeysEvicted(int64_t n) = 0;
  // Hit/miss counters of unregistered services evicted (bounded by
  // max_unregistered_service_counters).
  virtual void ServiceCountersEvicted(int64_t n) = 0;

  // One commit of the history store (a group of writes).
  virtual void StoreWrite(bool ok, absl::Duration commit_latency) = 0;
  // One round trip of the PostgreSQL store: a transaction holding a group of writes, committed or
  // not (the SQLite store has no round trip; StoreWrite covers both).
  virtual void StoreRoundTrip(absl::Duration latency) = 0;
  // Leadership among replicas sharing a PostgreSQL store: whether this replica leads now
  // (always 1 with SQLite), and one takeover by this replica.
  virtual void SetLeader(bool leading) = 0;
  virtual void LeaderTakeover() = 0;
  // An observation added to history; `kind` names what was observed ("task_duration",
  // "cold_start", ...), a small fixed vocabulary of the caller's.
  virtual void ObservationRecorded(absl::string_view kind) = 0;

  // Runs. `outcome` is one of the kRun* values.
  virtual void RunStarted() = 0;
  virtual void RunFinished(absl::string_view outcome) = 0;
};

}  // namespace prewarm
