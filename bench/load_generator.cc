// Load generator for prewarmd over loopback: ReportTiming (durable acknowledgement: each reply
// waits for the SQLite commit of its observation) or Prewarm (100-task DAGs), from N client
// threads each keeping K calls in flight. The server runs in this process on a real SQLite file
// in a temp dir; clients talk to it through real gRPC channels over 127.0.0.1.
//
// Reproduce:
//   cmake --build build --target load_generator
//   build/bench/load_generator --mode=report_timing --clients=4 --inflight=64 --calls=200000
//   build/bench/load_generator --mode=prewarm --clients=4 --inflight=8 --calls=2000
//   build/bench/load_generator --mode=ceiling --clients=4 --inflight=64 --calls=200000
//   # Issue 13: the ceiling, then ReportTiming answering in full and in summary (--view), in the
//   # same minutes; each line after the ceiling prints its ratios to it (calls/s, and CPU per
//   # call: the latter does not move with what else the machine runs); each command below is
//   # one line, split here only to fit:
//   build/bench/load_generator --mode=ceiling,report_timing --view=full,summary
//       --clients=4 --inflight=64 --calls=100000
//   # This machine's speed moves between minutes: --rounds=5 runs the whole list five times in
//   # turn and then prints each measurement's medians and ranges (ratios to each round's ceiling).
//   # Before its timed calls, report_timing teaches the server --history_runs=20 past runs of
//   # the same DAG (spread-out durations and cold starts), so that the calls re-plan against
//   # learned history; --history_runs=0 measures planning from one-valued priors instead.
//   # --services=delegated registers the tasks' services first, so that every re-plan also
//   # prices and times the warm-ups (the optimizer), as where tasks call managed services.
//   # What the transport costs on its own: the same ReportTiming calls against an echo server
//   # that does no work, answering at once (echo) or from a thread of its own as prewarmd
//   # answers after its commit (echo_handoff); the rest of ReportTiming's cost is prewarmd's:
//   build/bench/load_generator --mode=ceiling,echo,echo_handoff,report_timing --view=summary
//       --calls=100000 --rounds=5
//   # Under callgrind, the timed calls of each measurement are written to a profile of their
//   # own (callgrind.out.<pid>.<n>), without the setup:
//   valgrind --tool=callgrind build/bench/load_generator --mode=ceiling,report_timing
//       --view=summary --calls=10000
//   # Issue 14: the ceiling, then ReportTiming on SQLite and on PostgreSQL, in one run (the
//   # database is emptied before its measurement):
//   build/bench/load_generator --mode=ceiling,report_timing --calls=50000
//       --stores=sqlite,postgresql://prewarm@/bench?host=/tmp/pg
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else  // Without valgrind's headers, the phase markers below do nothing.
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(name)
#endif

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/echo_service.h"
#include "grpcpp/grpcpp.h"
#include "predictor/clock.h"
#include "predictor/planner.h"
#include "prewarm/v1/prewarm.grpc.pb.h"
#include "server/log.h"
#include "server/postgres_connection.h"
#include "server/proto_time.h"
#include "server/server.h"

ABSL_FLAG(std::string, mode, "report_timing",
          "report_timing, prewarm, ceiling (a trivial RPC: what gRPC allows here), echo "
          "(ReportTiming, summary view, against a server that does no work and answers at once) "
          "or echo_handoff (the same server answering from a thread of its own, as prewarmd "
          "answers after its commit); a comma-separated list runs each in turn");
ABSL_FLAG(std::string, stores, "sqlite",
          "comma-separated stores to measure report_timing and prewarm on: sqlite (a temp file) "
          "or a PostgreSQL URI (its tables are DROPPED first); ceiling runs once, on the first");
ABSL_FLAG(std::string, view, "full,summary",
          "report_timing: what the answers carry, full (the re-planned tasks' plans) or summary "
          "(ReportTimingRequest.view); a comma-separated list measures each in turn");
ABSL_FLAG(int, clients, 4, "client threads, each with its own channel");
ABSL_FLAG(int, inflight, 64, "calls in flight per client");
ABSL_FLAG(int, calls, 200000, "calls in total");
ABSL_FLAG(int, rounds, 1,
          "times to run every measurement in turn; with more than one, the medians (and ranges) "
          "of each measurement's figures and ratios follow the rounds: this machine's speed moves "
          "between minutes, so compare medians of alternating rounds, not one round");
ABSL_FLAG(int, tasks, 100, "tasks per DAG");
ABSL_FLAG(std::string, store_sync, "normal", "store durability: normal or full");
ABSL_FLAG(std::string, services, "none",
          "report_timing and prewarm: none (the tasks' 20 services are not registered, so the "
          "planner skips their warm-ups without running the warm-up optimizer) or delegated "
          "(registered as delegated services, so every task's warm-up is priced and timed, as "
          "in a deployment whose tasks call managed services; a watcher thread takes each "
          "instruction and reports it with ReportWarmup)");
ABSL_FLAG(int, sample_count, 0,
          "report_timing and prewarm: the planner's Monte Carlo samples per task "
          "(PlannerOptions::sample_count, the config's planning.sample_count: 1-100000; 0: the "
          "server's default). What fewer samples cost in plan quality: policy_sim --sample_count");
ABSL_FLAG(int, history_runs, 20,
          "report_timing: runs of the same DAG completed before the timed calls, with past, "
          "spread-out durations and cold starts, so that the timed calls re-plan against learned "
          "history (0: every distribution is the one-valued prior, which flatters the planner)");

namespace {

using prewarm::v1::PrewarmService;

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_us;
  int64_t errors = 0;
  std::string first_error;
};

// One measurement: calls per second, and CPU time (user + system, all threads: the server's and
// the clients') per call. Both ratios to the ceiling are printed: the rate's moves with whatever
// else the machine runs; the CPU's is what the rates' ratio would be on a machine the process
// had to itself (it is CPU-bound).
struct Result {
  std::string what;  // Names the measurement, e.g. "ReportTiming summary (SQLite)".
  double rate = 0;
  double cpu_us_per_call = 0;
  double p50_us = 0;
  double p99_us = 0;
  // To the ceiling measured before in the same round; 0 without one.
  double ratio = 0;
  double cpu_ratio = 0;
  int64_t errors = 0;  // Calls that failed: the measurement is not valid (exit status 1).
};

// Under callgrind, the timed calls of each measurement get a profile of their own
// (callgrind.out.<pid>.<n>, named after the measurement in its header): counts start at zero when
// the calls start and are written when they end, so setup (submitting runs, teaching history)
// is not in them. Outside valgrind these do nothing.
void StartProfile() { CALLGRIND_ZERO_STATS; }
void EndProfile(const std::string& what) { CALLGRIND_DUMP_STATS_AT(what.c_str()); }

// User + system CPU seconds of this process so far.
double CpuSeconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const struct timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

prewarm::v1::PrewarmRequest MakeRun(const std::string& run_id, int tasks) {
  prewarm::v1::PrewarmRequest r;
  r.set_run_id(run_id);
  r.set_workflow_id("load");
  // Ten independent chains of tasks/10: events touch a few descendants, like real DAGs.
  const int chains = std::max(1, tasks / 10);
  for (int i = 0; i < tasks; ++i) {
    auto* t = r.add_tasks();
    t->set_task_id(absl::StrCat("t", i));
    t->set_service(absl::StrCat("svc-", i % 20));
    if (i >= chains) t->add_upstream_task_ids(absl::StrCat("t", i - chains));
  }
  return r;
}

// Registers the services MakeRun's tasks call (svc-0 .. svc-19) as delegated services: the
// server plans and times their warm-ups and hands them to WatchWarmups subscribers (the
// Watcher below) instead of sending HTTP requests. Returns false on the first error, printed.
bool RegisterServices(PrewarmService::Stub& stub) {
  for (int i = 0; i < 20; ++i) {
    prewarm::v1::RegisterServiceRequest request;
    prewarm::v1::Service* service = request.mutable_service();
    service->set_name(absl::StrCat("svc-", i));
    service->set_mode(prewarm::v1::WARMUP_MODE_DELEGATED);
    *service->mutable_cold_start_prior() = prewarm::ToProtoDuration(absl::Seconds(1));
    grpc::ClientContext ctx;
    prewarm::v1::RegisterServiceResponse response;
    const grpc::Status status = stub.RegisterService(&ctx, request, &response);
    if (!status.ok()) {
      std::fprintf(stderr, "registering svc-%d: %s\n", i, status.error_message().c_str());
      return false;
    }
  }
  return true;
}

// A delegated watcher, as a deployment of delegated services runs one: it takes every warm-up
// instruction from WatchWarmups and reports it fired and cold (1 s) with ReportWarmup, on a thread
// and channel of its own. Constructed once subscribed (the stream's headers arrived); stops
// (cancelling its stream) when destroyed.
class Watcher {
 public:
  explicit Watcher(const std::string& target)
      : stub_(PrewarmService::NewStub(
            grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))),
        thread_([this] { Run(); }) {
    subscribed_.acquire();
  }
  ~Watcher() {
    context_.TryCancel();
    thread_.join();
  }
  int64_t reported() const { return reported_; }

 private:
  void Run() {
    std::unique_ptr<grpc::ClientReader<prewarm::v1::WatchWarmupsResponse>> reader =
        stub_->WatchWarmups(&context_, prewarm::v1::WatchWarmupsRequest());
    reader->WaitForInitialMetadata();
    subscribed_.release();
    prewarm::v1::WatchWarmupsResponse instruction;
    while (reader->Read(&instruction)) {
      prewarm::v1::ReportWarmupRequest report;
      report.set_warmup_id(instruction.warmup_id());
      report.set_success(true);
      report.set_cold(true);
      *report.mutable_latency() = prewarm::ToProtoDuration(absl::Seconds(1));
      grpc::ClientContext ctx;
      prewarm::v1::ReportWarmupResponse response;
      if (stub_->ReportWarmup(&ctx, report, &response).ok()) ++reported_;
    }
    reader->Finish().IgnoreError();
  }

  std::unique_ptr<PrewarmService::Stub> stub_;
  grpc::ClientContext context_;
  std::atomic<int64_t> reported_{0};
  std::binary_semaphore subscribed_{0};
  std::thread thread_;  // Last: starts once the members it uses exist.
};

// Submits run `run_id` asynchronously; `done` gets the status.
void IssuePrewarm(PrewarmService::Stub& stub, const std::string& run_id, int tasks,
                  std::function<void(const grpc::Status&)> done) {
  auto* ctx = new grpc::ClientContext();
  auto* req = new prewarm::v1::PrewarmRequest(MakeRun(run_id, tasks));
  auto* resp = new prewarm::v1::PrewarmResponse();
  stub.async()->Prewarm(ctx, req, resp, [=](grpc::Status s) {
    done(s);
    delete ctx;
    delete req;
    delete resp;
  });
}

// Runs `calls` calls from `clients` threads with `inflight` outstanding each; `make(i, ...)`
// issues call i and invokes `done(status)` when it completes.
template <typename Issue>
double Drive(int clients, int inflight, int calls, Stats& stats, Issue issue) {
  std::atomic<int> next{0};
  std::atomic<int> finished{0};
  std::mutex mu;
  std::condition_variable all_done;
  const absl::Time start = absl::Now();
  std::function<void(int)> launch = [&](int client) {
    const int i = next.fetch_add(1);
    if (i >= calls) return;
    const absl::Time sent = absl::Now();
    issue(client, i, [&, client, sent](const grpc::Status& status) {
      const double us = absl::ToDoubleMicroseconds(absl::Now() - sent);
      {
        std::lock_guard<std::mutex> lock(stats.mu);
        stats.latencies_us.push_back(us);
        if (!status.ok()) {
          if (stats.errors++ == 0) stats.first_error = status.error_message();
        }
      }
      if (finished.fetch_add(1) + 1 == calls) {
        std::lock_guard<std::mutex> lock(mu);
        all_done.notify_all();
      } else {
        launch(client);
      }
    });
  };
  for (int c = 0; c < clients; ++c) {
    for (int k = 0; k < inflight; ++k) launch(c);
  }
  std::unique_lock<std::mutex> lock(mu);
  all_done.wait(lock, [&] { return finished.load() >= calls; });
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// The runs of MakeRun's DAG that `calls` ReportTimings walk through: each call is one event,
// STARTED then FINISHED for every task.
int RunsFor(int calls, int tasks) { return (calls + 2 * tasks - 1) / (2 * tasks); }

// Runs `calls` ReportTimings of `view` from one client thread per stub, `inflight` in flight
// each, and returns the seconds they took. The server must know runs run-0 .. run-<RunsFor - 1>
// of MakeRun's DAG (a server that does not check, such as the echo, need not).
double DriveReportTiming(std::vector<std::unique_ptr<PrewarmService::Stub>>& stubs, int inflight,
                         int calls, int tasks, prewarm::v1::ReportTimingView view, Stats& stats) {
  // Call i: run i / (2 * tasks); within it, tasks in order, each STARTED then FINISHED. Calls
  // of one run go in order through one client, so events never contradict the task's state.
  const int clients = static_cast<int>(stubs.size());
  const int runs = RunsFor(calls, tasks);
  std::atomic<int> next_run{0};
  struct Lane {
    int run = -1;
    int step = 0;
  };
  // Simpler closed loop: every in-flight slot owns a run and walks through its events.
  const int slots = clients * inflight;
  std::vector<Lane> lanes(slots);
  std::atomic<int> issued{0};
  std::atomic<int> completed{0};
  std::mutex mu;
  std::condition_variable all_done;
  const absl::Time start = absl::Now();
  std::function<void(int)> step = [&](int slot) {
    Lane& lane = lanes[slot];
    if (lane.run < 0 || lane.step >= 2 * tasks) {
      lane.run = next_run.fetch_add(1);
      lane.step = 0;
      if (lane.run >= runs) return;
    }
    if (issued.fetch_add(1) >= calls) return;
    const int task = lane.step / 2;
    const bool finish = lane.step % 2 == 1;
    ++lane.step;
    auto* ctx = new grpc::ClientContext();
    auto* req = new prewarm::v1::ReportTimingRequest();
    auto* resp = new prewarm::v1::ReportTimingResponse();
    req->set_run_id(absl::StrCat("run-", lane.run));
    req->set_task_id(absl::StrCat("t", task));
    req->set_event(finish ? prewarm::v1::TASK_EVENT_TYPE_FINISHED
                          : prewarm::v1::TASK_EVENT_TYPE_STARTED);
    req->set_view(view);
    const absl::Time sent = absl::Now();
    stubs[slot % clients]->async()->ReportTiming(
        ctx, req, resp, [&, slot, sent, ctx, req, resp](grpc::Status s) {
          {
            std::lock_guard<std::mutex> lock(stats.mu);
            stats.latencies_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - sent));
            if (!s.ok() && stats.errors++ == 0) stats.first_error = s.error_message();
          }
          delete ctx;
          delete req;
          delete resp;
          if (completed.fetch_add(1) + 1 >= calls) {
            std::lock_guard<std::mutex> lock(mu);
            all_done.notify_all();
            return;
          }
          step(slot);
        });
  };
  for (int s = 0; s < slots; ++s) step(s);
  {
    std::unique_lock<std::mutex> lock(mu);
    all_done.wait(lock, [&] { return completed.load() >= calls; });
  }
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// Prints the measurement of `calls` that took `seconds` and `cpu_seconds`; with a `ceiling`
// measured before (rate > 0), also the ratios to it.
Result Report(const std::string& what, int calls, double seconds, double cpu_seconds, Stats& stats,
              Result ceiling = {}) {
  std::sort(stats.latencies_us.begin(), stats.latencies_us.end());
  auto q = [&](double p) {
    return stats.latencies_us[static_cast<size_t>(p * (stats.latencies_us.size() - 1))];
  };
  Result result{.what = what,
                .rate = calls / seconds,
                .cpu_us_per_call = cpu_seconds * 1e6 / calls,
                .p50_us = q(0.5),
                .p99_us = q(0.99),
                .errors = stats.errors};
  std::string ratio;
  if (ceiling.rate > 0) {
    result.ratio = result.rate / ceiling.rate;
    result.cpu_ratio = ceiling.cpu_us_per_call / result.cpu_us_per_call;
    ratio = absl::StrFormat("  ratio=%.2f cpu_ratio=%.2f", result.ratio, result.cpu_ratio);
  }
  std::printf(
      "%-14s calls=%d  %.0f calls/s  cpu=%.1f us/call%s  p50=%.0f us  p99=%.0f us  max=%.0f us  "
      "errors=%lld%s%s\n",
      what.c_str(), calls, result.rate, result.cpu_us_per_call, ratio.c_str(), q(0.5), q(0.99),
      stats.latencies_us.back(), static_cast<long long>(stats.errors),
      stats.errors ? "  first error: " : "", stats.first_error.c_str());
  return result;
}

// Teaches the server `runs` past runs of MakeRun's DAG before the timed calls, so that they plan
// against spread-out history rather than one-valued priors. Each run started in the past; its
// tasks' times are simulated (seeded): a task starts 0.1–1 s after its last parent finished
// and lasts a lognormal time around its own median (5–60 s, sigma 0.4); a third of the tasks
// report a cold start of 0.5–3 s. Events carry those times (event_time), in order, one blocking
// call at a time per client thread. Returns false on the first error, printed.
bool TeachHistory(std::vector<std::unique_ptr<PrewarmService::Stub>>& stubs, int runs, int tasks) {
  const int chains = std::max(1, tasks / 10);
  std::vector<double> median_s(tasks);
  std::mt19937_64 task_rng(13);
  for (double& m : median_s) m = std::uniform_real_distribution<double>(5, 60)(task_rng);
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  // Runs start spread over the 20 hours before the last hour, within the server's default
  // max_past_start (24 h) however many there are; each lasts minutes, so all end in the past.
  const absl::Time first_start = absl::Now() - absl::Hours(21);
  const absl::Duration spacing = absl::Hours(20) / std::max(runs, 1);
  auto teach = [&](int client) {
    for (int run = next.fetch_add(1); run < runs && !failed; run = next.fetch_add(1)) {
      std::mt19937_64 rng(1000 + run);
      const absl::Time start = first_start + spacing * run;
      const std::string run_id = absl::StrCat("history-", run);
      prewarm::v1::PrewarmRequest submit = MakeRun(run_id, tasks);
      *submit.mutable_start_time() = prewarm::ToProtoTimestamp(start);
      grpc::Status status;
      {
        grpc::ClientContext ctx;
        prewarm::v1::PrewarmResponse response;
        status = stubs[client]->Prewarm(&ctx, submit, &response);
      }
      std::vector<absl::Time> finished(tasks);
      for (int t = 0; t < tasks && status.ok(); ++t) {
        const absl::Time ready = t >= chains ? finished[t - chains] : start;
        const absl::Time began =
            ready + absl::Seconds(std::uniform_real_distribution<double>(0.1, 1)(rng));
        finished[t] = began + absl::Seconds(std::lognormal_distribution<double>(
                                  std::log(median_s[t]), 0.4)(rng));
        const bool cold = t % 3 == 0;
        const double cold_start_s = std::uniform_real_distribution<double>(0.5, 3)(rng);
        for (const bool finish : {false, true}) {
          prewarm::v1::ReportTimingRequest report;
          report.set_run_id(run_id);
          report.set_task_id(absl::StrCat("t", t));
          report.set_event(finish ? prewarm::v1::TASK_EVENT_TYPE_FINISHED
                                  : prewarm::v1::TASK_EVENT_TYPE_STARTED);
          *report.mutable_event_time() = prewarm::ToProtoTimestamp(finish ? finished[t] : began);
          if (finish && cold) {
            report.set_cold(true);
            *report.mutable_cold_start() = prewarm::ToProtoDuration(absl::Seconds(cold_start_s));
          }
          report.set_view(prewarm::v1::REPORT_TIMING_VIEW_SUMMARY);
          grpc::ClientContext ctx;
          prewarm::v1::ReportTimingResponse response;
          status = stubs[client]->ReportTiming(&ctx, report, &response);
          if (!status.ok()) break;
        }
      }
      if (!status.ok() && !failed.exchange(true)) {
        std::fprintf(stderr, "teaching history (%s): %s\n", run_id.c_str(),
                     status.error_message().c_str());
      }
    }
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < static_cast<int>(stubs.size()); ++c) threads.emplace_back(teach, c);
  for (std::thread& t : threads) t.join();
  return !failed;
}

// Empties the PostgreSQL database `uri` (the tables a previous measurement left).
bool EmptyDatabase(const std::string& uri) {
  absl::StatusOr<prewarm::pg::ConnPtr> conn = prewarm::pg::Connect(uri, absl::Seconds(30));
  absl::Status s = conn.ok() ? prewarm::pg::ExecScript(
                                   conn->get(), uri,
                                   "DROP TABLE IF EXISTS observations, services, runs, run_events, "
                                   "prewarm_fence, prewarm_schema; "
                                   "DROP FUNCTION IF EXISTS prewarm_check_fence(bigint)",
                                   "emptying the database")
                             : conn.status();
  if (!s.ok()) std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return s.ok();
}

bool IsEcho(const std::string& mode) { return mode == "echo" || mode == "echo_handoff"; }

// One stub per client thread, each on a connection of its own to `target`.
std::vector<std::unique_ptr<PrewarmService::Stub>> ConnectClients(const std::string& target,
                                                                  int clients) {
  std::vector<std::unique_ptr<PrewarmService::Stub>> stubs;
  for (int c = 0; c < clients; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    stubs.push_back(PrewarmService::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args)));
  }
  return stubs;
}

// One measurement of an echo mode: ReportTiming of `view` (summary) against EchoService,
// answering at once ("echo") or from a thread of its own ("echo_handoff"), through the same
// clients as report_timing: the figures differ from report_timing's by what prewarmd does for a
// call (its gate, metrics, registry and store).
std::optional<Result> MeasureEcho(const std::string& mode, prewarm::v1::ReportTimingView view,
                                  int clients, int inflight, int calls, int tasks, Result ceiling) {
  const bool handoff = mode == "echo_handoff";
  prewarm::EchoService echo(handoff ? prewarm::EchoService::Answer::kHandedOff
                                    : prewarm::EchoService::Answer::kInline);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&echo);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "cannot start the echo server\n");
    return std::nullopt;
  }
  const std::string target = absl::StrCat("127.0.0.1:", port);
  std::printf("%s: echo server in-process on %s (%s); %d clients x %d in flight\n", mode.c_str(),
              target.c_str(),
              handoff ? "answers from a thread of its own, as after a commit" : "answers at once",
              clients, inflight);
  std::vector<std::unique_ptr<PrewarmService::Stub>> stubs = ConnectClients(target, clients);
  Stats stats;
  StartProfile();
  const double cpu = CpuSeconds();
  const double seconds = DriveReportTiming(stubs, inflight, calls, tasks, view, stats);
  EndProfile(mode);
  Result result = Report(handoff ? "echo handed off" : "echo at once", calls, seconds,
                         CpuSeconds() - cpu, stats, ceiling);
  server->Shutdown();
  return result;
}

// One measurement of `mode` (report_timing: answering in `view`) on a fresh server over `store`,
// or nullopt on a setup failure. `ceiling`: the ceiling's when measured before (for the ratios).
std::optional<Result> Measure(const std::string& mode, prewarm::v1::ReportTimingView view,
                              const std::string& store, int clients, int inflight, int calls,
                              int tasks, Result ceiling) {
  char dir_template[] = "/tmp/prewarm-load-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  // Removed with the store in it when the measurement ends (declared before the server, so
  // after the server has stopped).
  struct RemoveOnExit {
    const std::string& path;
    ~RemoveOnExit() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } remove_dir{dir};
  prewarm::ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.metrics_address = "";
  const bool postgres = store != "sqlite";
  if (postgres && !EmptyDatabase(store)) return std::nullopt;
  options.store_path = postgres ? store : dir + "/prewarm.db";
  options.store_sync_full = absl::GetFlag(FLAGS_store_sync) == "full";
  options.registry.max_active_runs = 1'000'000;
  if (const int samples = absl::GetFlag(FLAGS_sample_count); samples > 0) {
    options.registry.planner.sample_count = samples;
  }
  auto server = prewarm::Server::Start(options, prewarm::Clock::Real());
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start the server: %s\n", server.status().ToString().c_str());
    return std::nullopt;
  }
  // A PostgreSQL replica starts as a standby and leads after its first poll.
  for (const absl::Time end = absl::Now() + absl::Seconds(30);
       !(*server)->leading() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const std::string target = absl::StrCat("127.0.0.1:", (*server)->grpc_port());
  std::vector<std::unique_ptr<PrewarmService::Stub>> stubs = ConnectClients(target, clients);
  std::printf("%s: prewarmd in-process on %s, store %s (%s); %d clients x %d in flight\n",
              mode.c_str(), target.c_str(), prewarm::pg::Describe(options.store_path).c_str(),
              postgres                  ? "PostgreSQL"
              : options.store_sync_full ? "SQLite synchronous=FULL"
                                        : "SQLite synchronous=NORMAL",
              clients, inflight);

  const std::string services = absl::GetFlag(FLAGS_services);
  std::unique_ptr<Watcher> watcher;  // Stopped before the server shuts down.
  if (mode != "ceiling" && services == "delegated") {
    if (!RegisterServices(*stubs[0])) return std::nullopt;
    watcher = std::make_unique<Watcher>(target);
  }

  Result result;
  if (mode == "ceiling") {
    // ListServices on an empty registry: a trivial RPC through the same server and adapter, the
    // ceiling that gRPC itself sets on this machine.
    Stats stats;
    StartProfile();
    const double cpu = CpuSeconds();
    const double seconds = Drive(clients, inflight, calls, stats, [&](int c, int, auto done) {
      auto* ctx = new grpc::ClientContext();
      auto* req = new prewarm::v1::ListServicesRequest();
      auto* resp = new prewarm::v1::ListServicesResponse();
      stubs[c]->async()->ListServices(ctx, req, resp, [=](grpc::Status s) {
        done(s);
        delete ctx;
        delete req;
        delete resp;
      });
    });
    EndProfile("ceiling");
    result = Report("ceiling", calls, seconds, CpuSeconds() - cpu, stats);
  } else if (mode == "prewarm") {
    Stats stats;
    StartProfile();
    const double cpu = CpuSeconds();
    const double seconds = Drive(clients, inflight, calls, stats, [&](int c, int i, auto done) {
      IssuePrewarm(*stubs[c], absl::StrCat("run-", i), tasks, done);
    });
    EndProfile("prewarm");
    result =
        Report(absl::StrCat("Prewarm/", tasks), calls, seconds, CpuSeconds() - cpu, stats, ceiling);
  } else {
    const int history_runs = absl::GetFlag(FLAGS_history_runs);
    const absl::Time taught = absl::Now();
    if (!TeachHistory(stubs, history_runs, tasks)) return std::nullopt;
    std::printf("history: %d past runs of %d tasks taught in %.1f s\n", history_runs, tasks,
                absl::ToDoubleSeconds(absl::Now() - taught));
    const int runs = RunsFor(calls, tasks);
    Stats setup;
    Drive(clients, 8, runs, setup, [&](int c, int i, auto done) {
      IssuePrewarm(*stubs[c], absl::StrCat("run-", i), tasks, done);
    });
    if (setup.errors > 0) {
      std::fprintf(stderr, "setup failed: %s\n", setup.first_error.c_str());
      return std::nullopt;
    }
    Stats stats;
    StartProfile();
    const double cpu = CpuSeconds();
    const double seconds = DriveReportTiming(stubs, inflight, calls, tasks, view, stats);
    const bool summary = view == prewarm::v1::REPORT_TIMING_VIEW_SUMMARY;
    EndProfile(absl::StrCat("report_timing ", summary ? "summary" : "full"));
    result = Report(absl::StrCat("ReportTiming ", summary ? "summary" : "full",
                                 postgres ? " (PostgreSQL)" : " (SQLite)"),
                    calls, seconds, CpuSeconds() - cpu, stats, ceiling);
  }
  if (watcher != nullptr) {
    std::printf("services: delegated; the watcher reported %lld warm-ups\n",
                static_cast<long long>(watcher->reported()));
    watcher.reset();
  }
  const auto store_status = (*server)->Shutdown();
  std::printf("store: %s\n", store_status.ok() ? "flushed" : store_status.ToString().c_str());
  return result;
}

// "median (lowest-highest)" of `field` over `results`, with printf `format` for each number.
std::string MedianAndRange(const std::vector<Result>& results, double Result::*field,
                           const absl::FormatSpec<double>& format) {
  std::vector<double> values;
  for (const Result& r : results) values.push_back(r.*field);
  std::sort(values.begin(), values.end());
  // The lower middle of an even count: a figure that was measured, not an average of two.
  const double median = values[(values.size() - 1) / 2];
  return absl::StrCat(absl::StrFormat(format, median), " (",
                      absl::StrFormat(format, values.front()), "-",
                      absl::StrFormat(format, values.back()), ")");
}

// After several rounds: each measurement's medians and ranges, in the order first measured.
void PrintMedians(const std::vector<std::vector<Result>>& rounds) {
  std::printf("medians of %zu rounds (lowest-highest):\n", rounds.size());
  for (size_t m = 0; m < rounds.front().size(); ++m) {
    std::vector<Result> results;
    for (const std::vector<Result>& round : rounds) results.push_back(round[m]);
    const bool has_ratio = results.front().ratio > 0;
    std::printf(
        "%-14s %s calls/s  cpu=%s us/call%s  p50=%s us  p99=%s us\n", results.front().what.c_str(),
        MedianAndRange(results, &Result::rate, "%.0f").c_str(),
        MedianAndRange(results, &Result::cpu_us_per_call, "%.1f").c_str(),
        has_ratio ? absl::StrCat("  ratio=", MedianAndRange(results, &Result::ratio, "%.2f"),
                                 " cpu_ratio=", MedianAndRange(results, &Result::cpu_ratio, "%.2f"))
                        .c_str()
                  : "",
        MedianAndRange(results, &Result::p50_us, "%.0f").c_str(),
        MedianAndRange(results, &Result::p99_us, "%.0f").c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with mutex deadlock detection on; it costs every lock a graph
  // update. Tests keep it; the server does not need it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  prewarm::SetMinLogLevel(prewarm::LogLevel::kWarning);
  const int clients = absl::GetFlag(FLAGS_clients);
  const int inflight = absl::GetFlag(FLAGS_inflight);
  const int calls = absl::GetFlag(FLAGS_calls);
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const std::vector<std::string> modes = absl::StrSplit(absl::GetFlag(FLAGS_mode), ',');
  const std::vector<std::string> stores = absl::StrSplit(absl::GetFlag(FLAGS_stores), ',');
  std::vector<prewarm::v1::ReportTimingView> views;
  bool bad =
      clients < 1 || inflight < 1 || calls < 1 || tasks < 2 || rounds < 1 || stores.empty() ||
      absl::GetFlag(FLAGS_history_runs) < 0 || absl::GetFlag(FLAGS_sample_count) < 0 ||
      absl::GetFlag(FLAGS_sample_count) > prewarm::PlannerOptions::kMaxSampleCount ||
      (absl::GetFlag(FLAGS_services) != "none" && absl::GetFlag(FLAGS_services) != "delegated");
  for (absl::string_view view : absl::StrSplit(absl::GetFlag(FLAGS_view), ',')) {
    if (view == "full") {
      views.push_back(prewarm::v1::REPORT_TIMING_VIEW_FULL);
    } else if (view == "summary") {
      views.push_back(prewarm::v1::REPORT_TIMING_VIEW_SUMMARY);
    } else {
      bad = true;
    }
  }
  for (const std::string& mode : modes) {
    bad |= mode != "report_timing" && mode != "prewarm" && mode != "ceiling" && mode != "echo" &&
           mode != "echo_handoff";
  }
  for (const std::string& store : stores) {
    bad |= store != "sqlite" && !prewarm::pg::IsPostgresUri(store);
  }
  if (bad) {
    std::fprintf(stderr, "bad flags: see --help\n");
    return 2;
  }
  std::vector<std::vector<Result>> results(rounds);
  for (std::vector<Result>& round : results) {
    Result ceiling;
    for (const std::string& mode : modes) {
      // Only ReportTiming's answer has views; the echo always answers a summary.
      std::vector<prewarm::v1::ReportTimingView> mode_views = {
          prewarm::v1::REPORT_TIMING_VIEW_UNSPECIFIED};
      if (mode == "report_timing") mode_views = views;
      if (IsEcho(mode)) mode_views = {prewarm::v1::REPORT_TIMING_VIEW_SUMMARY};
      for (prewarm::v1::ReportTimingView view : mode_views) {
        for (const std::string& store : stores) {
          std::optional<Result> result =
              IsEcho(mode) ? MeasureEcho(mode, view, clients, inflight, calls, tasks, ceiling)
                           : Measure(mode, view, store, clients, inflight, calls, tasks, ceiling);
          if (!result.has_value() || result->errors > 0) return 1;
          round.push_back(*result);
          if (mode == "ceiling") ceiling = *result;
          if (mode == "ceiling" || IsEcho(mode)) break;  // The store is not on their path.
        }
      }
    }
  }
  if (rounds > 1) PrintMedians(results);
  return 0;
}
