#include "server/gated_service.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prewarm {
namespace {

// Ends a WatchWarmups stream at once with `status`.
class RefusedStream final : public grpc::ServerWriteReactor<v1::WatchWarmupsResponse> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

GatedPrewarmService::GatedPrewarmService(Metrics& metrics, std::string bearer_token,
                                         std::string standby_reason)
    : metrics_(metrics),
      bearer_token_(std::move(bearer_token)),
      reason_(std::move(standby_reason)) {
  SetMessageAllocatorFor_ReportTiming(&report_timing_allocator_);
}

absl::Status GatedPrewarmService::Authorize(const grpc::CallbackServerContext& context) const {
  if (bearer_token_.empty()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer <token>' metadata");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  // The scheme is case-insensitive (RFC 7235); the token is compared in constant time, so that
  // answer times do not reveal how much of a guess was right.
  constexpr absl::string_view kScheme = "bearer ";
  const bool scheme_ok = value.size() >= kScheme.size() &&
                         absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme);
  const absl::string_view token = scheme_ok ? value.substr(kScheme.size()) : absl::string_view();
  unsigned char diff = token.size() == bearer_token_.size() ? 0 : 1;
  for (size_t i = 0; i < bearer_token_.size(); ++i) {
    diff |= static_cast<unsigned char>(bearer_token_[i]) ^
            static_cast<unsigned char>(i < token.size() ? token[i] : 0);
  }
  if (!scheme_ok || diff != 0) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
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
  absl::Status refused = Authorize(*context);
  if (refused.ok()) {
    absl::ReaderMutexLock lock(&mu_);
    // Handlers never block: holding the lock across the call only delays a Close().
    if (service_ != nullptr) return (service_->*handler)(context, request, response);
    refused = absl::UnavailableError(reason_);
  }
  metrics_.RpcHandled(method, absl::StatusCodeToString(refused.code()), absl::ZeroDuration());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(refused));
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
  absl::Status refused = Authorize(*context);
  if (refused.ok()) {
    absl::ReaderMutexLock lock(&mu_);
    if (service_ != nullptr) return service_->WatchWarmups(context, request);
    refused = absl::UnavailableError(reason_);
  }
  metrics_.RpcHandled("WatchWarmups", absl::StatusCodeToString(refused.code()),
                      absl::ZeroDuration());
  return new RefusedStream(ToGrpcStatus(refused));
}

}  // namespace prewarm
