#include "server/group_commit_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "predictor/check.h"
#include "server/log.h"

namespace prewarm {
namespace {

// Which store's writer runs on this thread.
thread_local const GroupCommitStore* current_writer = nullptr;

}  // namespace

GroupCommitStore::GroupCommitStore(std::string name, const StoreOptions& options)
    : name_(std::move(name)),
      max_batch_(options.max_batch),
      max_batch_delay_(options.max_batch_delay),
      on_commit_(options.on_commit) {}

GroupCommitStore::~GroupCommitStore() {
  PREWARM_CHECK(!writer_.joinable(), "a derived store must call StopWriter() in its destructor");
}

void GroupCommitStore::StartWriter() {
  writer_ = std::thread([this] { WriterLoop(); });
}

bool GroupCommitStore::OnWriterThread() const { return current_writer == this; }

void GroupCommitStore::AppendObservation(Observation obs, CommitCallback done) {
  Enqueue(Write{.op = Op::kAppendObservation,
                .key = std::move(obs.key),
                .kind = obs.kind,
                .value = obs.value,
                .time = obs.time,
                .done = std::move(done)});
}

void GroupCommitStore::DeleteObservations(Observation::Kind kind, std::string key,
                                          CommitCallback done) {
  Enqueue(Write{
      .op = Op::kDeleteObservations, .key = std::move(key), .kind = kind, .done = std::move(done)});
}

void GroupCommitStore::PutService(std::string name, std::string serialized, CommitCallback done) {
  Enqueue(Write{.op = Op::kPutService,
                .key = std::move(name),
                .bytes = std::move(serialized),
                .done = std::move(done)});
}

void GroupCommitStore::DeleteService(std::string name, CommitCallback done) {
  Enqueue(Write{.op = Op::kDeleteService, .key = std::move(name), .done = std::move(done)});
}

void GroupCommitStore::PutRun(std::string run_id, std::string serialized, CommitCallback done) {
  Enqueue(Write{.op = Op::kPutRun,
                .key = std::move(run_id),
                .bytes = std::move(serialized),
                .done = std::move(done)});
}

void GroupCommitStore::DeleteRun(std::string run_id, CommitCallback done) {
  Enqueue(Write{.op = Op::kDeleteRun, .key = std::move(run_id), .done = std::move(done)});
}

void GroupCommitStore::AppendRunEvent(std::string run_id, std::string serialized,
                                      CommitCallback done) {
  Enqueue(Write{.op = Op::kAppendRunEvent,
                .key = std::move(run_id),
                .bytes = std::move(serialized),
                .done = std::move(done)});
}

StoreStats GroupCommitStore::stats() const {
  absl::MutexLock lock(&mu_);
  return StoreStats{.commits = commits_,
                    .writes = writes_,
                    .write_errors = write_errors_,
                    .queued = static_cast<int64_t>(enqueued_ - completed_)};
}

void GroupCommitStore::Enqueue(Write write) {
  absl::Status rejected;
  if (write.key.size() + write.bytes.size() > kMaxWriteBytes) {
    rejected = absl::InvalidArgumentError(absl::StrCat("prewarm store ", name_, ": a write of ",
                                                       write.key.size() + write.bytes.size(),
                                                       " bytes exceeds ", kMaxWriteBytes));
  }
  {
    absl::MutexLock lock(&mu_);
    if (rejected.ok() && !stopping_) {
      pending_.push_back(std::move(write));
      ++enqueued_;
      return;
    }
    if (rejected.ok()) {
      rejected = absl::FailedPreconditionError(absl::StrCat("prewarm store ", name_, " is closed"));
    }
    ++write_errors_;
    if (first_error_.ok()) first_error_ = rejected;
  }
  if (write.done) write.done(std::move(rejected));
}

void GroupCommitStore::WriterLoop() {
  current_writer = this;
  std::vector<Write> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &GroupCommitStore::HasWorkOrStopping));
      if (pending_.empty()) return;  // Stopping, and everything queued is done.
      if (max_batch_delay_ > absl::ZeroDuration()) {
        mu_.AwaitWithTimeout(absl::Condition(this, &GroupCommitStore::BatchReady),
                             max_batch_delay_);
      }
      batch.swap(pending_);  // Hands pending_ the emptied buffer of the previous round.
    }
    const size_t max_batch = static_cast<size_t>(max_batch_);
    for (size_t begin = 0; begin < batch.size(); begin += max_batch) {
      absl::Span<const Write> chunk = absl::MakeConstSpan(batch).subspan(begin, max_batch);
      const absl::Time started = absl::Now();
      absl::Status status = CommitBatch(chunk);
      if (on_commit_) on_commit_(status.ok(), absl::Now() - started);
      for (const Write& write : chunk) {
        if (write.done) write.done(status);
      }
      absl::MutexLock lock(&mu_);
      completed_ += chunk.size();
      if (status.ok()) {
        ++commits_;
        writes_ += static_cast<int64_t>(chunk.size());
      } else {
        write_errors_ += static_cast<int64_t>(chunk.size());
        if (first_error_.ok()) first_error_ = status;
      }
    }
    batch.clear();
    // Do not keep a burst's worth of memory for ever.
    if (batch.capacity() > 4 * max_batch) batch = std::vector<Write>();
  }
}

absl::Status GroupCommitStore::Flush() {
  PREWARM_CHECK(!OnWriterThread(), "HistoryStore::Flush() called from a commit callback");
  absl::MutexLock lock(&mu_);
  const uint64_t target = enqueued_;
  ++flush_waiters_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return completed_ >= target; };
  mu_.Await(absl::Condition(&done));
  --flush_waiters_;
  return std::exchange(first_error_, absl::OkStatus());
}

absl::Status GroupCommitStore::StopWriter() {
  PREWARM_CHECK(!OnWriterThread(), "HistoryStore::Close() called from a commit callback");
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();  // The writer drains everything queued before.
  absl::MutexLock lock(&mu_);
  return std::exchange(first_error_, absl::OkStatus());
}

bool NewestPerKey::IsKnownKind(Observation::Kind kind) {
  // No default: -Wswitch names a kind added to the enum and not here.
  switch (kind) {
    case Observation::Kind::kTaskDuration:
    case Observation::Kind::kServiceDuration:
    case Observation::Kind::kColdStart:
    case Observation::Kind::kWarmLatency:
    case Observation::Kind::kDispatchGap:
    case Observation::Kind::kTaskRun:
    case Observation::Kind::kChildOutcomes:
      return true;
  }
  return false;
}

void NewestPerKey::Add(Observation obs) {
  if (!IsKnownKind(obs.kind)) {
    ++skipped_unknown_;
    ++unknown_kinds_[static_cast<int>(obs.kind)];
    return;
  }
  if (!group_.empty() && (group_.back().kind != obs.kind || group_.back().key != obs.key)) {
    PassGroup();
  }
  group_.push_back(std::move(obs));
}

void NewestPerKey::PassGroup() {
  for (size_t i = group_.size() > max_ ? group_.size() - max_ : 0; i < group_.size(); ++i) {
    fn_(group_[i]);
  }
  group_.clear();
}

void NewestPerKey::Finish() {
  PassGroup();
  if (unknown_kinds_.empty()) return;
  std::string kinds;
  for (const auto& [kind, rows] : unknown_kinds_) {
    absl::StrAppend(&kinds, kinds.empty() ? "" : ", ", kind, " (", rows, " rows)");
  }
  PREWARM_LOG(WARNING) << "prewarm store " << store_name_ << ": skipped " << skipped_unknown_
                       << " history rows of observation kinds this binary does not know: " << kinds
                       << "; a newer prewarmd wrote them, they are kept in the store";
  unknown_kinds_.clear();
}

}  // namespace prewarm
