#pragma once

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/clock.h"
#include "prewarm/v1/prewarm.grpc.pb.h"
#include "server/delegated_warmups.h"
#include "server/metrics.h"
#include "server/run_registry.h"
#include "server/service_registry.h"

namespace prewarm {

// The gRPC face of prewarmd: converts requests to RunRegistry calls and absl::Status to
// grpc::Status, and records every RPC's code and latency. Reached only through
// GatedPrewarmService, which has checked the bearer token.
// Handlers never block: RunRegistry answers through callbacks once the store has committed.
// Thread-safe.
class PrewarmService final : public v1::PrewarmService::CallbackService {
 public:
  PrewarmService(RunRegistry& registry, ServiceRegistry& services, DelegatedWarmups& delegated,
                 Metrics& metrics, Clock& clock);

  grpc::ServerUnaryReactor* RegisterService(grpc::CallbackServerContext* context,
                                            const v1::RegisterServiceRequest* request,
                                            v1::RegisterServiceResponse* response) override;
  grpc::ServerUnaryReactor* ListServices(grpc::CallbackServerContext* context,
                                         const v1::ListServicesRequest* request,
                                         v1::ListServicesResponse* response) override;
  grpc::ServerUnaryReactor* Prewarm(grpc::CallbackServerContext* context,
                                    const v1::PrewarmRequest* request,
                                    v1::PrewarmResponse* response) override;
  grpc::ServerUnaryReactor* ReportTiming(grpc::CallbackServerContext* context,
                                         const v1::ReportTimingRequest* request,
                                         v1::ReportTimingResponse* response) override;
  grpc::ServerUnaryReactor* GetPlan(grpc::CallbackServerContext* context,
                                    const v1::GetPlanRequest* request,
                                    v1::GetPlanResponse* response) override;
  grpc::ServerUnaryReactor* CancelRun(grpc::CallbackServerContext* context,
                                      const v1::CancelRunRequest* request,
                                      v1::CancelRunResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchWarmupsResponse>* WatchWarmups(
      grpc::CallbackServerContext* context, const v1::WatchWarmupsRequest* request) override;
  grpc::ServerUnaryReactor* ReportWarmup(grpc::CallbackServerContext* context,
                                         const v1::ReportWarmupRequest* request,
                                         v1::ReportWarmupResponse* response) override;
  grpc::ServerUnaryReactor* GetServiceStats(grpc::CallbackServerContext* context,
                                            const v1::GetServiceStatsRequest* request,
                                            v1::GetServiceStatsResponse* response) override;

  // For shutdown: from now on every new call is answered UNAVAILABLE at once ("shutting down";
  // clients retry elsewhere or later). Calls already running carry on.
  void Drain() ABSL_LOCKS_EXCLUDED(calls_mu_);
  // Waits until no unary call is in flight (started and not yet answered: its Finish has not
  // returned), or `timeout` passed; returns whether none is. The service is not used for a call
  // after its Finish, so it may then be destroyed while gRPC completes the call. WatchWarmups
  // streams do not count: they end only when the client or the server ends them.
  bool WaitUntilIdle(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(calls_mu_);

 private:
  // A unary reactor that records the RPC's metrics when it finishes.
  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context, const char* method,
                                  std::function<void(std::function<void(absl::Status)>)> body);

  RunRegistry& registry_;
  ServiceRegistry& services_;
  DelegatedWarmups& delegated_;
  Metrics& metrics_;
  Clock& clock_;

  absl::Mutex calls_mu_;
  int64_t calls_in_flight_ ABSL_GUARDED_BY(calls_mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(calls_mu_) = false;
};

// absl::Status -> grpc::Status, keeping the code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace prewarm
