// Interrupter: what main's signal thread (and a test) use to stop a running `watch`.
#include "clients/cpp/interrupter.h"

#include "gtest/gtest.h"

namespace prewarm::ctl {
namespace {

TEST(PrewarmctlInterrupterTest, TriggerRunsTheArmedCallbackOnce) {
  Interrupter interrupter;
  EXPECT_FALSE(interrupter.Armed());
  EXPECT_FALSE(interrupter.Trigger());  // Nothing armed: main exits the process instead.
  int stops = 0;
  interrupter.Arm([&stops] { ++stops; });
  EXPECT_TRUE(interrupter.Armed());
  EXPECT_FALSE(interrupter.Triggered());
  EXPECT_TRUE(interrupter.Trigger());
  EXPECT_TRUE(interrupter.Triggered());
  EXPECT_FALSE(interrupter.Trigger());  // A second Ctrl-C exits.
  EXPECT_EQ(stops, 1);
}

TEST(PrewarmctlInterrupterTest, DisarmStopsTheCallbackAndArmStartsAfresh) {
  Interrupter interrupter;
  int stops = 0;
  interrupter.Arm([&stops] { ++stops; });
  interrupter.Disarm();
  EXPECT_FALSE(interrupter.Armed());
  EXPECT_FALSE(interrupter.Trigger());
  EXPECT_EQ(stops, 0);
  interrupter.Arm([&stops] { ++stops; });
  ASSERT_TRUE(interrupter.Trigger());
  interrupter.Arm([&stops] { stops += 10; });
  EXPECT_FALSE(interrupter.Triggered());
  EXPECT_TRUE(interrupter.Trigger());
  EXPECT_EQ(stops, 11);
}

}  // namespace
}  // namespace prewarm::ctl
