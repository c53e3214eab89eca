#pragma once

#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "prewarm/v1/prewarm.grpc.pb.h"
#include "server/arena_allocator.h"

namespace prewarm {

// A stand-in for prewarmd that does no work, for the load generator's "echo" modes: its
// ReportTiming answers every request with a summary-sized reply and nothing else (no registry,
// no store). It isolates what the shape of prewarmd's durable acknowledgement costs in gRPC:
// answered at once on gRPC's thread (kInline, the same messages as a real ReportTiming but no
// work), or handed to a thread of its own that answers everything queued since it last woke, as
// prewarmd's store writer answers a batch after its commit (kHandedOff, still no commit).
// Registers its own arena allocator for ReportTiming, as prewarmd does. Other methods are
// gRPC's default (UNIMPLEMENTED). Thread-safe.
class EchoService final : public v1::PrewarmService::CallbackService {
 public:
  enum class Answer { kInline, kHandedOff };

  explicit EchoService(Answer answer);
  // Answers what is still queued, then stops the answering thread. Destroy it only after the
  // gRPC server's Shutdown() has returned: Shutdown() waits for the calls this thread answers.
  ~EchoService() override;

  grpc::ServerUnaryReactor* ReportTiming(grpc::CallbackServerContext* context,
                                         const v1::ReportTimingRequest* request,
                                         v1::ReportTimingResponse* response) override;

 private:
  void AnswerLoop();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queued_.empty() || stopping_;
  }

  const Answer answer_;
  ArenaMessageAllocator<v1::ReportTimingRequest, v1::ReportTimingResponse> allocator_;
  absl::Mutex mu_;
  std::vector<grpc::ServerUnaryReactor*> queued_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread answerer_;  // Only with kHandedOff.
};

}  // namespace prewarm
