// Fuzzes RunRegistry's request path: an arbitrary sequence of Prewarm, ReportTiming, ReportWarmup
// and CancelRun calls (plus clock moves and warm-up results), decoded from the input, on a fake
// clock, a fake warmer and the in-memory store. Every input ends with a restart: a second registry
// restored from the same store must hold the same active runs with the same task states and the
// same learned history, and no run that was cancelled or finished may come back. Any difference
// aborts (a crash for libFuzzer), as does any sanitizer report.
//
// Run ids, task ids and services come mostly from small pools, so that sequences hit the same runs
// and tasks again; now and then an arbitrary string, so that validation sees anything.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/stubs/logging.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/delegated_warmups.h"
#include "server/history_store.h"
#include "server/http_warmer.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/proto_time.h"
#include "server/run_registry.h"
#include "server/service_registry.h"
#include "server/timer_queue.h"
#include "server/url_allowlist.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/in_memory_history_store.h"

namespace prewarm {
namespace {

// Aborts with a message: libFuzzer saves the input as a crash.
#define FUZZ_CHECK(cond, ...)                                              \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "registry_fuzz: check failed: %s: %s\n", #cond, \
                   absl::StrCat(__VA_ARGS__).c_str());                     \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

// PREWARM_FUZZ_TRACE=1 prints every call and its answer: how to read a crashing input.
bool trace = false;  // Set once, before any input.
#define TRACE(...)                                                              \
  do {                                                                          \
    if (trace) std::fprintf(stderr, "%s\n", absl::StrCat(__VA_ARGS__).c_str()); \
  } while (0)

constexpr int kMaxOps = 64;
// Below the registry's idle timeout in total, so that no run expires unseen by the model below.
constexpr absl::Duration kMaxTotalAdvance = absl::Hours(20);

// A warmer that sends nothing: it keeps what it is asked to fire until the input says how the
// warm-up went. Like a killed process, it drops what is left without answering.
class FakeWarmer final : public HttpWarmer {
 public:
  void Fire(WarmupRequest request, std::function<void(const WarmupResult&)> done) override {
    pending_.emplace_back(std::move(request), std::move(done));
  }
  int in_flight() const override { return static_cast<int>(pending_.size()); }
  void Shutdown() override { pending_.clear(); }

  // Answers the pending warm-up at `index` (modulo the queue); false when none is pending.
  bool Answer(size_t index, bool success, absl::Duration latency) {
    if (pending_.empty()) return false;
    index %= pending_.size();
    auto [request, done] = std::move(pending_[index]);
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(index));
    WarmupResult result;
    result.id = request.id;
    result.success = success;
    result.http_status = success ? 200 : 503;
    result.attempts = 1;
    result.latency = latency;
    result.total_time = latency;
    if (!success) result.error = "HTTP 503";
    done(result);
    return true;
  }

 private:
  std::deque<std::pair<WarmupRequest, std::function<void(const WarmupResult&)>>> pending_;
};

RunRegistryOptions Options() {
  RunRegistryOptions o;
  o.max_active_runs = 4;
  o.max_retired_runs = 8;
  o.dag.max_tasks = 8;
  o.dag.max_edges = 16;
  o.max_warmup_refreshes = 3;
  return o;
}

// One process's worth of parts over a shared store and clock.
struct Process {
  Process(FakeClock& clock, HistoryStore& store, Metrics& metrics)
      : services(UrlAllowlist::Default(), ServiceDefaults{.max_services = 8}), timers(clock) {
    delegated_subscriber = delegated.Subscribe({}, nullptr);
    registry = std::make_unique<RunRegistry>(Options(), RunRegistryDeps{.clock = &clock,
                                                                        .services = &services,
                                                                        .timers = &timers,
                                                                        .warmer = &warmer,
                                                                        .delegated = &delegated,
                                                                        .store = &store,
                                                                        .metrics = &metrics});
  }
  // Like kill -9: the warmer forgets what it holds, then the registry goes.
  ~Process() {
    warmer.Shutdown();
    registry.reset();
  }

  ServiceRegistry services;
  TimerQueue timers;
  FakeWarmer warmer;
  DelegatedWarmups delegated;
  DelegatedWarmups::SubscriberId delegated_subscriber = 0;
  std::unique_ptr<RunRegistry> registry;
};

const char* const kServices[] = {"svc-a", "svc-b", "svc-d", "svc-x", ""};
const char* const kRuns[] = {"r0", "r1", "r2", "r3", "r4", "r5"};

// Arbitrary text, but valid UTF-8: gRPC's proto3 parsing refuses anything else before the
// registry sees it (and the registry's stored snapshots could not be parsed back).
std::string Text(FuzzedDataProvider& in, size_t max_length) {
  std::string out;
  for (unsigned char c : in.ConsumeRandomLengthString(max_length)) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {  // U+0080..U+00FF
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return out;
}

std::string PickString(FuzzedDataProvider& in, const char* const* pool, size_t pool_size,
                       size_t max_random) {
  const size_t pick = in.ConsumeIntegralInRange<size_t>(0, pool_size + 1);
  if (pick < pool_size) return pool[pick];
  if (pick == pool_size) return std::string(in.ConsumeIntegralInRange<size_t>(240, 300), 'r');
  return Text(in, max_random);
}

std::string TaskId(FuzzedDataProvider& in) {
  if (in.ConsumeIntegralInRange(0, 15) == 0) return Text(in, 16);
  return absl::StrCat("t", in.ConsumeIntegralInRange(0, 9));
}

// A timestamp near `now`, now and then out of any sane range or malformed.
google::protobuf::Timestamp Stamp(FuzzedDataProvider& in, absl::Time now, int64_t min_s,
                                  int64_t max_s) {
  google::protobuf::Timestamp t;
  if (in.ConsumeIntegralInRange(0, 31) == 0) {
    t.set_seconds(in.ConsumeIntegral<int64_t>());
    t.set_nanos(in.ConsumeIntegral<int32_t>());
    return t;
  }
  return ToProtoTimestamp(
      now + absl::Milliseconds(in.ConsumeIntegralInRange<int64_t>(min_s * 1000, max_s * 1000)));
}

google::protobuf::Duration Span(FuzzedDataProvider& in) {
  google::protobuf::Duration d;
  if (in.ConsumeIntegralInRange(0, 15) == 0) {
    d.set_seconds(in.ConsumeIntegral<int64_t>());
    d.set_nanos(in.ConsumeIntegral<int32_t>());
    return d;
  }
  return ToProtoDuration(absl::Milliseconds(in.ConsumeIntegralInRange(-1000, 120'000)));
}

v1::PrewarmRequest PrewarmRequest(FuzzedDataProvider& in, absl::Time now) {
  v1::PrewarmRequest r;
  r.set_run_id(PickString(in, kRuns, std::size(kRuns), 8));
  r.set_workflow_id(in.ConsumeBool() ? "wf" : PickString(in, kRuns, std::size(kRuns), 8));
  const int tasks = in.ConsumeIntegralInRange(0, 10);
  for (int i = 0; i < tasks; ++i) {
    v1::Task* t = r.add_tasks();
    t->set_task_id(in.ConsumeIntegralInRange(0, 7) == 0 ? TaskId(in) : absl::StrCat("t", i));
    t->set_service(PickString(in, kServices, std::size(kServices), 12));
    // A duration hint now and then: mostly plausible, sometimes zero, negative or out of range.
    if (in.ConsumeIntegralInRange(0, 3) == 0) *t->mutable_expected_duration() = Span(in);
    const int parents = in.ConsumeIntegralInRange(0, 3);
    for (int p = 0; p < parents && i > 0; ++p) {
      // Mostly an earlier task (a DAG); sometimes anything (cycles, unknown ids, duplicates).
      t->add_upstream_task_ids(in.ConsumeIntegralInRange(0, 7) == 0
                                   ? TaskId(in)
                                   : absl::StrCat("t", in.ConsumeIntegralInRange(0, i - 1)));
    }
  }
  if (in.ConsumeBool()) *r.mutable_start_time() = Stamp(in, now, -3600, 9 * 24 * 3600);
  if (in.ConsumeIntegralInRange(0, 7) == 0)
    r.set_delay_cost_ratio(in.ConsumeFloatingPoint<double>());
  r.set_dry_run(in.ConsumeIntegralInRange(0, 7) == 0);
  return r;
}

v1::ReportTimingRequest TimingRequest(FuzzedDataProvider& in, absl::Time now) {
  v1::ReportTimingRequest r;
  r.set_run_id(PickString(in, kRuns, std::size(kRuns), 8));
  r.set_task_id(TaskId(in));
  // 0 and 6..: unspecified and unknown enum values.
  r.set_event(static_cast<v1::TaskEventType>(in.ConsumeIntegralInRange(0, 6)));
  if (in.ConsumeBool()) *r.mutable_event_time() = Stamp(in, now, -7200, 600);
  if (in.ConsumeBool()) r.set_cold(in.ConsumeBool());
  if (in.ConsumeIntegralInRange(0, 3) == 0) *r.mutable_cold_start() = Span(in);
  // 3..: unknown views, which must be refused.
  if (in.ConsumeBool())
    r.set_view(static_cast<v1::ReportTimingView>(in.ConsumeIntegralInRange(0, 4)));
  return r;
}

// What the restarted registry must agree with.
struct Model {
  std::set<std::string> active;  // accepted, not cancelled or finished
  std::set<std::string> gone;    // cancelled or finished (and not started again)
  std::set<std::string> seen;    // every run id used
};

void CheckSameRun(const std::string& id, const v1::RunPlan& before, const v1::RunPlan& after) {
  FUZZ_CHECK(before.tasks_size() == after.tasks_size(), "run ", id);
  FUZZ_CHECK(before.workflow_id() == after.workflow_id(), "run ", id);
  FUZZ_CHECK(before.start_time().SerializeAsString() == after.start_time().SerializeAsString(),
             "run ", id);
  for (int i = 0; i < before.tasks_size(); ++i) {
    const v1::TaskPlan& b = before.tasks(i);
    const v1::TaskPlan& a = after.tasks(i);
    FUZZ_CHECK(b.task_id() == a.task_id(), "run ", id, " task ", i);
    FUZZ_CHECK(b.service() == a.service(), "run ", id, " task ", b.task_id());
    FUZZ_CHECK(b.task_state() == a.task_state(), "run ", id, " task ", b.task_id(), ": ",
               v1::TaskState_Name(b.task_state()), " before the restart, ",
               v1::TaskState_Name(a.task_state()), " after");
    FUZZ_CHECK(
        b.actual_start_time().SerializeAsString() == a.actual_start_time().SerializeAsString(),
        "run ", id, " task ", b.task_id(), ": actual start ",
        b.actual_start_time().ShortDebugString(), " before the restart, ",
        a.actual_start_time().ShortDebugString(), " after");
    // Issue 11, defect 3: outcomes, warm-ups and plans survive too. A warm-up in flight at the
    // kill is taken as answered.
    FUZZ_CHECK(b.outcome() == a.outcome(), "run ", id, " task ", b.task_id(), ": outcome ",
               v1::TaskOutcome_Name(b.outcome()), " before the restart, ",
               v1::TaskOutcome_Name(a.outcome()), " after");
    const v1::WarmupState expected =
        b.warmup_state() == v1::WARMUP_STATE_FIRED ? v1::WARMUP_STATE_READY : b.warmup_state();
    FUZZ_CHECK(expected == a.warmup_state(), "run ", id, " task ", b.task_id(), ": warm-up ",
               v1::WarmupState_Name(b.warmup_state()), " before the restart, ",
               v1::WarmupState_Name(a.warmup_state()), " after");
    FUZZ_CHECK(b.decision() == a.decision() &&
                   b.warmup_time().SerializeAsString() == a.warmup_time().SerializeAsString() &&
                   b.expected_start_time().SerializeAsString() ==
                       a.expected_start_time().SerializeAsString(),
               "run ", id, " task ", b.task_id(), ": plan ", b.ShortDebugString(),
               " before the restart, ", a.ShortDebugString(), " after");
  }
  FUZZ_CHECK(before.replan_count() == after.replan_count(), "run ", id, ": ", before.replan_count(),
             " re-plans before the restart, ", after.replan_count(), " after");
}

void CheckRestart(const Model& model, Process& before, Process& after) {
  FUZZ_CHECK(before.registry->active_runs() == static_cast<int>(model.active.size()),
             "the registry has ", before.registry->active_runs(), " active runs, the model ",
             model.active.size());
  FUZZ_CHECK(after.registry->active_runs() == before.registry->active_runs(), "restored ",
             after.registry->active_runs(), " active runs of ", before.registry->active_runs());
  for (const std::string& id : model.active) {
    absl::StatusOr<v1::RunPlan> b = before.registry->GetPlan(id);
    absl::StatusOr<v1::RunPlan> a = after.registry->GetPlan(id);
    FUZZ_CHECK(b.ok(), "active run ", id, ": ", b.status().ToString());
    FUZZ_CHECK(a.ok(), "active run ", id, " not restored: ", a.status().ToString());
    CheckSameRun(id, *b, *a);
  }
  for (const std::string& id : model.gone) {
    absl::StatusOr<v1::RunPlan> a = after.registry->GetPlan(id);
    FUZZ_CHECK(a.status().code() == absl::StatusCode::kNotFound, "run ", id,
               " was cancelled or finished, yet the restart brought it back");
  }
  for (const char* service : {"svc-a", "svc-b", "svc-d", "svc-x"}) {
    absl::StatusOr<v1::GetServiceStatsResponse> b = before.registry->GetServiceStats(service);
    absl::StatusOr<v1::GetServiceStatsResponse> a = after.registry->GetServiceStats(service);
    FUZZ_CHECK(b.ok() == a.ok(), service);
    if (!b.ok()) continue;
    FUZZ_CHECK(b->duration().SerializeAsString() == a->duration().SerializeAsString(), service,
               " durations: ", b->duration().ShortDebugString(), " before the restart, ",
               a->duration().ShortDebugString(), " after");
    FUZZ_CHECK(b->cold_start().SerializeAsString() == a->cold_start().SerializeAsString(), service,
               " cold starts: ", b->cold_start().ShortDebugString(), " before the restart, ",
               a->cold_start().ShortDebugString(), " after");
    FUZZ_CHECK(b->warm_latency().SerializeAsString() == a->warm_latency().SerializeAsString(),
               service, " warm latencies differ after the restart");
  }
}

void Register(RunRegistry& registry, const std::string& name, bool delegated) {
  v1::Service s;
  s.set_name(name);
  if (delegated) {
    s.set_mode(v1::WARMUP_MODE_DELEGATED);
  } else {
    s.set_warmup_url(absl::StrCat("http://127.0.0.1:9/", name));
  }
  bool answered = false;
  registry.RegisterService(s, [&](absl::StatusOr<v1::RegisterServiceResponse> r) {
    FUZZ_CHECK(r.ok(), r.status().ToString());
    answered = true;
  });
  FUZZ_CHECK(answered, "RegisterService did not answer at once on the in-memory store");
}

void RunOne(FuzzedDataProvider& in) {
  FakeClock clock;
  std::unique_ptr<HistoryStore> store = NewInMemoryHistoryStore(16);
  std::unique_ptr<Metrics> metrics = Metrics::Create({.listen_address = ""}).value();
  Model model;
  absl::Duration advanced;
  auto first = std::make_unique<Process>(clock, *store, *metrics);
  Register(*first->registry, "svc-a", false);
  Register(*first->registry, "svc-b", false);
  Register(*first->registry, "svc-d", true);
  std::vector<std::string> delegated_ids;

  for (int op = 0; op < kMaxOps && in.remaining_bytes() > 0; ++op) {
    RunRegistry& registry = *first->registry;
    switch (in.ConsumeIntegralInRange(0, 7)) {
      case 0:
      case 1: {
        const v1::PrewarmRequest request = PrewarmRequest(in, clock.Now());
        model.seen.insert(request.run_id());
        std::optional<absl::StatusOr<v1::RunPlan>> answer;
        registry.Prewarm(request, [&](absl::StatusOr<v1::RunPlan> plan) { answer = plan; });
        FUZZ_CHECK(answer.has_value(), "Prewarm did not answer at once on the in-memory store");
        TRACE("Prewarm ", request.ShortDebugString(), " -> ",
              answer->ok() ? "OK" : answer->status().ToString());
        if (answer->ok() && !request.dry_run()) {
          FUZZ_CHECK(!model.active.contains(request.run_id()), "run ", request.run_id(),
                     " accepted twice");
          model.active.insert(request.run_id());
          model.gone.erase(request.run_id());
        }
        FUZZ_CHECK(answer->ok() || !answer->status().message().empty(), "an error without words");
        break;
      }
      case 2:
      case 3: {
        const v1::ReportTimingRequest request = TimingRequest(in, clock.Now());
        model.seen.insert(request.run_id());
        std::optional<absl::StatusOr<v1::ReportTimingResponse>> answer;
        registry.ReportTiming(request,
                              [&](absl::StatusOr<v1::ReportTimingResponse> r) { answer = r; });
        FUZZ_CHECK(answer.has_value(), "ReportTiming did not answer at once");
        TRACE("ReportTiming ", request.ShortDebugString(), " -> ",
              answer->ok() ? (*answer)->ShortDebugString() : answer->status().ToString());
        FUZZ_CHECK(answer->ok() || !answer->status().message().empty(), "an error without words");
        FUZZ_CHECK(!answer->ok() || request.view() <= v1::REPORT_TIMING_VIEW_SUMMARY,
                   "an unknown view was accepted");
        FUZZ_CHECK(!answer->ok() || request.view() != v1::REPORT_TIMING_VIEW_SUMMARY ||
                       (*answer)->replanned_tasks().empty(),
                   "a summary answer carries plans");
        if (answer->ok()) {
          // A repeated last event of an ended run is acknowledged (delivery at least once), as
          // finished and changing nothing.
          FUZZ_CHECK(model.active.contains(request.run_id()) ||
                         (model.gone.contains(request.run_id()) && (*answer)->run_finished() &&
                          (*answer)->replanned_tasks().empty()),
                     "an event for inactive run ", request.run_id(), " was accepted");
          if ((*answer)->run_finished()) {
            model.active.erase(request.run_id());
            model.gone.insert(request.run_id());
          }
        }
        break;
      }
      case 4: {
        const std::string id = PickString(in, kRuns, std::size(kRuns), 8);
        absl::StatusOr<int> cancelled = registry.CancelRun(id);
        TRACE("CancelRun ", id, " -> ", cancelled.status().ToString());
        FUZZ_CHECK(cancelled.ok() == model.active.contains(id), "CancelRun(", id,
                   "): ", cancelled.status().ToString());
        if (cancelled.ok()) {
          model.active.erase(id);
          model.gone.insert(id);
        }
        break;
      }
      case 5: {
        // A delegated warm-up's result: a real id from WatchWarmups, or anything.
        v1::WatchWarmupsResponse instruction;
        while (first->delegated.Pop(first->delegated_subscriber, &instruction)) {
          delegated_ids.push_back(instruction.warmup_id());
        }
        v1::ReportWarmupRequest request;
        if (!delegated_ids.empty() && in.ConsumeIntegralInRange(0, 3) != 0) {
          request.set_warmup_id(
              delegated_ids[in.ConsumeIntegralInRange<size_t>(0, delegated_ids.size() - 1)]);
        } else {
          request.set_warmup_id(Text(in, 24));
        }
        request.set_success(in.ConsumeBool());
        if (in.ConsumeIntegralInRange(0, 7) != 0) *request.mutable_latency() = Span(in);
        if (in.ConsumeBool()) request.set_cold(in.ConsumeBool());
        absl::Status s = registry.ReportWarmup(request);
        TRACE("ReportWarmup ", request.ShortDebugString(), " -> ", s.ToString());
        FUZZ_CHECK(s.ok() || !s.message().empty(), "an error without words");
        break;
      }
      case 6: {
        const size_t index = in.ConsumeIntegral<uint8_t>();
        const bool success = in.ConsumeBool();
        const bool answered = first->warmer.Answer(
            index, success, absl::Milliseconds(in.ConsumeIntegralInRange(0, 30'000)));
        TRACE("warm-up answer #", index, " success=", success, " -> ", answered);
        break;
      }
      case 7: {
        absl::Duration d = absl::Milliseconds(in.ConsumeIntegralInRange(0, 3'600'000));
        if (advanced + d > kMaxTotalAdvance) d = kMaxTotalAdvance - advanced;
        advanced += d;
        clock.Advance(d);
        const int ran = first->timers.RunDue();
        TRACE("advance ", absl::FormatDuration(d), " -> ", ran, " timers ran");
        break;
      }
    }
  }

  // The restart: a new process over the same store, as after kill -9 (every acknowledged write
  // is in the in-memory store already).
  FUZZ_CHECK(store->Flush().ok(), "store flush");
  auto second = std::make_unique<Process>(clock, *store, *metrics);
  const absl::Status restored = second->registry->Restore();
  FUZZ_CHECK(restored.ok(), restored.ToString());
  CheckRestart(model, *first, *second);
  second.reset();
  first.reset();
  FUZZ_CHECK(store->Close().ok(), "store close");
}

}  // namespace
}  // namespace prewarm

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every invalid UTF-8 string it meets; the fuzzer only wants its findings.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  // The registry logs every refused request and restore; a fuzzer wants only its findings.
  prewarm::trace = std::getenv("PREWARM_FUZZ_TRACE") != nullptr;
  prewarm::SetMinLogLevel(prewarm::trace ? prewarm::LogLevel::kDebug : prewarm::LogLevel::kError);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  prewarm::RunOne(in);
  return 0;
}
