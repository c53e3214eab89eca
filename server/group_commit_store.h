#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/history_store.h"

namespace prewarm {

// What the SQLite and PostgreSQL stores share: any thread queues writes, one writer
// thread commits everything queued as one transaction (CommitBatch, at most max_batch writes),
// then runs the writes' callbacks with its outcome. Flush(), stats() and refusing writes after
// StopWriter() or beyond the size limit are here too. Internal to the stores (server/*_store.cc).
// Thread-safe.
class GroupCommitStore : public HistoryStore {
 public:
  enum class Op {
    kAppendObservation,
    kDeleteObservations,
    kPutService,
    kDeleteService,
    kPutRun,
    kDeleteRun,
    kAppendRunEvent
  };

  // One queued write. Observations use key, kind, value and time (deletions key and kind); the
  // others key (the service name or run id) and, for puts, bytes.
  struct Write {
    Op op = Op::kAppendObservation;
    std::string key = {};
    std::string bytes = {};
    Observation::Kind kind = Observation::Kind::kTaskDuration;
    double value = 0;
    absl::Time time = {};
    CommitCallback done = {};
  };

  // Larger writes are refused up front (both databases would refuse them too, failing every
  // other write of their transaction).
  static constexpr size_t kMaxWriteBytes = size_t{256} << 20;

  void AppendObservation(Observation obs, CommitCallback done) override;
  void DeleteObservations(Observation::Kind kind, std::string key, CommitCallback done) override;
  void PutService(std::string name, std::string serialized, CommitCallback done) override;
  void DeleteService(std::string name, CommitCallback done) override;
  void PutRun(std::string run_id, std::string serialized, CommitCallback done) override;
  void DeleteRun(std::string run_id, CommitCallback done) override;
  void AppendRunEvent(std::string run_id, std::string serialized, CommitCallback done) override;
  absl::Status Flush() override ABSL_LOCKS_EXCLUDED(mu_);
  StoreStats stats() const override ABSL_LOCKS_EXCLUDED(mu_);

  // The tables and their order are the same in both databases.
  absl::Status LoadServices(
      const std::function<void(absl::string_view, absl::string_view)>& fn) override {
    return LoadBlobs("SELECT name, serialized FROM services ORDER BY name", fn);
  }
  absl::Status LoadRuns(
      const std::function<void(absl::string_view, absl::string_view)>& fn) override {
    return LoadBlobs("SELECT run_id, serialized FROM runs ORDER BY run_id", fn);
  }
  // One pass in seq order, the order appended: runs interleave as they reported, and the restart
  // collects each run's log anyway. Grouping by run instead walked PostgreSQL's index on
  // (run_id, seq), whose entries point all over the table: 1.3-1.5x the load time
  // (docs/store.md).
  absl::Status LoadRunEvents(
      const std::function<void(absl::string_view, absl::string_view)>& fn) override {
    return LoadBlobs("SELECT run_id, serialized FROM run_events ORDER BY seq", fn);
  }

 protected:
  // `name` names the store in errors ("prewarm store <name> is closed"). The options' max_batch,
  // max_batch_delay and on_commit apply.
  GroupCommitStore(std::string name, const StoreOptions& options);
  ~GroupCommitStore() override;

  // Starts the writer thread: the end of the derived constructor (CommitBatch must be callable).
  void StartWriter();
  // Refuses new writes, commits everything queued, joins the writer; returns the first write
  // error since the last Flush(). Idempotent. The derived Close() calls it before closing its
  // connections; the derived destructor too (a base destructor is too late for CommitBatch).
  absl::Status StopWriter() ABSL_LOCKS_EXCLUDED(mu_);
  // Whether this thread is the writer: Flush() or Close() from a commit callback would wait for
  // itself.
  bool OnWriterThread() const;

  // One transaction for the whole batch: all of it commits or none of it does. Writer thread.
  virtual absl::Status CommitBatch(absl::Span<const Write> batch) = 0;

  // Runs `sql`, a query of two byte columns, and passes each row to `fn`.
  virtual absl::Status LoadBlobs(
      const char* sql, const std::function<void(absl::string_view, absl::string_view)>& fn) = 0;

  const std::string& name() const { return name_; }

 private:
  void Enqueue(Write write) ABSL_LOCKS_EXCLUDED(mu_);
  void WriterLoop() ABSL_LOCKS_EXCLUDED(mu_);
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pending_.empty() || stopping_;
  }
  // Whether waiting longer for a fuller batch would only add latency.
  bool BatchReady() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || flush_waiters_ > 0 || pending_.size() >= static_cast<size_t>(max_batch_);
  }

  const std::string name_;
  const int max_batch_;
  const absl::Duration max_batch_delay_;
  const std::function<void(bool, absl::Duration)> on_commit_;
  std::thread writer_;

  mutable absl::Mutex mu_;
  std::vector<Write> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;     // No more writes are accepted.
  int flush_waiters_ ABSL_GUARDED_BY(mu_) = 0;     // A waiting Flush() cuts the batch delay short.
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;     // Writes accepted, ever.
  uint64_t completed_ ABSL_GUARDED_BY(mu_) = 0;    // Of those, committed or failed, callbacks run.
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);  // Since the last Flush() or StopWriter().
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t write_errors_ ABSL_GUARDED_BY(mu_) = 0;
};

// Passes on, of observations read grouped by (kind, key) and oldest first, only each key's newest
// `max_per_key`: rows older than that are left by an earlier run with a larger bound until the
// key's next write prunes them, and are skipped at load rather than pruned at open (which would
// scan the whole table). Buffers one key's rows at a time. Both stores' LoadObservations use it.
//
// Rows of a kind this binary does not know (written by a newer prewarmd that shares or left the
// store) are skipped, never passed on as another kind; Finish() logs how many, once per load.
// They stay in the store untouched (docs/store.md, "Forward compatibility").
class NewestPerKey {
 public:
  // `store_name` names the store in the log line (no password: pg::Describe for PostgreSQL).
  NewestPerKey(int max_per_key, const std::function<void(const Observation&)>& fn,
               std::string store_name)
      : max_(static_cast<size_t>(max_per_key)), fn_(fn), store_name_(std::move(store_name)) {}

  // The next row; its key's group ends when a row of another key arrives.
  void Add(Observation obs);
  // Passes on the last key's rows and logs the rows skipped; call after the last row.
  void Finish();

 private:
  // Whether this binary knows `kind`, i.e. Observation::Kind names it.
  static bool IsKnownKind(Observation::Kind kind);
  // Passes on the buffered key's newest rows.
  void PassGroup();

  const size_t max_;
  const std::function<void(const Observation&)>& fn_;
  const std::string store_name_;
  std::vector<Observation> group_;
  int64_t skipped_unknown_ = 0;
  // Skipped rows per unknown kind, for the log line.
  std::map<int, int64_t> unknown_kinds_;
};

}  // namespace prewarm
