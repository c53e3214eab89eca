#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/history_store.h"

namespace prewarm {

// A HistoryStore that forwards every call to `inner_`: a test store overrides only what it
// intercepts.
class ForwardingStore : public HistoryStore {
 public:
  explicit ForwardingStore(std::unique_ptr<HistoryStore> inner) : inner_(std::move(inner)) {}

  void AppendObservation(Observation obs, CommitCallback done) override {
    inner_->AppendObservation(std::move(obs), std::move(done));
  }
  void DeleteObservations(Observation::Kind kind, std::string key, CommitCallback done) override {
    inner_->DeleteObservations(kind, std::move(key), std::move(done));
  }
  void PutService(std::string name, std::string serialized, CommitCallback done) override {
    inner_->PutService(std::move(name), std::move(serialized), std::move(done));
  }
  void DeleteService(std::string name, CommitCallback done) override {
    inner_->DeleteService(std::move(name), std::move(done));
  }
  void PutRun(std::string run_id, std::string serialized, CommitCallback done) override {
    inner_->PutRun(std::move(run_id), std::move(serialized), std::move(done));
  }
  void DeleteRun(std::string run_id, CommitCallback done) override {
    inner_->DeleteRun(std::move(run_id), std::move(done));
  }
  void AppendRunEvent(std::string run_id, std::string serialized, CommitCallback done) override {
    inner_->AppendRunEvent(std::move(run_id), std::move(serialized), std::move(done));
  }
  absl::Status LoadObservations(const std::function<void(const Observation&)>& fn) override {
    return inner_->LoadObservations(fn);
  }
  absl::Status LoadServices(
      const std::function<void(absl::string_view, absl::string_view)>& fn) override {
    return inner_->LoadServices(fn);
  }
  absl::Status LoadRuns(
      const std::function<void(absl::string_view, absl::string_view)>& fn) override {
    return inner_->LoadRuns(fn);
  }
  absl::Status LoadRunEvents(
      const std::function<void(absl::string_view, absl::string_view)>& fn) override {
    return inner_->LoadRunEvents(fn);
  }
  absl::Status Flush() override { return inner_->Flush(); }
  absl::Status Close() override { return inner_->Close(); }
  StoreStats stats() const override { return inner_->stats(); }

 protected:
  const std::unique_ptr<HistoryStore> inner_;
};

// A store that, once deferring, commits each write at once but keeps its callback until
// Release(): it plays a writer thread that has not reached the callbacks yet.
class DeferringStore final : public ForwardingStore {
 public:
  explicit DeferringStore(std::unique_ptr<HistoryStore> inner)
      : ForwardingStore(std::move(inner)) {}

  void AppendObservation(Observation obs, CommitCallback done) override {
    inner_->AppendObservation(std::move(obs), Wrap(std::move(done)));
  }
  void DeleteObservations(Observation::Kind kind, std::string key, CommitCallback done) override {
    inner_->DeleteObservations(kind, std::move(key), Wrap(std::move(done)));
  }
  void PutService(std::string name, std::string serialized, CommitCallback done) override {
    inner_->PutService(std::move(name), std::move(serialized), Wrap(std::move(done)));
  }
  void DeleteService(std::string name, CommitCallback done) override {
    inner_->DeleteService(std::move(name), Wrap(std::move(done)));
  }
  void PutRun(std::string run_id, std::string serialized, CommitCallback done) override {
    inner_->PutRun(std::move(run_id), std::move(serialized), Wrap(std::move(done)));
  }
  void DeleteRun(std::string run_id, CommitCallback done) override {
    inner_->DeleteRun(std::move(run_id), Wrap(std::move(done)));
  }
  void AppendRunEvent(std::string run_id, std::string serialized, CommitCallback done) override {
    inner_->AppendRunEvent(std::move(run_id), std::move(serialized), Wrap(std::move(done)));
  }

  void Defer() {
    absl::MutexLock lock(&mu_);
    deferring_ = true;
  }
  size_t held() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  // Runs the held callbacks (on the calling thread) and stops deferring.
  void Release() {
    std::vector<std::pair<CommitCallback, absl::Status>> held;
    {
      absl::MutexLock lock(&mu_);
      deferring_ = false;
      held.swap(held_);
    }
    for (auto& [done, status] : held) done(status);
  }

 private:
  CommitCallback Wrap(CommitCallback done) {
    if (!done) return done;
    return [this, done = std::move(done)](absl::Status status) {
      {
        absl::MutexLock lock(&mu_);
        if (deferring_) {
          held_.emplace_back(done, std::move(status));
          return;
        }
      }
      done(std::move(status));
    };
  }

  absl::Mutex mu_;
  bool deferring_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<CommitCallback, absl::Status>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prewarm
