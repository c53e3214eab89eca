// Durable, acknowledged AppendObservation throughput of the SQLite store: what ReportTiming can
// sustain when it answers only after the observation is committed. The server's target is 30,000
// acknowledged writes/s on a 2-core machine.
//
// Arguments: writer threads, synchronous FULL (1) or NORMAL (0), writes in flight per thread (0:
// unbounded, i.e. everything is queued at once; otherwise a closed loop, like clients that wait for
// their answer), max_batch_delay in microseconds. Each iteration writes kWrites observations over
// kKeys keys into a fresh file and stops the clock when the last callback has run. Counters:
// writes_per_s, p50_ms / p99_ms from Append to callback, writes_per_commit. BM_ReportTimingWrites
// (below) adds run events of many concurrent runs, as ReportTiming writes them;
// BM_OpenAndLoadRunEvents times a restart's open and load of the active runs' events, also on
// PostgreSQL when PREWARM_BENCH_POSTGRES names a database (BM_OpenAndLoadRunEvents/postgres).
//
//   sqlite_history_store_benchmark --benchmark_counters_tabular=true

#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "predictor/check.h"
#include "server/history_store.h"

namespace prewarm {
namespace {

constexpr int kWrites = 100'000;
constexpr int kKeys = 1000;  // ~ workflows x tasks; every key is pruned at 128.

using SteadyClock = std::chrono::steady_clock;

// CPU time of the whole process (all threads), in seconds.
double ProcessCpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// A fresh directory under the temp dir for one benchmark's store files (removed by the caller).
std::string MakeTempDir() {
  std::string dir = (std::filesystem::temp_directory_path() / "history_store_bench_XXXXXX");
  PREWARM_CHECK(mkdtemp(dir.data()) != nullptr, "mkdtemp failed");
  return dir;
}

void BM_DurableAppend(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const bool synchronous_full = state.range(1) != 0;
  const int in_flight = static_cast<int>(state.range(2));
  const absl::Duration delay = absl::Microseconds(state.range(3));
  const int per_thread = kWrites / threads;
  const int total = per_thread * threads;

  const std::string dir = MakeTempDir();

  std::vector<SteadyClock::time_point> started(total);
  std::vector<int64_t> latency_ns(total);
  std::vector<double> all_latencies_ms;
  int64_t commits = 0;
  int iteration = 0;
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store =
        HistoryStore::OpenSqlite({.path = absl::StrCat(dir, "/bench", iteration++, ".db"),
                                  .max_batch_delay = delay,
                                  .synchronous_full = synchronous_full});
    PREWARM_CHECK(store.ok(), std::string(store.status().message()).c_str());
    HistoryStore& s = **store;

    const SteadyClock::time_point begin = SteadyClock::now();
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t) {
      writers.emplace_back([&, t] {
        // Bounds this thread's unacknowledged writes when in_flight > 0.
        std::counting_semaphore<> slots(in_flight > 0 ? in_flight : 1);
        for (int i = 0; i < per_thread; ++i) {
          const int index = t * per_thread + i;
          if (in_flight > 0) slots.acquire();
          started[index] = SteadyClock::now();
          Observation obs{.kind = Observation::Kind::kTaskDuration,
                          .key = absl::StrCat("workflow\x1ftask-", index % kKeys),
                          .value = 1.0 + index % 17,
                          .time = absl::FromUnixSeconds(1'700'000'000) + absl::Milliseconds(index)};
          s.AppendObservation(std::move(obs), [&, index](absl::Status status) {
            PREWARM_CHECK(status.ok(), std::string(status.message()).c_str());
            latency_ns[index] = (SteadyClock::now() - started[index]).count();
            if (in_flight > 0) slots.release();
          });
        }
        // The semaphore must outlive the callbacks that release it.
        if (in_flight > 0) {
          for (int i = 0; i < in_flight; ++i) slots.acquire();
        }
      });
    }
    for (std::thread& writer : writers) writer.join();
    PREWARM_CHECK(s.Flush().ok(), "flush failed");  // Returns after the last callback.
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - begin).count();
    state.SetIterationTime(seconds);
    commits += s.stats().commits;
    PREWARM_CHECK(s.Close().ok(), "close failed");
    for (int64_t ns : latency_ns) all_latencies_ms.push_back(ns / 1e6);
  }
  std::filesystem::remove_all(dir);

  std::sort(all_latencies_ms.begin(), all_latencies_ms.end());
  auto quantile = [&](double q) {
    return all_latencies_ms[static_cast<size_t>(q * (all_latencies_ms.size() - 1))];
  };
  const double writes = static_cast<double>(total) * state.iterations();
  state.counters["writes_per_s"] = benchmark::Counter(writes, benchmark::Counter::kIsRate);
  state.counters["p50_ms"] = quantile(0.50);
  state.counters["p99_ms"] = quantile(0.99);
  state.counters["writes_per_commit"] = writes / static_cast<double>(commits);
  state.SetLabel(absl::StrCat(
      synchronous_full ? "FULL" : "NORMAL", " threads=", threads,
      in_flight > 0 ? absl::StrCat(" in_flight/thread=", in_flight) : std::string(" open-loop"),
      " delay=", absl::FormatDuration(delay)));
}

void Args(benchmark::internal::Benchmark* b) {
  for (int synchronous_full : {0, 1}) {
    for (int threads : {1, 4, 16}) {
      b->Args({threads, synchronous_full, /*in_flight=*/0, /*delay_us=*/2000});
      b->Args({threads, synchronous_full, /*in_flight=*/64, /*delay_us=*/2000});
      b->Args({threads, synchronous_full, /*in_flight=*/64, /*delay_us=*/0});
    }
  }
}

BENCHMARK(BM_DurableAppend)
    ->ArgNames({"threads", "full", "in_flight", "delay_us"})
    ->Apply(Args)
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

// What ReportTiming writes per call: two observations and one event of the call's run (its last
// write, whose callback answers the call), with kRunsInFlight runs reporting at once, each
// deleted after its kEventsPerRun events. Arguments: writer threads, calls in flight per thread
// (each slot owns one run at a time). Counters: calls_per_s, cpu_us_per_call (the process's, all
// threads), writes_per_commit.
//
//   sqlite_history_store_benchmark --benchmark_filter=ReportTiming
constexpr int kCalls = 100'000;
constexpr int kEventsPerRun = 200;
constexpr int kTasks = kEventsPerRun / 2;

void BM_ReportTimingWrites(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int in_flight = static_cast<int>(state.range(1));
  const int per_thread = kCalls / threads;
  const std::string event(120, 'e');  // ~ a serialized TaskEvent.

  const std::string dir = MakeTempDir();
  int64_t commits = 0;
  int64_t writes = 0;
  double cpu_seconds = 0;
  int iteration = 0;
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store =
        HistoryStore::OpenSqlite({.path = absl::StrCat(dir, "/bench", iteration++, ".db")});
    PREWARM_CHECK(store.ok(), std::string(store.status().message()).c_str());
    HistoryStore& s = **store;

    const SteadyClock::time_point begin = SteadyClock::now();
    const double cpu_begin = ProcessCpuSeconds();
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t) {
      writers.emplace_back([&, t] {
        std::counting_semaphore<> slots(in_flight);
        for (int i = 0; i < per_thread; ++i) {
          // Slot i % in_flight's run; its events in order, as one client's calls would be.
          const int step = i / in_flight;
          const int run =
              (t * in_flight + i % in_flight) + threads * in_flight * (step / kEventsPerRun);
          const int task = (step % kEventsPerRun) / 2;
          const std::string run_id = absl::StrCat("run-", run);
          const std::string key = absl::StrCat("workflow\x1ft", task);
          slots.acquire();
          s.AppendObservation(
              {.kind = Observation::Kind::kTaskDuration,
               .key = key,
               .value = 1.0 + i % 17,
               .time = absl::FromUnixSeconds(1'700'000'000) + absl::Milliseconds(i)},
              nullptr);
          s.AppendObservation(
              {.kind = Observation::Kind::kTaskRun,
               .key = key,
               .value = 1,
               .time = absl::FromUnixSeconds(1'700'000'000) + absl::Milliseconds(i)},
              nullptr);
          s.AppendRunEvent(run_id, event, [&](absl::Status status) {
            PREWARM_CHECK(status.ok(), std::string(status.message()).c_str());
            slots.release();
          });
          if (step % kEventsPerRun == kEventsPerRun - 1) s.DeleteRun(run_id, nullptr);
        }
        for (int i = 0; i < in_flight; ++i) slots.acquire();
      });
    }
    for (std::thread& writer : writers) writer.join();
    PREWARM_CHECK(s.Flush().ok(), "flush failed");
    state.SetIterationTime(std::chrono::duration<double>(SteadyClock::now() - begin).count());
    cpu_seconds += ProcessCpuSeconds() - cpu_begin;
    commits += s.stats().commits;
    writes += s.stats().writes;
    PREWARM_CHECK(s.Close().ok(), "close failed");
  }
  std::filesystem::remove_all(dir);
  const double calls = static_cast<double>(per_thread) * threads * state.iterations();
  state.counters["calls_per_s"] = benchmark::Counter(calls, benchmark::Counter::kIsRate);
  state.counters["cpu_us_per_call"] = cpu_seconds * 1e6 / calls;
  state.counters["writes_per_commit"] = static_cast<double>(writes) / static_cast<double>(commits);
  state.SetLabel(absl::StrCat("NORMAL threads=", threads, " in_flight/thread=", in_flight,
                              " runs at once=", threads * in_flight));
}

BENCHMARK(BM_ReportTimingWrites)
    ->ArgNames({"threads", "in_flight"})
    ->Args({4, 64})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

// What a restart pays for the active runs' events: a store holding `runs` unfinished runs of
// kEventsPerRun events each, appended interleaved as concurrent runs report, is opened and its run
// events loaded. Built once per argument; counters open_s and load_s per iteration, and
// events_per_s for the load. `postgres_uri` empty: a temp SQLite file; otherwise that PostgreSQL
// database, which must hold no run events (they are deleted again at the end).
void OpenAndLoadRunEvents(benchmark::State& state, const std::string& postgres_uri) {
  const int runs = static_cast<int>(state.range(0));
  const std::string event(120, 'e');
  const std::string dir = postgres_uri.empty() ? MakeTempDir() : "";
  const StoreOptions options = {.path = postgres_uri.empty() ? dir + "/bench.db" : postgres_uri};
  const auto open = [&] {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::Open(options);
    PREWARM_CHECK(store.ok(), std::string(store.status().message()).c_str());
    return *std::move(store);
  };
  {
    std::unique_ptr<HistoryStore> store = open();
    int64_t existing = 0;
    PREWARM_CHECK(
        store->LoadRunEvents([&](absl::string_view, absl::string_view) { ++existing; }).ok(),
        "load failed");
    PREWARM_CHECK(existing == 0, "the store already holds run events");
    for (int e = 0; e < kEventsPerRun; ++e) {
      for (int r = 0; r < runs; ++r) store->AppendRunEvent(absl::StrCat("run-", r), event, nullptr);
    }
    PREWARM_CHECK(store->Close().ok(), "close failed");
  }
  double open_seconds = 0;
  double load_seconds = 0;
  int64_t loaded = 0;
  for (auto _ : state) {
    const SteadyClock::time_point begin = SteadyClock::now();
    std::unique_ptr<HistoryStore> store = open();
    const SteadyClock::time_point opened = SteadyClock::now();
    const absl::Status load = store->LoadRunEvents([&](absl::string_view, absl::string_view bytes) {
      loaded += static_cast<int64_t>(bytes.size() == event.size());
    });
    PREWARM_CHECK(load.ok(), "load failed");
    const SteadyClock::time_point end = SteadyClock::now();
    state.SetIterationTime(std::chrono::duration<double>(end - begin).count());
    open_seconds += std::chrono::duration<double>(opened - begin).count();
    load_seconds += std::chrono::duration<double>(end - opened).count();
    PREWARM_CHECK(store->Close().ok(), "close failed");
  }
  if (postgres_uri.empty()) {
    std::filesystem::remove_all(dir);
  } else {
    std::unique_ptr<HistoryStore> store = open();
    for (int r = 0; r < runs; ++r) store->DeleteRun(absl::StrCat("run-", r), nullptr);
    PREWARM_CHECK(store->Close().ok(), "deleting the runs failed");
  }
  PREWARM_CHECK(loaded == int64_t{runs} * kEventsPerRun * state.iterations(), "events lost");
  const double n = static_cast<double>(state.iterations());
  state.counters["open_s"] = open_seconds / n;
  state.counters["load_s"] = load_seconds / n;
  state.counters["events_per_s"] = static_cast<double>(loaded) / load_seconds;
  state.SetLabel(absl::StrCat(runs, " runs x ", kEventsPerRun, " events of ", event.size(), " B"));
}

void RegisterOpenAndLoadRunEvents(const char* name, const std::string& postgres_uri) {
  benchmark::RegisterBenchmark(name, OpenAndLoadRunEvents, postgres_uri)
      ->ArgNames({"runs"})
      ->Arg(2000)
      ->Arg(10000)  // 2,000,000 events: the figures in docs/store.md.
      ->UseManualTime()
      ->Iterations(3)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace
}  // namespace prewarm

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  prewarm::RegisterOpenAndLoadRunEvents("BM_OpenAndLoadRunEvents", "");
  // PREWARM_BENCH_POSTGRES=postgresql://...: the same on that PostgreSQL database.
  if (const char* uri = std::getenv("PREWARM_BENCH_POSTGRES"); uri != nullptr && *uri != '\0') {
    prewarm::RegisterOpenAndLoadRunEvents("BM_OpenAndLoadRunEvents/postgres", uri);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
