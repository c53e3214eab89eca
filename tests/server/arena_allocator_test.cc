#include "server/arena_allocator.h"

#include <string>

#include "gtest/gtest.h"
#include "prewarm/v1/prewarm.pb.h"

namespace prewarm {
namespace {

using Allocator = ArenaMessageAllocator<v1::ReportTimingRequest, v1::ReportTimingResponse>;

TEST(ArenaMessageAllocatorTest, RequestAndResponseShareTheCallsArena) {
  Allocator allocator;
  grpc::MessageHolder<v1::ReportTimingRequest, v1::ReportTimingResponse>* call =
      allocator.AllocateMessages();
  ASSERT_NE(call->request()->GetArena(), nullptr);
  EXPECT_EQ(call->request()->GetArena(), call->response()->GetArena());
  grpc::MessageHolder<v1::ReportTimingRequest, v1::ReportTimingResponse>* other =
      allocator.AllocateMessages();
  EXPECT_NE(other->request()->GetArena(), call->request()->GetArena());  // One arena per call.
  other->Release();
  call->Release();
}

// More than the inline block: the arena grows on the heap and gives it back at Release (the
// sanitizer builds check that nothing leaks or is freed twice).
TEST(ArenaMessageAllocatorTest, MessagesLargerThanTheInlineBlockRoundTrip) {
  v1::ReportTimingRequest sent;
  sent.set_run_id(std::string(2 * Allocator::kInlineBytes, 'r'));
  sent.set_task_id("t");
  sent.set_event(v1::TASK_EVENT_TYPE_FINISHED);
  Allocator allocator;
  grpc::MessageHolder<v1::ReportTimingRequest, v1::ReportTimingResponse>* call =
      allocator.AllocateMessages();
  ASSERT_TRUE(call->request()->ParseFromString(sent.SerializeAsString()));
  EXPECT_EQ(call->request()->run_id(), sent.run_id());
  for (int i = 0; i < 100; ++i) {
    v1::TaskPlan* t = call->response()->add_replanned_tasks();
    t->set_task_id(std::string(100, 't'));
    t->mutable_expected_start_time()->set_seconds(i);
    EXPECT_EQ(t->GetArena(), call->response()->GetArena());
  }
  v1::ReportTimingResponse copy;
  ASSERT_TRUE(copy.ParseFromString(call->response()->SerializeAsString()));
  EXPECT_EQ(copy.replanned_tasks_size(), 100);
  EXPECT_EQ(copy.replanned_tasks(99).expected_start_time().seconds(), 99);
  call->Release();
}

}  // namespace
}  // namespace prewarm
