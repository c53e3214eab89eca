#include "server/proto_time.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace prewarm {
namespace {

// Timestamp range of the protobuf spec: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
constexpr int64_t kMinSeconds = -62'135'596'800;
constexpr int64_t kMaxSeconds = 253'402'300'799;
// Duration range of the spec: +-10,000 years.
constexpr int64_t kMaxDurationSeconds = 315'576'000'000;

}  // namespace

absl::StatusOr<absl::Time> FromProto(const google::protobuf::Timestamp& t,
                                     absl::string_view field) {
  if (t.seconds() < kMinSeconds || t.seconds() > kMaxSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " seconds ", t.seconds(), " is out of the Timestamp range"));
  }
  if (t.nanos() < 0 || t.nanos() >= 1'000'000'000) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " nanos ", t.nanos(), " must be in [0, 999999999]"));
  }
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         absl::string_view field) {
  if (d.seconds() < -kMaxDurationSeconds || d.seconds() > kMaxDurationSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " seconds ", d.seconds(), " is out of the Duration range"));
  }
  if (d.nanos() <= -1'000'000'000 || d.nanos() >= 1'000'000'000 ||
      (d.seconds() > 0 && d.nanos() < 0) || (d.seconds() < 0 && d.nanos() > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " nanos ", d.nanos(), " is invalid for seconds ", d.seconds()));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t) {
  google::protobuf::Timestamp out;
  const int64_t seconds = absl::ToUnixSeconds(t);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  return out;
}

google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::IDivDuration(d, absl::Nanoseconds(1), &d)));
  return out;
}

}  // namespace prewarm
