#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace prewarm {

// Conversions between the API's well-known types and Abseil time, with the range checks the
// protobuf documentation demands (a malformed message is the caller's error, never a crash).
// `field` names the field in INVALID_ARGUMENT messages.
absl::StatusOr<absl::Time> FromProto(const google::protobuf::Timestamp& t, absl::string_view field);
absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         absl::string_view field);
google::protobuf::Timestamp ToProtoTimestamp(absl::Time t);
google::protobuf::Duration ToProtoDuration(absl::Duration d);

}  // namespace prewarm
