#include "server/proto_time.h"

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

using ::testing::HasSubstr;

google::protobuf::Timestamp Ts(int64_t seconds, int32_t nanos) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  t.set_nanos(nanos);
  return t;
}

google::protobuf::Duration Dur(int64_t seconds, int32_t nanos) {
  google::protobuf::Duration d;
  d.set_seconds(seconds);
  d.set_nanos(nanos);
  return d;
}

TEST(ProtoTimeTest, TimestampsRoundTrip) {
  for (absl::Time t : {absl::UnixEpoch(), absl::FromUnixNanos(1'700'000'000'123'456'789),
                       absl::FromUnixNanos(-1),  // Before the epoch: nanos stay positive.
                       absl::FromUnixSeconds(-62'135'596'800),
                       absl::FromUnixSeconds(253'402'300'799) + absl::Nanoseconds(999'999'999)}) {
    SCOPED_TRACE(absl::FormatTime(t));
    const google::protobuf::Timestamp p = ToProtoTimestamp(t);
    EXPECT_GE(p.nanos(), 0);
    EXPECT_LT(p.nanos(), 1'000'000'000);
    absl::StatusOr<absl::Time> back = FromProto(p, "t");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, t);
  }
  const google::protobuf::Timestamp before = ToProtoTimestamp(absl::FromUnixNanos(-1));
  EXPECT_EQ(before.seconds(), -1);
  EXPECT_EQ(before.nanos(), 999'999'999);
}

TEST(ProtoTimeTest, DurationsRoundTrip) {
  for (absl::Duration d : {absl::ZeroDuration(), absl::Nanoseconds(1), absl::Milliseconds(1500),
                           -absl::Milliseconds(1500), absl::Hours(24 * 365)}) {
    SCOPED_TRACE(absl::FormatDuration(d));
    const google::protobuf::Duration p = ToProtoDuration(d);
    EXPECT_TRUE(p.seconds() == 0 || (p.seconds() > 0) == (d > absl::ZeroDuration()));
    EXPECT_TRUE(p.nanos() == 0 || (p.nanos() > 0) == (d > absl::ZeroDuration()));
    absl::StatusOr<absl::Duration> back = FromProto(p, "d");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, d);
  }
  const google::protobuf::Duration minus = ToProtoDuration(-absl::Milliseconds(1500));
  EXPECT_EQ(minus.seconds(), -1);
  EXPECT_EQ(minus.nanos(), -500'000'000);
}

TEST(ProtoTimeTest, MalformedTimestampsNameTheField) {
  for (const google::protobuf::Timestamp& t :
       {Ts(0, -1), Ts(0, 1'000'000'000), Ts(-62'135'596'801, 0), Ts(253'402'300'800, 0),
        Ts(std::numeric_limits<int64_t>::max(), 0), Ts(std::numeric_limits<int64_t>::min(), 0)}) {
    SCOPED_TRACE(t.DebugString());
    absl::StatusOr<absl::Time> r = FromProto(t, "event_time");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("event_time"));
  }
}

TEST(ProtoTimeTest, MalformedDurationsNameTheField) {
  for (const google::protobuf::Duration& d :
       {Dur(1, -1), Dur(-1, 1), Dur(0, 1'000'000'000), Dur(0, -1'000'000'000),
        Dur(315'576'000'001, 0), Dur(-315'576'000'001, 0),
        Dur(std::numeric_limits<int64_t>::min(), 0)}) {
    SCOPED_TRACE(d.DebugString());
    absl::StatusOr<absl::Duration> r = FromProto(d, "cold_start");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("cold_start"));
  }
  // Sub-second negative durations carry their sign in nanos alone.
  EXPECT_EQ(FromProto(Dur(0, -5), "d").value(), -absl::Nanoseconds(5));
}

}  // namespace
}  // namespace prewarm
