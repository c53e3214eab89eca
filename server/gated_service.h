#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prewarm/v1/prewarm.grpc.pb.h"
#include "server/arena_allocator.h"
#include "server/metrics.h"
#include "server/prewarm_service.h"

namespace prewarm {

// The PrewarmService registered with gRPC for the whole life of the process. It checks the
// optional bearer token of every call first, on every replica: a call without the right token is
// answered UNAUTHENTICATED and learns nothing else (not even whether this replica leads). It then
// forwards the call to the PrewarmService of the current leadership term, or, on a standby (no
// term), answers UNAVAILABLE at once with the reason ("standby: replica X leads at epoch 7"), so
// that clients retry, and Kubernetes routes to the leader through readiness. Health checks are
// another service and need no token. Thread-safe.
class GatedPrewarmService final : public v1::PrewarmService::CallbackService {
 public:
  // `bearer_token`: when non-empty, every call must carry "authorization: Bearer <token>".
  GatedPrewarmService(Metrics& metrics, std::string bearer_token, std::string standby_reason);

  // From now on calls go to `service` (owned by the caller, alive until Close() returns).
  void Open(PrewarmService* service) ABSL_LOCKS_EXCLUDED(mu_);
  // From now on calls are answered UNAVAILABLE with `reason`; returns the service that was open
  // (null if none), whose calls still running the caller drains before destroying it.
  PrewarmService* Close(std::string reason) ABSL_LOCKS_EXCLUDED(mu_);
  // The reason given while closed (e.g. who leads now).
  void SetReason(std::string reason) ABSL_LOCKS_EXCLUDED(mu_);

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

 private:
  // OK without a configured token, or when the call carries it; else UNAUTHENTICATED saying what
  // is wrong with the call's metadata (and nothing about the server).
  absl::Status Authorize(const grpc::CallbackServerContext& context) const;
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Forward(const char* method,
                                    grpc::ServerUnaryReactor* (PrewarmService::*handler)(
                                        grpc::CallbackServerContext*, const Request*, Response*),
                                    grpc::CallbackServerContext* context, const Request* request,
                                    Response* response) ABSL_LOCKS_EXCLUDED(mu_);

  Metrics& metrics_;
  const std::string bearer_token_;
  // ReportTiming, the hot call, parses and answers on a per-call arena.
  ArenaMessageAllocator<v1::ReportTimingRequest, v1::ReportTimingResponse> report_timing_allocator_;
  // Held shared while a call enters the open service, so that Close() returns only once no call
  // can enter it any more.
  absl::Mutex mu_;
  PrewarmService* service_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prewarm
