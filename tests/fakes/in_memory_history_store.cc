#include "tests/fakes/in_memory_history_store.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "predictor/check.h"
#include "server/group_commit_store.h"

namespace prewarm {
namespace {

constexpr size_t kMaxWriteBytes = size_t{256} << 20;  // As the SQLite store.

}  // namespace

InMemoryHistoryStore::InMemoryHistoryStore(int max_observations_per_key)
    : max_observations_per_key_(max_observations_per_key) {
  PREWARM_CHECK(max_observations_per_key >= 1, "max_observations_per_key must be >= 1");
}

void InMemoryHistoryStore::Write(size_t bytes, const std::function<void()>& apply,
                                 CommitCallback done) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      status = absl::FailedPreconditionError("in-memory prewarm store is closed");
    } else if (bytes > kMaxWriteBytes) {
      status = absl::InvalidArgumentError("write exceeds 256 MiB");
    } else {
      status = write_error_;
    }
    if (status.ok()) {
      apply();
      ++stats_.commits;
      ++stats_.writes;
    } else {
      ++stats_.write_errors;
      if (first_error_.ok()) first_error_ = status;
    }
  }
  if (done) done(std::move(status));
}

void InMemoryHistoryStore::AppendObservation(Observation obs, CommitCallback done) {
  Write(
      obs.key.size(),
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        std::deque<Observation>& window = observations_[{static_cast<int>(obs.kind), obs.key}];
        window.push_back(std::move(obs));
        if (window.size() > static_cast<size_t>(max_observations_per_key_)) window.pop_front();
      },
      std::move(done));
}

void InMemoryHistoryStore::PutService(std::string name, std::string serialized,
                                      CommitCallback done) {
  Write(
      name.size() + serialized.size(),
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        services_.insert_or_assign(std::move(name), std::move(serialized));
      },
      std::move(done));
}

void InMemoryHistoryStore::DeleteObservations(Observation::Kind kind, std::string key,
                                              CommitCallback done) {
  Write(
      key.size(),
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        observations_.erase({static_cast<int>(kind), key});
      },
      std::move(done));
}

void InMemoryHistoryStore::DeleteService(std::string name, CommitCallback done) {
  Write(
      name.size(), [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { services_.erase(name); },
      std::move(done));
}

void InMemoryHistoryStore::PutRun(std::string run_id, std::string serialized, CommitCallback done) {
  Write(
      run_id.size() + serialized.size(),
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        runs_.insert_or_assign(std::move(run_id), std::move(serialized));
      },
      std::move(done));
}

void InMemoryHistoryStore::DeleteRun(std::string run_id, CommitCallback done) {
  Write(
      run_id.size(),
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        runs_.erase(run_id);
        run_events_.erase(run_id);
      },
      std::move(done));
}

void InMemoryHistoryStore::AppendRunEvent(std::string run_id, std::string serialized,
                                          CommitCallback done) {
  Write(
      run_id.size() + serialized.size(),
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        run_events_[std::move(run_id)].push_back(std::move(serialized));
      },
      std::move(done));
}

// Loads copy a snapshot under the lock and call `fn` outside it, so that, as with the SQLite store,
// `fn` may write to the store.
absl::Status InMemoryHistoryStore::LoadObservations(
    const std::function<void(const Observation&)>& fn) {
  std::vector<Observation> snapshot;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("in-memory prewarm store is closed");
    for (const auto& [kind_key, window] : observations_) {
      snapshot.insert(snapshot.end(), window.begin(), window.end());
    }
  }
  // As the real stores: rows of kinds this binary does not know are skipped.
  NewestPerKey newest(max_observations_per_key_, fn, "in memory");
  for (Observation& obs : snapshot) newest.Add(std::move(obs));
  newest.Finish();
  return absl::OkStatus();
}

absl::Status InMemoryHistoryStore::LoadServices(
    const std::function<void(absl::string_view, absl::string_view)>& fn) {
  std::map<std::string, std::string> snapshot;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("in-memory prewarm store is closed");
    snapshot = services_;
  }
  for (const auto& [name, serialized] : snapshot) fn(name, serialized);
  return absl::OkStatus();
}

absl::Status InMemoryHistoryStore::LoadRuns(
    const std::function<void(absl::string_view, absl::string_view)>& fn) {
  std::map<std::string, std::string> snapshot;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("in-memory prewarm store is closed");
    snapshot = runs_;
  }
  for (const auto& [run_id, serialized] : snapshot) fn(run_id, serialized);
  return absl::OkStatus();
}

absl::Status InMemoryHistoryStore::LoadRunEvents(
    const std::function<void(absl::string_view, absl::string_view)>& fn) {
  std::map<std::string, std::vector<std::string>> snapshot;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("in-memory prewarm store is closed");
    snapshot = run_events_;
  }
  for (const auto& [run_id, events] : snapshot) {
    for (const std::string& e : events) fn(run_id, e);
  }
  return absl::OkStatus();
}

absl::Status InMemoryHistoryStore::Flush() {
  absl::MutexLock lock(&mu_);
  return std::exchange(first_error_, absl::OkStatus());
}

absl::Status InMemoryHistoryStore::Close() {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::OkStatus();
  closed_ = true;
  return std::exchange(first_error_, absl::OkStatus());
}

StoreStats InMemoryHistoryStore::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;  // queued stays 0: writes commit at once.
}

void InMemoryHistoryStore::SetWriteError(absl::Status error) {
  absl::MutexLock lock(&mu_);
  write_error_ = std::move(error);
}

std::unique_ptr<HistoryStore> NewInMemoryHistoryStore(int max_observations_per_key) {
  return std::make_unique<InMemoryHistoryStore>(max_observations_per_key);
}

}  // namespace prewarm
