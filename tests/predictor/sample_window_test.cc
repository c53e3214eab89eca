#include "predictor/sample_window.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;

TEST(SampleWindowTest, KeepsTheNewestSamplesInOrder) {
  SampleWindow w(3);
  for (double s : {1.0, 2.0, 3.0, 4.0, 5.0}) w.Add(s);
  EXPECT_EQ(w.size(), 3);
  EXPECT_EQ(w.total_added(), 5);
  EXPECT_THAT(w.InOrder(), ElementsAre(3.0f, 4.0f, 5.0f));
}

TEST(SampleWindowTest, ReplayReproducesTheWindow) {
  SampleWindow w(4);
  for (int i = 0; i < 10; ++i) w.Add(i);
  SampleWindow replay(4);
  for (float s : w.InOrder()) replay.Add(s);
  EXPECT_EQ(replay.InOrder(), w.InOrder());
}

TEST(SampleWindowTest, MemoryIsBoundedByCapacity) {
  SampleWindow w(128);
  for (int i = 0; i < 10'000; ++i) w.Add(i);
  EXPECT_LE(w.HeapBytes(), 128 * sizeof(float) * 2);
}

TEST(RunRecordTest, ProbabilityFollowsRecentRuns) {
  RunRecord r;
  EXPECT_DOUBLE_EQ(r.RunProbability(), 1.0);
  for (int i = 0; i < 3; ++i) r.Add(false);
  EXPECT_DOUBLE_EQ(r.RunProbability(), 0.25);  // (0 + 1) / (3 + 1)
  r.Add(true);
  EXPECT_DOUBLE_EQ(r.RunProbability(), 0.4);  // (1 + 1) / (4 + 1)
  // Only the last 64 runs count: 64 skips push out the early run.
  for (int i = 0; i < 64; ++i) r.Add(false);
  EXPECT_EQ(r.count(), 64);
  EXPECT_DOUBLE_EQ(r.RunProbability(), 1.0 / 65);
}

}  // namespace
}  // namespace prewarm
