#include "server/gated_service.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace prewarm {
namespace {

// Ends a WatchWarmups stream at once with `status`.
class UnavailableStream final : public grpc::ServerWriteReactor<v1::WatchWarmupsResponse> {
 public:
  explicit UnavailableStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

GatedPrewarmService::GatedPrewarmService(Metrics& metrics, std::string standby_reason)
    : metrics_(metrics), reason_(std::move(standby_reason)) {
  SetMessageAllocatorFor_ReportTiming(&report_timing_allocator_);
}

void GatedPrewarmService::Open(PrewarmService* service) {
  absl::WriterMutexLock lock(&mu_);
  service_ = service;
}

PrewarmService* GatedPrewarmService::Close(std::string reason) {
  absl::WriterMutexLock lock(&mu_);
  reason_ = std::move(reason);
  return std::exchange(service_, nullptr);
}

void GatedPrewarmService::SetReason(std::string reason) {
  absl::WriterMutexLock lock(&mu_);
  reason_ = std::move(reason);
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* GatedPrewarmService::Forward(
    const char* method,
    grpc::ServerUnaryReactor* (PrewarmService::*handler)(grpc::CallbackServerContext*,
                                                         const Request*, Response*),
    grpc::CallbackServerContext* context, const Request* request, Response* response) {
  grpc::Status unavailable;
  {
    absl::ReaderMutexLock lock(&mu_);
    // Handlers never block: holding the lock across the call only delays a Close().
    if (service_ != nullptr) return (service_->*handler)(context, request, response);
    unavailable = grpc::Status(grpc::StatusCode::UNAVAILABLE, reason_);
  }
  metrics_.RpcHandled(method, "UNAVAILABLE", absl::ZeroDuration());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(unavailable);
  return reactor;
}

grpc::ServerUnaryReactor* GatedPrewarmService::RegisterService(
    grpc::CallbackServerContext* context, const v1::RegisterServiceRequest* request,
    v1::RegisterServiceResponse* response) {
  return Forward("RegisterService", &PrewarmService::RegisterService, context, request, response);
}

grpc::ServerUnaryReactor* GatedPrewarmService::ListServices(grpc::CallbackServerContext* context,
                                                            const v1::ListServicesRequest* request,
                                                            v1::ListServicesResponse* response) {
  return Forward("ListServices", &PrewarmService::ListServices, context, request, response);
}

grpc::ServerUnaryReactor* GatedPrewarmService::Prewarm(grpc::CallbackServerContext* context,
                                                       const v1::PrewarmRequest* request,
                                                       v1::PrewarmResponse* response) {
  return Forward("Prewarm", &PrewarmService::Prewarm, context, request, response);
}

grpc::ServerUnaryReactor* GatedPrewarmService::ReportTiming(grpc::CallbackServerContext* context,
                                                            const v1::ReportTimingRequest* request,
                                                            v1::ReportTimingResponse* response) {
  return Forward("ReportTiming", &PrewarmService::ReportTiming, context, request, response);
}

grpc::ServerUnaryReactor* GatedPrewarmService::GetPlan(grpc::CallbackServerContext* context,
                                                       const v1::GetPlanRequest* request,
                                                       v1::GetPlanResponse* response) {
  return Forward("GetPlan", &PrewarmService::GetPlan, context, request, response);
}

grpc::ServerUnaryReactor* GatedPrewarmService::CancelRun(grpc::CallbackServerContext* context,
                                                         const v1::CancelRunRequest* request,
                                                         v1::CancelRunResponse* response) {
  return Forward("CancelRun", &PrewarmService::CancelRun, context, request, response);
}

grpc::ServerUnaryReactor* GatedPrewarmService::ReportWarmup(grpc::CallbackServerContext* context,
                                                            const v1::ReportWarmupRequest* request,
                                                            v1::ReportWarmupResponse* response) {
  return Forward("ReportWarmup", &PrewarmService::ReportWarmup, context, request, response);
}

grpc::ServerUnaryReactor* GatedPrewarmService::GetServiceStats(
    grpc::CallbackServerContext* context, const v1::GetServiceStatsRequest* request,
    v1::GetServiceStatsResponse* response) {
  return Forward("GetServiceStats", &PrewarmService::GetServiceStats, context, request, response);
}

grpc::ServerWriteReactor<v1::WatchWarmupsResponse>* GatedPrewarmService::WatchWarmups(
    grpc::CallbackServerContext* context, const v1::WatchWarmupsRequest* request) {
  grpc::Status unavailable;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (service_ != nullptr) return service_->WatchWarmups(context, request);
    unavailable = grpc::Status(grpc::StatusCode::UNAVAILABLE, reason_);
  }
  metrics_.RpcHandled("WatchWarmups", "UNAVAILABLE", absl::ZeroDuration());
  return new UnavailableStream(unavailable);
}

}  // namespace prewarm
