#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "prewarm/v1/prewarm.pb.h"

namespace prewarm::ctl {

// How prewarmctl turns responses into text: tables for people, the proto3 JSON mapping for
// scripts. Pure functions of their arguments (times are printed in UTC), so tests compare exact
// strings.

// --- Values on the command line -------------------------------------------------------------

// "1.5s", "500ms", "2m", "1h30m" (Abseil duration syntax) or a bare number of seconds ("2.5").
// INVALID_ARGUMENT names `flag`.
absl::StatusOr<absl::Duration> ParseDurationArg(absl::string_view text, absl::string_view flag);
// RFC 3339, for example "2024-05-01T12:00:00Z" or "2024-05-01T14:00:00.250+02:00".
absl::StatusOr<absl::Time> ParseTimeArg(absl::string_view text, absl::string_view flag);
// "true"/"false" (also yes/no, 1/0).
absl::StatusOr<bool> ParseBoolArg(absl::string_view text, absl::string_view flag);

google::protobuf::Timestamp ToProto(absl::Time t);
google::protobuf::Duration ToProto(absl::Duration d);
absl::Time FromProto(const google::protobuf::Timestamp& t);
absl::Duration FromProto(const google::protobuf::Duration& d);

// --- Text pieces -------------------------------------------------------------------------------

// "2023-11-14T22:13:20.000Z".
std::string FormatUtc(absl::Time t);
// Rounded to the millisecond, Abseil syntax: "1.2s", "1m2.5s", "0s".
std::string FormatSpan(absl::Duration d);
// `t - origin` with a sign: "+1.2s", "-300ms", "+0s".
std::string FormatOffset(absl::Time t, absl::Time origin);
// A set duration as FormatDuration, "-" when unset.
std::string FormatDurationField(const google::protobuf::Duration& d, bool set);
// An enum value name without its type prefix, lower case, '-' for '_':
// WARMUP_DECISION_SKIP_TOO_LATE -> "skip-too-late"; "-" for the *_UNSPECIFIED value.
std::string EnumLabel(const google::protobuf::EnumDescriptor* type, int value);

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// --- Responses as text -------------------------------------------------------------------------

// The proto3 JSON of `message` with proto field names, every field (defaults too) and enum
// names; pretty-printed unless `compact` (one line, for streams). Ends with a newline.
std::string ToJson(const google::protobuf::Message& message, bool compact = false);

// One row per service: its fields, "-" for unset durations, CONCURRENCY "unlimited" for 0.
std::string RenderServices(const v1::ListServicesResponse& response);
// One line per service ("Registered service a." / "Replaced service a."), then the services as
// stored, defaults filled in.
std::string RenderRegistered(const std::vector<v1::RegisterServiceResponse>& responses);
// The run's header and one row per task: expected start and warm-up time relative to the run
// start and in UTC (time of day; the date too when it is not the run start's), expected cold
// start, decision, confidence, warm-up state, task state, outcome, actual start and reason.
std::string RenderPlan(const v1::RunPlan& plan);
// Task rows without a run start (ReportTiming answers carry none): absolute UTC times only.
std::string RenderTaskPlans(const google::protobuf::RepeatedPtrField<v1::TaskPlan>& tasks);
std::string RenderReport(const v1::ReportTimingRequest& request,
                         const v1::ReportTimingResponse& response);
std::string RenderStats(const v1::GetServiceStatsResponse& stats);
// One line: "<warm-up time> <service> run=<run> task=<task> start=<expected start> url=<url>
// id=<warm-up id>" (url= only when set).
std::string RenderWatchLine(const v1::WatchWarmupsResponse& instruction);

}  // namespace prewarm::ctl
