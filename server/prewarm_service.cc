#include "server/prewarm_service.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "predictor/names.h"

namespace prewarm {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

PrewarmService::PrewarmService(RunRegistry& registry, ServiceRegistry& services,
                               DelegatedWarmups& delegated, Metrics& metrics, Clock& clock)
    : registry_(registry),
      services_(services),
      delegated_(delegated),
      metrics_(metrics),
      clock_(clock) {}

void PrewarmService::Drain() {
  absl::MutexLock lock(&calls_mu_);
  draining_ = true;
}

bool PrewarmService::WaitUntilIdle(absl::Duration timeout) {
  absl::MutexLock lock(&calls_mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls_mu_) { return calls_in_flight_ == 0; };
  return calls_mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

grpc::ServerUnaryReactor* PrewarmService::Start(
    grpc::CallbackServerContext* context, const char* method,
    std::function<void(std::function<void(absl::Status)>)> body) {
  bool draining;
  {
    absl::MutexLock lock(&calls_mu_);
    ++calls_in_flight_;
    draining = draining_;
  }
  // gRPC's default reactor rather than one of ours: gRPC runs its trivial OnDone on the thread
  // that completes the call, where it hands the OnDone of a reactor of ours to its executor
  // thread, a wake-up for every call (docs/BENCHMARKS.md, "The tenth round"). A call counts as
  // in flight until its Finish has returned: nothing of this service runs for it after that.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Duration started = clock_.MonotonicNow();
  auto finish = [this, reactor, method, started](absl::Status status) {
    metrics_.RpcHandled(method, absl::StatusCodeToString(status.code()),
                        clock_.MonotonicNow() - started);
    reactor->Finish(ToGrpcStatus(status));
    absl::MutexLock lock(&calls_mu_);
    --calls_in_flight_;
  };
  if (draining) {
    finish(absl::UnavailableError("prewarmd is shutting down"));
    return reactor;
  }
  body(std::move(finish));
  return reactor;
}

grpc::ServerUnaryReactor* PrewarmService::RegisterService(grpc::CallbackServerContext* context,
                                                          const v1::RegisterServiceRequest* request,
                                                          v1::RegisterServiceResponse* response) {
  return Start(context, "RegisterService", [&, request, response](auto finish) {
    if (!request->has_service()) return finish(absl::InvalidArgumentError("service is required"));
    registry_.RegisterService(
        request->service(), [response, finish](absl::StatusOr<v1::RegisterServiceResponse> result) {
          if (result.ok()) *response = *std::move(result);
          finish(result.status());
        });
  });
}

grpc::ServerUnaryReactor* PrewarmService::ListServices(grpc::CallbackServerContext* context,
                                                       const v1::ListServicesRequest* request,
                                                       v1::ListServicesResponse* response) {
  return Start(context, "ListServices", [&, response](auto finish) {
    for (v1::Service& s : services_.List()) *response->add_services() = std::move(s);
    finish(absl::OkStatus());
  });
}

grpc::ServerUnaryReactor* PrewarmService::Prewarm(grpc::CallbackServerContext* context,
                                                  const v1::PrewarmRequest* request,
                                                  v1::PrewarmResponse* response) {
  return Start(context, "Prewarm", [&, request, response](auto finish) {
    registry_.Prewarm(*request, [response, finish](absl::StatusOr<v1::RunPlan> plan) {
      if (plan.ok()) *response->mutable_plan() = *std::move(plan);
      finish(plan.status());
    });
  });
}

grpc::ServerUnaryReactor* PrewarmService::ReportTiming(grpc::CallbackServerContext* context,
                                                       const v1::ReportTimingRequest* request,
                                                       v1::ReportTimingResponse* response) {
  return Start(context, "ReportTiming", [&, request, response](auto finish) {
    // Built in place: the response may live on the call's arena (GatedPrewarmService).
    registry_.ReportTiming(*request, response, std::move(finish));
  });
}

grpc::ServerUnaryReactor* PrewarmService::GetPlan(grpc::CallbackServerContext* context,
                                                  const v1::GetPlanRequest* request,
                                                  v1::GetPlanResponse* response) {
  return Start(context, "GetPlan", [&, request, response](auto finish) {
    absl::StatusOr<v1::RunPlan> plan = registry_.GetPlan(request->run_id());
    if (plan.ok()) *response->mutable_plan() = *std::move(plan);
    finish(plan.status());
  });
}

grpc::ServerUnaryReactor* PrewarmService::CancelRun(grpc::CallbackServerContext* context,
                                                    const v1::CancelRunRequest* request,
                                                    v1::CancelRunResponse* response) {
  return Start(context, "CancelRun", [&, request, response](auto finish) {
    // Answered once the retirement is committed: an acknowledged cancel survives a kill.
    absl::StatusOr<int> cancelled =
        registry_.CancelRun(request->run_id(), [response, finish](absl::StatusOr<int> committed) {
          if (committed.ok()) response->set_cancelled_warmups(*committed);
          finish(committed.status());
        });
    if (!cancelled.ok()) finish(cancelled.status());
  });
}

grpc::ServerUnaryReactor* PrewarmService::ReportWarmup(grpc::CallbackServerContext* context,
                                                       const v1::ReportWarmupRequest* request,
                                                       v1::ReportWarmupResponse* response) {
  return Start(context, "ReportWarmup",
               [&, request](auto finish) { finish(registry_.ReportWarmup(*request)); });
}

grpc::ServerUnaryReactor* PrewarmService::GetServiceStats(grpc::CallbackServerContext* context,
                                                          const v1::GetServiceStatsRequest* request,
                                                          v1::GetServiceStatsResponse* response) {
  return Start(context, "GetServiceStats", [&, request, response](auto finish) {
    absl::StatusOr<v1::GetServiceStatsResponse> stats =
        registry_.GetServiceStats(request->service());
    if (stats.ok()) *response = *std::move(stats);
    finish(stats.status());
  });
}

namespace {

// Streams a subscriber's warm-up instructions, one write at a time, until the client goes away.
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchWarmupsResponse> {
 public:
  WatchReactor(DelegatedWarmups& hub, Metrics& metrics, Clock& clock,
               std::vector<std::string> services)
      : hub_(hub),
        metrics_(metrics),
        clock_(clock),
        started_(clock.MonotonicNow()),
        alive_(std::make_shared<Liveness>()) {
    alive_->reactor = this;
    // The hub may call the wake-up just after the stream ended: it goes through `alive_`, which
    // OnDone clears before the reactor is deleted.
    id_ = hub_.Subscribe(std::move(services), [alive = alive_] {
      absl::MutexLock lock(&alive->mu);
      if (alive->reactor != nullptr) alive->reactor->WriteNext();
    });
    // The response headers go out now, not with the first instruction: a watcher that waits for
    // them knows it is subscribed and misses nothing published from then on.
    StartSendInitialMetadata();
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Close(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    WriteNext();
  }
  void OnCancel() override { Close(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override {
    hub_.Unsubscribe(id_);
    {
      absl::MutexLock lock(&alive_->mu);
      alive_->reactor = nullptr;
    }
    delete this;
  }

 private:
  struct Liveness {
    absl::Mutex mu;
    WatchReactor* reactor = nullptr;
  };

  // Writes the next instruction, if any and no write is in flight; once the queue is drained
  // of a subscription this replica ended (it stopped leading), ends the stream with UNAVAILABLE
  // so that the watcher reconnects to the new leader instead of waiting here for nothing.
  void WriteNext() {
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (hub_.Pop(id_, &next_)) {
        writing_ = true;
        StartWrite(&next_);
        return;
      }
    }
    if (hub_.Ended(id_)) {
      Close(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "this replica stopped leading; watch the leader instead"));
    }
  }
  void Close(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    // gRPC's codes are Abseil's, number for number.
    metrics_.RpcHandled(
        "WatchWarmups",
        absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
        clock_.MonotonicNow() - started_);
    Finish(status);
  }

  DelegatedWarmups& hub_;
  Metrics& metrics_;
  Clock& clock_;
  const absl::Duration started_;
  std::shared_ptr<Liveness> alive_;
  DelegatedWarmups::SubscriberId id_ = 0;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  v1::WatchWarmupsResponse next_;
};

// Ends a stream at once with an error.
class RejectedStream final : public grpc::ServerWriteReactor<v1::WatchWarmupsResponse> {
 public:
  explicit RejectedStream(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchWarmupsResponse>* PrewarmService::WatchWarmups(
    grpc::CallbackServerContext* context, const v1::WatchWarmupsRequest* request) {
  for (int i = 0; i < request->services_size(); ++i) {
    if (absl::Status s =
            ValidateServiceName(request->services(i), absl::StrCat("services[", i, "]"));
        !s.ok()) {
      metrics_.RpcHandled("WatchWarmups", "INVALID_ARGUMENT", absl::ZeroDuration());
      return new RejectedStream(s);
    }
  }
  return new WatchReactor(delegated_, metrics_, clock_,
                          {request->services().begin(), request->services().end()});
}

}  // namespace prewarm
