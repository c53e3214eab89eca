#include "bench/echo_service.h"

#include <utility>

namespace prewarm {
namespace {

// Deletes itself when gRPC is done with the call, as prewarmd's reactors do.
class EchoReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnDone() override { delete this; }
};

}  // namespace

EchoService::EchoService(Answer answer) : answer_(answer) {
  SetMessageAllocatorFor_ReportTiming(&allocator_);
  if (answer_ == Answer::kHandedOff) answerer_ = std::thread([this] { AnswerLoop(); });
}

EchoService::~EchoService() {
  if (!answerer_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  answerer_.join();
}

grpc::ServerUnaryReactor* EchoService::ReportTiming(grpc::CallbackServerContext*,
                                                    const v1::ReportTimingRequest* request,
                                                    v1::ReportTimingResponse* response) {
  // What a summary answer to an event that re-planned the task and a few descendants carries.
  response->set_replan_count(2 * request->task_id().size());
  response->set_replanned_task_count(5);
  grpc::ServerUnaryReactor* reactor = new EchoReactor();
  if (answer_ == Answer::kInline) {
    reactor->Finish(grpc::Status::OK);
  } else {
    absl::MutexLock lock(&mu_);
    queued_.push_back(reactor);
  }
  return reactor;
}

void EchoService::AnswerLoop() {
  std::vector<grpc::ServerUnaryReactor*> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &EchoService::HasWorkOrStopping));
      if (queued_.empty()) return;  // Stopping, and every call is answered.
      batch.swap(queued_);
    }
    for (grpc::ServerUnaryReactor* reactor : batch) reactor->Finish(grpc::Status::OK);
    batch.clear();
  }
}

}  // namespace prewarm
