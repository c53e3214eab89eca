#include "server/metrics.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/labels.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/process_collector.h"

// The metrics, a public contract:
//
//   counters
//     prewarm_rpcs_total{method,code}
//     prewarm_warmups_total{service,result}
//     prewarm_task_starts_total{service,outcome}
//     prewarm_cold_start_hidden_seconds_total{service}
//     prewarm_idle_warm_seconds_total{service}
//     prewarm_store_writes_total{result}                 result: ok, error
//     prewarm_observations_total{kind}
//     prewarm_runs_started_total
//     prewarm_runs_finished_total{outcome}
//     prewarm_history_keys_evicted_total
//     prewarm_service_counters_evicted_total
//     prewarm_leader_takeovers_total
//   gauges
//     prewarm_active_runs
//     prewarm_pending_warmups
//     prewarm_registered_services
//     prewarm_history_keys
//     prewarm_leader                                     1 when this replica leads
//     prewarm_build_info{version,git_commit}             always 1
//   histograms
//     prewarm_rpc_duration_seconds{method}
//     prewarm_warmup_latency_seconds{service}
//     prewarm_cold_start_seconds{service}
//     prewarm_warmup_lateness_seconds
//     prewarm_start_prediction_error_seconds
//     prewarm_store_commit_latency_seconds
//     prewarm_store_round_trip_seconds
//   process_* (ProcessCollector)
//
// Series of known label values are created at zero as soon as their family or service appears,
// so that rate() and increase() see the first event of each.

namespace prewarm {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr int kMaxMethodLabels = 64;
constexpr int kMaxKindLabels = 32;

// A label whose values are known in advance. Index size() - 1 stands for kOtherLabel.
// Immutable, so thread-safe.
class FixedLabel {
 public:
  FixedLabel(std::initializer_list<absl::string_view> values) : values_(values) {}

  size_t Index(absl::string_view value) const {
    for (size_t i = 0; i < values_.size(); ++i) {
      if (values_[i] == value) return i;
    }
    return values_.size();
  }
  // Known values plus kOtherLabel.
  size_t size() const { return values_.size() + 1; }
  size_t known() const { return values_.size(); }
  std::string Value(size_t index) const {
    return std::string(index < values_.size() ? values_[index] : kOtherLabel);
  }

 private:
  std::vector<absl::string_view> values_;
};

// Per-value entries of an open-ended label, for at most `cap` values; the empty value and any
// value past the cap share the kOtherLabel entry. Not thread-safe: the owner locks.
template <typename Entry>
class CappedLabel {
 public:
  explicit CappedLabel(int cap) : cap_(static_cast<size_t>(cap)) {}

  // The entry for `value`. `init(label, entry)` runs once on each new entry. The reference stays
  // valid until the next call.
  template <typename Init>
  Entry& Get(absl::string_view value, const Init& init) {
    if (value.empty()) value = kOtherLabel;
    auto it = entries_.find(value);
    if (it != entries_.end()) return it->second;
    if (real_values_ >= cap_) {
      value = kOtherLabel;
      it = entries_.find(value);
      if (it != entries_.end()) return it->second;
    }
    if (value != kOtherLabel) ++real_values_;
    auto pos = entries_.try_emplace(value).first;
    init(pos->first, pos->second);
    return pos->second;
  }

 private:
  const size_t cap_;
  size_t real_values_ = 0;
  absl::flat_hash_map<std::string, Entry> entries_;
};

// Seconds to record for `d`. Negative spans (clock adjustments, callers' rounding) count as zero
// so that a histogram's _sum never decreases; an infinite span has no meaningful value.
std::optional<double> Seconds(absl::Duration d) {
  if (d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) return std::nullopt;
  return d < absl::ZeroDuration() ? 0.0 : absl::ToDoubleSeconds(d);
}

// host:port, the host possibly a bracketed IPv6 address. Checked here because civetweb reads
// more into the string (',' lists several ports, a trailing 's' asks for TLS).
absl::Status CheckListenAddress(absl::string_view address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == absl::string_view::npos || colon == 0 ||
      address.find(',') != absl::string_view::npos ||
      !absl::c_all_of(address.substr(colon + 1), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address, "\" is not host:port"));
  }
  return absl::OkStatus();
}

// Metrics on a prometheus-cpp registry. Thread-safe: the series themselves are atomic or locked
// by prometheus-cpp; mu_ guards only the label bookkeeping that finds them.
class PrometheusMetrics final : public Metrics {
 public:
  explicit PrometheusMetrics(const MetricsOptions& options);
  ~PrometheusMetrics() override { StopServing(); }

  // Starts serving /metrics on `address`. Unavailable when it cannot bind.
  absl::Status Listen(const std::string& address);

  int port() const override;
  std::string Scrape() const override;

  void RpcHandled(absl::string_view method, absl::string_view code,
                  absl::Duration latency) override;
  void WarmupResult(absl::string_view service, absl::string_view result) override;
  void WarmupLatency(absl::string_view service, absl::Duration latency) override;
  void ColdStartObserved(absl::string_view service, absl::Duration cold) override;
  void WarmupLateness(absl::Duration lateness) override;
  void TaskStart(absl::string_view service, absl::string_view outcome) override;
  void ColdStartHidden(absl::string_view service, absl::Duration hidden) override;
  void IdleWarmSeconds(absl::string_view service, absl::Duration idle) override;
  void PredictionError(absl::Duration signed_error) override;
  void SetActiveRuns(int64_t n) override { active_runs_.Set(static_cast<double>(n)); }
  void SetPendingWarmups(int64_t n) override { pending_warmups_.Set(static_cast<double>(n)); }
  void SetHistoryKeys(int64_t n) override { history_keys_.Set(static_cast<double>(n)); }
  void HistoryKeysEvicted(int64_t n) override {
    history_keys_evicted_.Increment(static_cast<double>(n));
  }
  void ServiceCountersEvicted(int64_t n) override {
    service_counters_evicted_.Increment(static_cast<double>(n));
  }
  void SetRegisteredServices(int64_t n) override {
    registered_services_.Set(static_cast<double>(n));
  }
  void StoreWrite(bool ok, absl::Duration commit_latency) override;
  void StoreRoundTrip(absl::Duration latency) override {
    if (std::optional<double> seconds = Seconds(latency)) store_round_trip_.Observe(*seconds);
  }
  void SetLeader(bool leading) override { leader_.Set(leading ? 1 : 0); }
  void LeaderTakeover() override { leader_takeovers_.Increment(); }
  void ObservationRecorded(absl::string_view kind) override;
  void RunStarted() override { runs_started_.Increment(); }
  void RunFinished(absl::string_view outcome) override;

 private:
  // Series of one service label value. Pointers into the registry's families, which never
  // remove a series. Histograms are created on first use: most services need only some.
  struct ServiceSeries {
    std::string label;
    std::vector<Counter*> warmups;      // by warmup_results_ index
    std::vector<Counter*> task_starts;  // by task_outcomes_ index
    Counter* cold_start_hidden = nullptr;
    Counter* idle_warm = nullptr;
    Histogram* warmup_latency = nullptr;
    Histogram* cold_start = nullptr;
  };
  struct MethodSeries {
    std::string label;
    std::vector<Counter*> rpcs;  // by codes_ index, created on first use
    Histogram* duration = nullptr;
  };
  struct KindSeries {
    Counter* observations = nullptr;
  };

  ServiceSeries& Service(absl::string_view service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Histogram& ObserveTarget(Histogram*& slot, Family<Histogram>& family, const std::string& service,
                           const Histogram::BucketBoundaries& buckets)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Bucket boundaries, in seconds, spanning what each quantity plausibly takes.
  const Histogram::BucketBoundaries rpc_buckets_ = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                    1,      2.5,     5,      10};
  // A warm service answers in milliseconds, a cold one in up to a minute.
  const Histogram::BucketBoundaries warmup_latency_buckets_ = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60};
  const Histogram::BucketBoundaries cold_start_buckets_ = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                           2,    5,     10,   20,  30,   60};
  // The scheduler aims at a few milliseconds; seconds to minutes mean catching up after a
  // re-plan moved a deadline into the past, or after a restart.
  const Histogram::BucketBoundaries lateness_buckets_ = {
      0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  const Histogram::BucketBoundaries prediction_error_buckets_ = {
      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
  // A group commit with fsync: sub-millisecond on fast disks, seconds when the disk stalls.
  const Histogram::BucketBoundaries store_commit_buckets_ = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

  const FixedLabel warmup_results_ = {kWarmupFired,       kWarmupReady,           kWarmupFailed,
                                      kWarmupSkippedWarm, kWarmupSkippedUnlikely, kWarmupCancelled,
                                      kWarmupRefreshed,   kWarmupRefreshFailed,   kWarmupDisplaced};
  const FixedLabel task_outcomes_ = {kTaskHit, kTaskMiss, kTaskLate};
  const FixedLabel run_outcomes_ = {kRunFinished, kRunCancelled, kRunExpired};
  const FixedLabel codes_ = {"OK",
                             "CANCELLED",
                             "UNKNOWN",
                             "INVALID_ARGUMENT",
                             "DEADLINE_EXCEEDED",
                             "NOT_FOUND",
                             "ALREADY_EXISTS",
                             "PERMISSION_DENIED",
                             "RESOURCE_EXHAUSTED",
                             "FAILED_PRECONDITION",
                             "ABORTED",
                             "OUT_OF_RANGE",
                             "UNIMPLEMENTED",
                             "INTERNAL",
                             "UNAVAILABLE",
                             "DATA_LOSS",
                             "UNAUTHENTICATED"};

  const std::shared_ptr<prometheus::Registry> registry_;
  const std::shared_ptr<ProcessCollector> process_;

  Family<Counter>& rpcs_;
  Family<Counter>& warmups_;
  Family<Counter>& task_starts_;
  Family<Counter>& cold_start_hidden_;
  Family<Counter>& idle_warm_;
  Family<Counter>& store_writes_;
  Family<Counter>& observations_;
  Counter& runs_started_;
  Family<Counter>& runs_finished_;
  Gauge& active_runs_;
  Gauge& pending_warmups_;
  Gauge& registered_services_;
  Gauge& history_keys_;
  Gauge& leader_;
  Counter& leader_takeovers_;
  Counter& history_keys_evicted_;
  Counter& service_counters_evicted_;
  Family<Histogram>& rpc_duration_;
  Family<Histogram>& warmup_latency_;
  Family<Histogram>& cold_start_;
  Histogram& warmup_lateness_;
  Histogram& prediction_error_;
  Histogram& store_commit_latency_;
  Histogram& store_round_trip_;

  Counter& store_writes_ok_;
  Counter& store_writes_error_;
  // By run_outcomes_ index, known values only. Set in the constructor, read-only since.
  std::vector<Counter*> runs_finished_by_outcome_;

  mutable absl::Mutex mu_;
  CappedLabel<ServiceSeries> services_ ABSL_GUARDED_BY(mu_);
  CappedLabel<MethodSeries> methods_ ABSL_GUARDED_BY(mu_);
  CappedLabel<KindSeries> kinds_ ABSL_GUARDED_BY(mu_);

  // Stops the exposer without waiting out civetweb's accept loop, which polls its listening
  // socket in 2 s rounds and checks for the stop only between them (up to 2 s per shutdown).
  void StopServing();

  std::string listen_host_;  // Of the address Listen() was given.
  // Last: stops serving before the metrics it reads go away.
  std::unique_ptr<prometheus::Exposer> exposer_;
};

void PrometheusMetrics::StopServing() {
  if (exposer_ == nullptr) return;
  const int port = this->port();
  // Connections wake the accept loop, which then sees the stop flag; until the exposer is gone,
  // since one that arrives just before the flag is set is served as a request.
  std::string host = listen_host_;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  std::atomic<bool> stopped = false;
  std::thread waker([&] {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* addresses = nullptr;
    if (port == 0 ||
        getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses) != 0) {
      return;  // Then the exposer stops at the end of its round, as before.
    }
    while (!stopped.load()) {
      const int fd = socket(addresses->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        (void)connect(fd, addresses->ai_addr, addresses->ai_addrlen);
        close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    freeaddrinfo(addresses);
  });
  exposer_.reset();
  stopped = true;
  waker.join();
}

PrometheusMetrics::PrometheusMetrics(const MetricsOptions& options)
    : registry_(std::make_shared<prometheus::Registry>()),
      process_(std::make_shared<ProcessCollector>()),
      rpcs_(prometheus::BuildCounter()
                .Name("prewarm_rpcs_total")
                .Help("gRPC requests handled, by method and status code.")
                .Register(*registry_)),
      warmups_(prometheus::BuildCounter()
                   .Name("prewarm_warmups_total")
                   .Help("Warm-ups by service and result: fired (request sent), ready (the "
                         "service answered), failed, skipped_warm (expected warm already), "
                         "skipped_unlikely (task unlikely to run), cancelled, refreshed (sent "
                         "again before the keep-alive ran out), refresh_failed, displaced (another "
                         "call took the container warmed for the task: warmed again).")
                   .Register(*registry_)),
      task_starts_(prometheus::BuildCounter()
                       .Name("prewarm_task_starts_total")
                       .Help("Task starts by service and outcome: hit (service warm on arrival), "
                             "miss (cold), late (warm-up still in flight).")
                       .Register(*registry_)),
      cold_start_hidden_(prometheus::BuildCounter()
                             .Name("prewarm_cold_start_hidden_seconds_total")
                             .Help("Cold-start seconds that warm-ups kept off task start times.")
                             .Register(*registry_)),
      idle_warm_(prometheus::BuildCounter()
                     .Name("prewarm_idle_warm_seconds_total")
                     .Help("Seconds warmed containers sat idle before use or reclamation: the "
                           "cost of warming too early.")
                     .Register(*registry_)),
      store_writes_(prometheus::BuildCounter()
                        .Name("prewarm_store_writes_total")
                        .Help("Commits (groups of writes) to the history store, by result: ok, "
                              "error.")
                        .Register(*registry_)),
      observations_(prometheus::BuildCounter()
                        .Name("prewarm_observations_total")
                        .Help("Observations added to the history, by kind.")
                        .Register(*registry_)),
      runs_started_(prometheus::BuildCounter()
                        .Name("prewarm_runs_started_total")
                        .Help("Workflow runs announced to prewarm.")
                        .Register(*registry_)
                        .Add({})),
      runs_finished_(prometheus::BuildCounter()
                         .Name("prewarm_runs_finished_total")
                         .Help("Workflow runs that ended, by outcome: finished, cancelled, "
                               "expired.")
                         .Register(*registry_)),
      active_runs_(prometheus::BuildGauge()
                       .Name("prewarm_active_runs")
                       .Help("Workflow runs being tracked.")
                       .Register(*registry_)
                       .Add({})),
      pending_warmups_(prometheus::BuildGauge()
                           .Name("prewarm_pending_warmups")
                           .Help("Warm-ups scheduled and not yet fired.")
                           .Register(*registry_)
                           .Add({})),
      registered_services_(prometheus::BuildGauge()
                               .Name("prewarm_registered_services")
                               .Help("Services registered as warm-up targets.")
                               .Register(*registry_)
                               .Add({})),
      history_keys_(prometheus::BuildGauge()
                        .Name("prewarm_history_keys")
                        .Help("Keys (windows of one task, service or workflow) held by the "
                              "learned history; at most limits.max_history_keys.")
                        .Register(*registry_)
                        .Add({})),
      leader_(prometheus::BuildGauge()
                  .Name("prewarm_leader")
                  .Help("1 while this replica leads (serves and fires warm-ups), 0 on standby. "
                        "Always 1 with an SQLite store.")
                  .Register(*registry_)
                  .Add({})),
      leader_takeovers_(prometheus::BuildCounter()
                            .Name("prewarm_leader_takeovers_total")
                            .Help("Times this replica took the leadership of a PostgreSQL store.")
                            .Register(*registry_)
                            .Add({})),
      history_keys_evicted_(prometheus::BuildCounter()
                                .Name("prewarm_history_keys_evicted_total")
                                .Help("History keys evicted, least recently observed first, to "
                                      "stay within limits.max_history_keys.")
                                .Register(*registry_)
                                .Add({})),
      service_counters_evicted_(
          prometheus::BuildCounter()
              .Name("prewarm_service_counters_evicted_total")
              .Help("Hit/miss counters of unregistered services evicted to stay within "
                    "limits.max_unregistered_service_counters.")
              .Register(*registry_)
              .Add({})),
      rpc_duration_(prometheus::BuildHistogram()
                        .Name("prewarm_rpc_duration_seconds")
                        .Help("Time to handle a gRPC request, by method.")
                        .Register(*registry_)),
      warmup_latency_(prometheus::BuildHistogram()
                          .Name("prewarm_warmup_latency_seconds")
                          .Help("Time from sending a warm-up request to its response, by "
                                "service.")
                          .Register(*registry_)),
      cold_start_(prometheus::BuildHistogram()
                      .Name("prewarm_cold_start_seconds")
                      .Help("Cold starts observed, by warm-ups or task reports, by service.")
                      .Register(*registry_)),
      warmup_lateness_(prometheus::BuildHistogram()
                           .Name("prewarm_warmup_lateness_seconds")
                           .Help("Time a warm-up fired after its deadline.")
                           .Register(*registry_)
                           .Add({}, lateness_buckets_)),
      prediction_error_(prometheus::BuildHistogram()
                            .Name("prewarm_start_prediction_error_seconds")
                            .Help("Absolute difference between the actual and the expected start "
                                  "time of a task.")
                            .Register(*registry_)
                            .Add({}, prediction_error_buckets_)),
      store_commit_latency_(prometheus::BuildHistogram()
                                .Name("prewarm_store_commit_latency_seconds")
                                .Help("Time to commit a group of writes to the history store.")
                                .Register(*registry_)
                                .Add({}, store_commit_buckets_)),
      store_round_trip_(prometheus::BuildHistogram()
                            .Name("prewarm_store_round_trip_seconds")
                            .Help("Time of one transaction (a group of writes) with the PostgreSQL "
                                  "store, committed or not.")
                            .Register(*registry_)
                            .Add({}, store_commit_buckets_)),
      store_writes_ok_(store_writes_.Add({{"result", "ok"}})),
      store_writes_error_(store_writes_.Add({{"result", "error"}})),
      runs_finished_by_outcome_(run_outcomes_.known(), nullptr),
      services_(options.max_service_labels),
      methods_(kMaxMethodLabels),
      kinds_(kMaxKindLabels) {
  for (size_t i = 0; i < run_outcomes_.known(); ++i) {
    runs_finished_by_outcome_[i] = &runs_finished_.Add({{"outcome", run_outcomes_.Value(i)}});
  }
  prometheus::BuildGauge()
      .Name("prewarm_build_info")
      .Help("Always 1; labelled with the version and git commit of the running prewarmd.")
      .Register(*registry_)
      .Add({{"version", options.version}, {"git_commit", options.git_commit}})
      .Set(1);
}

absl::Status PrometheusMetrics::Listen(const std::string& address) {
  if (absl::Status status = CheckListenAddress(address); !status.ok()) return status;
  listen_host_ = address.substr(0, address.rfind(':'));
  if (listen_host_.size() >= 2 && listen_host_.front() == '[') {
    listen_host_ = listen_host_.substr(1, listen_host_.size() - 2);
  }
  try {
    // Two threads: Prometheus scrapes rarely; a second keeps one slow client from blocking it.
    exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(process_);
  return absl::OkStatus();
}

int PrometheusMetrics::port() const {
  if (exposer_ == nullptr) return 0;
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string PrometheusMetrics::Scrape() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& family : process_->Collect()) {
    families.push_back(std::move(family));
  }
  return prometheus::TextSerializer().Serialize(families);
}

PrometheusMetrics::ServiceSeries& PrometheusMetrics::Service(absl::string_view service) {
  return services_.Get(service, [this](const std::string& label, ServiceSeries& series) {
    series.label = label;
    series.warmups.assign(warmup_results_.size(), nullptr);
    for (size_t i = 0; i < warmup_results_.known(); ++i) {
      series.warmups[i] = &warmups_.Add({{"service", label}, {"result", warmup_results_.Value(i)}});
    }
    series.task_starts.assign(task_outcomes_.size(), nullptr);
    for (size_t i = 0; i < task_outcomes_.known(); ++i) {
      series.task_starts[i] =
          &task_starts_.Add({{"service", label}, {"outcome", task_outcomes_.Value(i)}});
    }
    series.cold_start_hidden = &cold_start_hidden_.Add({{"service", label}});
    series.idle_warm = &idle_warm_.Add({{"service", label}});
  });
}

Histogram& PrometheusMetrics::ObserveTarget(Histogram*& slot, Family<Histogram>& family,
                                            const std::string& service,
                                            const Histogram::BucketBoundaries& buckets) {
  if (slot == nullptr) slot = &family.Add({{"service", service}}, buckets);
  return *slot;
}

void PrometheusMetrics::RpcHandled(absl::string_view method, absl::string_view code,
                                   absl::Duration latency) {
  Counter* rpcs;
  Histogram* duration;
  {
    absl::MutexLock lock(&mu_);
    MethodSeries& series = methods_.Get(method, [this](const std::string& label, MethodSeries& m) {
      m.label = label;
      m.rpcs.assign(codes_.size(), nullptr);
    });
    const size_t i = codes_.Index(code);
    if (series.rpcs[i] == nullptr) {
      series.rpcs[i] = &rpcs_.Add({{"method", series.label}, {"code", codes_.Value(i)}});
    }
    if (series.duration == nullptr) {
      series.duration = &rpc_duration_.Add({{"method", series.label}}, rpc_buckets_);
    }
    rpcs = series.rpcs[i];
    duration = series.duration;
  }
  rpcs->Increment();
  if (std::optional<double> seconds = Seconds(latency)) duration->Observe(*seconds);
}

void PrometheusMetrics::WarmupResult(absl::string_view service, absl::string_view result) {
  Counter* counter;
  {
    absl::MutexLock lock(&mu_);
    ServiceSeries& series = Service(service);
    const size_t i = warmup_results_.Index(result);
    if (series.warmups[i] == nullptr) {
      series.warmups[i] =
          &warmups_.Add({{"service", series.label}, {"result", warmup_results_.Value(i)}});
    }
    counter = series.warmups[i];
  }
  counter->Increment();
}

void PrometheusMetrics::WarmupLatency(absl::string_view service, absl::Duration latency) {
  std::optional<double> seconds = Seconds(latency);
  if (!seconds) return;
  Histogram* histogram;
  {
    absl::MutexLock lock(&mu_);
    ServiceSeries& series = Service(service);
    histogram = &ObserveTarget(series.warmup_latency, warmup_latency_, series.label,
                               warmup_latency_buckets_);
  }
  histogram->Observe(*seconds);
}

void PrometheusMetrics::ColdStartObserved(absl::string_view service, absl::Duration cold) {
  std::optional<double> seconds = Seconds(cold);
  if (!seconds) return;
  Histogram* histogram;
  {
    absl::MutexLock lock(&mu_);
    ServiceSeries& series = Service(service);
    histogram = &ObserveTarget(series.cold_start, cold_start_, series.label, cold_start_buckets_);
  }
  histogram->Observe(*seconds);
}

void PrometheusMetrics::WarmupLateness(absl::Duration lateness) {
  if (std::optional<double> seconds = Seconds(lateness)) warmup_lateness_.Observe(*seconds);
}

void PrometheusMetrics::TaskStart(absl::string_view service, absl::string_view outcome) {
  Counter* counter;
  {
    absl::MutexLock lock(&mu_);
    ServiceSeries& series = Service(service);
    const size_t i = task_outcomes_.Index(outcome);
    if (series.task_starts[i] == nullptr) {
      series.task_starts[i] =
          &task_starts_.Add({{"service", series.label}, {"outcome", task_outcomes_.Value(i)}});
    }
    counter = series.task_starts[i];
  }
  counter->Increment();
}

void PrometheusMetrics::ColdStartHidden(absl::string_view service, absl::Duration hidden) {
  std::optional<double> seconds = Seconds(hidden);
  if (!seconds) return;
  Counter* counter;
  {
    absl::MutexLock lock(&mu_);
    counter = Service(service).cold_start_hidden;
  }
  counter->Increment(*seconds);
}

void PrometheusMetrics::IdleWarmSeconds(absl::string_view service, absl::Duration idle) {
  std::optional<double> seconds = Seconds(idle);
  if (!seconds) return;
  Counter* counter;
  {
    absl::MutexLock lock(&mu_);
    counter = Service(service).idle_warm;
  }
  counter->Increment(*seconds);
}

void PrometheusMetrics::PredictionError(absl::Duration signed_error) {
  if (std::optional<double> seconds = Seconds(absl::AbsDuration(signed_error))) {
    prediction_error_.Observe(*seconds);
  }
}

void PrometheusMetrics::StoreWrite(bool ok, absl::Duration commit_latency) {
  (ok ? store_writes_ok_ : store_writes_error_).Increment();
  if (std::optional<double> seconds = Seconds(commit_latency)) {
    store_commit_latency_.Observe(*seconds);
  }
}

void PrometheusMetrics::ObservationRecorded(absl::string_view kind) {
  Counter* counter;
  {
    absl::MutexLock lock(&mu_);
    counter = kinds_
                  .Get(kind,
                       [this](const std::string& label, KindSeries& series) {
                         series.observations = &observations_.Add({{"kind", label}});
                       })
                  .observations;
  }
  counter->Increment();
}

void PrometheusMetrics::RunFinished(absl::string_view outcome) {
  const size_t i = run_outcomes_.Index(outcome);
  if (i < run_outcomes_.known()) {
    runs_finished_by_outcome_[i]->Increment();
    return;
  }
  // Rare (a caller bug): Family::Add finds the series after its first call.
  runs_finished_.Add({{"outcome", kOtherLabel}}).Increment();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(MetricsOptions options) {
  if (options.max_service_labels < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_service_labels must be at least 1, got ", options.max_service_labels));
  }
  auto metrics = std::make_unique<PrometheusMetrics>(options);
  if (!options.listen_address.empty()) {
    if (absl::Status status = metrics->Listen(options.listen_address); !status.ok()) {
      return status;
    }
  }
  return metrics;
}

}  // namespace prewarm
