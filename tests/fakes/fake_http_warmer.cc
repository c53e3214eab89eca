#include "tests/fakes/fake_http_warmer.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace prewarm::testing {

WarmupResult FakeHttpWarmer::Success(absl::Duration latency) {
  return WarmupResult{.success = true,
                      .http_status = 200,
                      .attempts = 1,
                      .latency = latency,
                      .total_time = latency};
}

WarmupResult FakeHttpWarmer::Failure(std::string error, int http_status, int attempts) {
  return WarmupResult{.success = false,
                      .http_status = http_status,
                      .attempts = attempts,
                      .error = std::move(error)};
}

FakeHttpWarmer::~FakeHttpWarmer() { Shutdown(); }

void FakeHttpWarmer::Fire(WarmupRequest request, std::function<void(const WarmupResult&)> done) {
  {
    absl::MutexLock lock(&mu_);
    fired_.push_back(request);
    if (!shut_down_) {
      pending_.push_back(Pending{std::move(request), std::move(done)});
      return;
    }
  }
  WarmupResult result = Failure("shut down", 0, 0);
  result.id = request.id;
  done(result);
}

int FakeHttpWarmer::in_flight() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pending_.size());
}

void FakeHttpWarmer::Shutdown() {
  std::deque<Pending> cancelled;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    cancelled.swap(pending_);
  }
  for (Pending& warmup : cancelled) {
    WarmupResult result = Failure("shut down", 0, 0);
    result.id = warmup.request.id;
    warmup.done(result);
  }
}

std::optional<FakeHttpWarmer::Pending> FakeHttpWarmer::Take(
    const std::function<bool(const Pending&)>& matches) {
  absl::MutexLock lock(&mu_);
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (matches(*it)) {
      Pending taken = std::move(*it);
      pending_.erase(it);
      return taken;
    }
  }
  return std::nullopt;
}

absl::Status FakeHttpWarmer::Complete(uint64_t id, WarmupResult result) {
  std::optional<Pending> warmup = Take([id](const Pending& p) { return p.request.id == id; });
  if (!warmup) return absl::NotFoundError(absl::StrCat("no warm-up ", id, " is pending"));
  result.id = id;
  warmup->done(result);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FakeHttpWarmer::CompleteNext(WarmupResult result) {
  std::optional<Pending> warmup = Take([](const Pending&) { return true; });
  if (!warmup) return absl::NotFoundError("no warm-up is pending");
  result.id = warmup->request.id;
  warmup->done(result);
  return result.id;
}

int FakeHttpWarmer::CompleteAll(const WarmupResult& result) {
  std::deque<Pending> ending;
  {
    absl::MutexLock lock(&mu_);
    ending.swap(pending_);
  }
  for (Pending& warmup : ending) {
    WarmupResult r = result;
    r.id = warmup.request.id;
    warmup.done(r);
  }
  return static_cast<int>(ending.size());
}

std::vector<WarmupRequest> FakeHttpWarmer::pending() const {
  absl::MutexLock lock(&mu_);
  std::vector<WarmupRequest> requests;
  for (const Pending& warmup : pending_) requests.push_back(warmup.request);
  return requests;
}

std::vector<uint64_t> FakeHttpWarmer::pending_ids() const {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> ids;
  for (const Pending& warmup : pending_) ids.push_back(warmup.request.id);
  return ids;
}

std::vector<WarmupRequest> FakeHttpWarmer::fired() const {
  absl::MutexLock lock(&mu_);
  return fired_;
}

}  // namespace prewarm::testing
