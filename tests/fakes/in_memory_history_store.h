#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/history_store.h"

namespace prewarm {

// A HistoryStore in memory, for tests of the store's users: the same semantics as the SQLite
// store (bounded keys, load order, Flush/Close, errors after Close) except that every write
// commits at once and its callback runs inline, on the caller's thread, before the call returns.
// Nothing survives the object. Thread-safe.
class InMemoryHistoryStore final : public HistoryStore {
 public:
  // REQUIRES: max_observations_per_key >= 1.
  explicit InMemoryHistoryStore(int max_observations_per_key = 128);
  ~InMemoryHistoryStore() override { Close().IgnoreError(); }

  void AppendObservation(Observation obs, CommitCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void DeleteObservations(Observation::Kind kind, std::string key, CommitCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void PutService(std::string name, std::string serialized, CommitCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void DeleteService(std::string name, CommitCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void PutRun(std::string run_id, std::string serialized, CommitCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void DeleteRun(std::string run_id, CommitCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void AppendRunEvent(std::string run_id, std::string serialized, CommitCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status LoadObservations(const std::function<void(const Observation&)>& fn) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status LoadServices(const std::function<void(absl::string_view, absl::string_view)>& fn)
      override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status LoadRuns(const std::function<void(absl::string_view, absl::string_view)>& fn)
      override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status LoadRunEvents(const std::function<void(absl::string_view, absl::string_view)>& fn)
      override ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status Flush() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Close() override ABSL_LOCKS_EXCLUDED(mu_);
  StoreStats stats() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Fault injection: while `error` is not OK, every write fails with it (like a full disk) and
  // changes nothing. OK restores normal service.
  void SetWriteError(absl::Status error) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Applies `apply` (a write of `bytes`) under the lock unless writes fail, then runs `done`
  // outside it.
  void Write(size_t bytes, const std::function<void()>& apply, CommitCallback done)
      ABSL_LOCKS_EXCLUDED(mu_);

  const int max_observations_per_key_;

  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status write_error_ ABSL_GUARDED_BY(mu_);
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);  // Since the last Flush() or Close().
  StoreStats stats_ ABSL_GUARDED_BY(mu_);
  // Ordered like the SQLite store loads: by (kind, key) in byte order, each oldest first.
  std::map<std::pair<int, std::string>, std::deque<Observation>> observations_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> services_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> runs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> run_events_ ABSL_GUARDED_BY(mu_);
};

// The same as std::make_unique<InMemoryHistoryStore>(max_observations_per_key).
std::unique_ptr<HistoryStore> NewInMemoryHistoryStore(int max_observations_per_key = 128);

}  // namespace prewarm
