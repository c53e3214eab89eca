#include "clients/cpp/render.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace prewarm::ctl {

// --- Values on the command line -------------------------------------------------------------

absl::StatusOr<absl::Duration> ParseDurationArg(absl::string_view text, absl::string_view flag) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  absl::Duration d;
  double seconds = 0;
  if (absl::SimpleAtod(trimmed, &seconds) && std::isfinite(seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(trimmed, &d) || d == absl::InfiniteDuration() ||
             d == -absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not a duration (examples: 1.5s, 500ms, 2m, 1h30m)"));
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is negative"));
  }
  return d;
}

absl::StatusOr<absl::Time> ParseTimeArg(absl::string_view text, absl::string_view flag) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, absl::StripAsciiWhitespace(text), &t, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text,
                     "' is not an RFC 3339 time (example: 2024-05-01T12:00:00Z or "
                     "2024-05-01T14:00:00.250+02:00)"));
  }
  return t;
}

absl::StatusOr<bool> ParseBoolArg(absl::string_view text, absl::string_view flag) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower == "true" || lower == "yes" || lower == "1") return true;
  if (lower == "false" || lower == "no" || lower == "0") return false;
  return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is not true or false"));
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  const absl::Duration since_epoch = t - absl::UnixEpoch();
  absl::Duration rem;
  const int64_t seconds = absl::IDivDuration(since_epoch, absl::Seconds(1), &rem);
  int64_t nanos = absl::ToInt64Nanoseconds(rem);
  google::protobuf::Timestamp p;
  if (nanos < 0) {  // Timestamp nanos are always in [0, 1e9).
    p.set_seconds(seconds - 1);
    p.set_nanos(static_cast<int32_t>(nanos + 1'000'000'000));
  } else {
    p.set_seconds(seconds);
    p.set_nanos(static_cast<int32_t>(nanos));
  }
  return p;
}

google::protobuf::Duration ToProto(absl::Duration d) {
  absl::Duration rem;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &rem);
  google::protobuf::Duration p;
  p.set_seconds(seconds);
  p.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(rem)));  // Same sign as seconds.
  return p;
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// --- Text pieces -------------------------------------------------------------------------------

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

std::string FormatSpan(absl::Duration d) {
  if (d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
    return absl::FormatDuration(d);
  }
  const double ms = std::round(absl::ToDoubleMilliseconds(d));
  if (ms == 0) return "0s";  // Abseil writes "0".
  return absl::FormatDuration(absl::Milliseconds(static_cast<int64_t>(ms)));
}

std::string FormatOffset(absl::Time t, absl::Time origin) {
  const std::string d = FormatSpan(t - origin);
  return absl::StartsWith(d, "-") ? d : absl::StrCat("+", d);
}

std::string FormatDurationField(const google::protobuf::Duration& d, bool set) {
  return set ? FormatSpan(FromProto(d)) : "-";
}

std::string EnumLabel(const google::protobuf::EnumDescriptor* type, int value) {
  if (value == 0) return "-";
  const google::protobuf::EnumValueDescriptor* v = type->FindValueByNumber(value);
  if (v == nullptr) return absl::StrCat(value);
  absl::string_view name = v->name();
  if (const google::protobuf::EnumValueDescriptor* zero = type->FindValueByNumber(0)) {
    absl::string_view prefix = zero->name();
    absl::ConsumeSuffix(&prefix, "UNSPECIFIED");
    absl::ConsumePrefix(&name, prefix);
  }
  return absl::StrReplaceAll(absl::AsciiStrToLower(name), {{"_", "-"}});
}

std::string TextTable::Render() const {
  size_t columns = header_.size();
  for (const auto& row : rows_) columns = std::max(columns, row.size());
  std::vector<size_t> widths(columns, 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < columns; ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      if (i + 1 == columns) {
        line += cell;
      } else {
        absl::StrAppend(&line, cell, std::string(widths[i] - cell.size() + 2, ' '));
      }
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  };
  emit(header_);
  for (const auto& row : rows_) emit(row);
  return out;
}

// --- Responses as text -------------------------------------------------------------------------

std::string ToJson(const google::protobuf::Message& message, bool compact) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = !compact;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  // Printing a valid message cannot fail (no Any fields here); keep whatever was produced.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  if (json.empty() || json.back() != '\n') json.push_back('\n');
  return json;
}

namespace {

std::string Mode(v1::WarmupMode mode) {
  // UNSPECIFIED is treated as managed by the server.
  return mode == v1::WARMUP_MODE_DELEGATED ? "delegated" : "managed";
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

// Service.container_concurrency: 0 is the proto's "no limit".
std::string Concurrency(int32_t n) { return n == 0 ? "unlimited" : absl::StrCat(n); }

// Time of day when `t` falls on the same UTC date as `origin`; the date too otherwise.
std::string FormatTimeNear(absl::Time t, absl::Time origin) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const bool same_day =
      absl::FormatTime("%Y-%m-%d", t, utc) == absl::FormatTime("%Y-%m-%d", origin, utc);
  return absl::FormatTime(same_day ? "%H:%M:%E3S" : "%Y-%m-%d %H:%M:%E3S", t, utc);
}

std::vector<std::string> ServiceRow(const v1::Service& s) {
  return {s.name(),
          Mode(s.mode()),
          OrDash(s.warmup_url()),
          OrDash(s.warmup_method()),
          FormatDurationField(s.warmup_timeout(), s.has_warmup_timeout()),
          FormatDurationField(s.keep_alive(), s.has_keep_alive()),
          FormatDurationField(s.cold_start_prior(), s.has_cold_start_prior()),
          FormatDurationField(s.warm_latency(), s.has_warm_latency()),
          Concurrency(s.container_concurrency())};
}

// CONCURRENCY comes last so that the earlier columns keep their places.
TextTable ServiceTable() {
  return TextTable({"NAME", "MODE", "WARM-UP URL", "METHOD", "TIMEOUT", "KEEP-ALIVE",
                    "COLD-START PRIOR", "WARM LATENCY", "CONCURRENCY"});
}

// Plan rows; relative columns only when `origin` is known.
std::string RenderTaskRows(const google::protobuf::RepeatedPtrField<v1::TaskPlan>& tasks,
                           std::optional<absl::Time> origin) {
  std::vector<std::string> header = {"TASK", "SERVICE"};
  if (origin.has_value()) {
    header.insert(header.end(), {"START", "START UTC", "WARM-UP", "WARM-UP UTC"});
  } else {
    header.insert(header.end(), {"START UTC", "WARM-UP UTC"});
  }
  header.insert(header.end(), {"COLD START", "DECISION", "CONFIDENCE", "WARM-UP STATE",
                               "TASK STATE", "OUTCOME", "STARTED", "REASON"});
  TextTable table(std::move(header));
  for (const v1::TaskPlan& t : tasks) {
    std::vector<std::string> row = {t.task_id(), OrDash(t.service())};
    auto add_time = [&](bool set, const google::protobuf::Timestamp& ts) {
      if (origin.has_value()) {
        row.push_back(set ? FormatOffset(FromProto(ts), *origin) : "-");
        row.push_back(set ? FormatTimeNear(FromProto(ts), *origin) : "-");
      } else {
        row.push_back(set ? FormatUtc(FromProto(ts)) : "-");
      }
    };
    add_time(t.has_expected_start_time(), t.expected_start_time());
    add_time(t.has_warmup_time(), t.warmup_time());
    row.push_back(FormatDurationField(t.expected_cold_start(), t.has_expected_cold_start()));
    row.push_back(EnumLabel(v1::WarmupDecision_descriptor(), t.decision()));
    row.push_back(EnumLabel(v1::Confidence_descriptor(), t.confidence()));
    row.push_back(EnumLabel(v1::WarmupState_descriptor(), t.warmup_state()));
    row.push_back(EnumLabel(v1::TaskState_descriptor(), t.task_state()));
    row.push_back(EnumLabel(v1::TaskOutcome_descriptor(), t.outcome()));
    if (!t.has_actual_start_time()) {
      row.push_back("-");
    } else if (origin.has_value()) {
      row.push_back(FormatOffset(FromProto(t.actual_start_time()), *origin));
    } else {
      row.push_back(FormatUtc(FromProto(t.actual_start_time())));
    }
    row.push_back(OrDash(t.reason()));
    table.AddRow(std::move(row));
  }
  return table.Render();
}

std::string Plural(int64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

}  // namespace

std::string RenderServices(const v1::ListServicesResponse& response) {
  if (response.services().empty()) {
    return "No services registered. Add one with: prewarmctl services register --help\n";
  }
  TextTable table = ServiceTable();
  for (const v1::Service& s : response.services()) table.AddRow(ServiceRow(s));
  return table.Render();
}

std::string RenderRegistered(const std::vector<v1::RegisterServiceResponse>& responses) {
  std::string out;
  TextTable table = ServiceTable();
  for (const v1::RegisterServiceResponse& r : responses) {
    absl::StrAppend(&out, r.replaced() ? "Replaced" : "Registered", " service ", r.service().name(),
                    ".\n");
    table.AddRow(ServiceRow(r.service()));
  }
  return absl::StrCat(out, table.Render());
}

std::string RenderPlan(const v1::RunPlan& plan) {
  const absl::Time start = FromProto(plan.start_time());
  int64_t warmups = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t late = 0;
  std::map<std::string, int64_t> warmup_states;
  for (const v1::TaskPlan& t : plan.tasks()) {
    if (t.warmup_state() != v1::WARMUP_STATE_NONE &&
        t.warmup_state() != v1::WARMUP_STATE_UNSPECIFIED) {
      ++warmups;
      ++warmup_states[EnumLabel(v1::WarmupState_descriptor(), t.warmup_state())];
    }
    hits += t.outcome() == v1::TASK_OUTCOME_HIT;
    misses += t.outcome() == v1::TASK_OUTCOME_MISS;
    late += t.outcome() == v1::TASK_OUTCOME_LATE;
  }
  std::string states;
  for (const auto& [state, n] : warmup_states) {
    absl::StrAppend(&states, states.empty() ? " (" : ", ", n, " ", state);
  }
  if (!states.empty()) states += ")";

  TextTable header({"Run:", plan.run_id()});
  header.AddRow({"Workflow:", OrDash(plan.workflow_id())});
  header.AddRow({"Start:", FormatUtc(start)});
  header.AddRow({"Planned:", plan.has_plan_time()
                                 ? absl::StrCat(FormatUtc(FromProto(plan.plan_time())), " (",
                                                FormatOffset(FromProto(plan.plan_time()), start),
                                                " from the start), re-planned ",
                                                Plural(plan.replan_count(), "time", "times"))
                                 : "-"});
  header.AddRow(
      {"Tasks:", absl::StrCat(plan.tasks_size(), "; ", Plural(warmups, "warm-up", "warm-ups"),
                              states, "; ", hits, " hit, ", misses, " miss, ", late, " late")});
  return absl::StrCat(header.Render(), "Times: relative to the run start, and UTC.\n\n",
                      RenderTaskRows(plan.tasks(), start));
}

std::string RenderTaskPlans(const google::protobuf::RepeatedPtrField<v1::TaskPlan>& tasks) {
  return RenderTaskRows(tasks, std::nullopt);
}

std::string RenderReport(const v1::ReportTimingRequest& request,
                         const v1::ReportTimingResponse& response) {
  std::string out =
      absl::StrCat("Reported ", EnumLabel(v1::TaskEventType_descriptor(), request.event()),
                   " for task ", request.task_id(), " of run ", request.run_id(), ".\n");
  if (response.replanned_tasks().empty()) {
    absl::StrAppend(&out, "Nothing re-planned (the run was re-planned ",
                    Plural(response.replan_count(), "time", "times"), " so far).\n");
  } else {
    absl::StrAppend(&out, "Re-planned ", Plural(response.replanned_tasks_size(), "task", "tasks"),
                    " (the run was re-planned ", Plural(response.replan_count(), "time", "times"),
                    " so far):\n", RenderTaskPlans(response.replanned_tasks()));
  }
  if (response.run_finished()) {
    absl::StrAppend(&out, "The run is complete: every task finished, failed or was skipped.\n");
  }
  return out;
}

std::string RenderStats(const v1::GetServiceStatsResponse& stats) {
  const int64_t starts = stats.hit_count() + stats.miss_count() + stats.late_count();
  TextTable header({"Service:", stats.service()});
  header.AddRow({"Warm until:", stats.has_warm_until() ? FormatUtc(FromProto(stats.warm_until()))
                                                       : "- (expected cold)"});
  header.AddRow(
      {"Task starts:",
       absl::StrCat(
           stats.hit_count(), " hit, ", stats.miss_count(), " miss, ", stats.late_count(), " late",
           starts > 0 ? absl::StrFormat(" (hit rate %.0f%%)", 100.0 * stats.hit_count() / starts)
                      : "")});
  header.AddRow({"Warm-ups:", absl::StrCat(stats.warmups_fired(), " fired, ",
                                           stats.warmups_failed(), " failed")});
  TextTable table({"", "SAMPLES", "MEAN", "P50", "P90", "P99"});
  auto add = [&](absl::string_view label, const v1::DistributionSummary& d) {
    const bool any = d.sample_count() > 0;
    table.AddRow({std::string(label), absl::StrCat(d.sample_count()),
                  FormatDurationField(d.mean(), any), FormatDurationField(d.p50(), any),
                  FormatDurationField(d.p90(), any), FormatDurationField(d.p99(), any)});
  };
  add("task duration", stats.duration());
  add("cold start", stats.cold_start());
  add("warm latency", stats.warm_latency());
  return absl::StrCat(header.Render(), "\n", table.Render());
}

std::string RenderWatchLine(const v1::WatchWarmupsResponse& w) {
  std::string line =
      absl::StrCat(FormatUtc(FromProto(w.warmup_time())), " ", w.service(), " run=", w.run_id(),
                   " task=", w.task_id(), " start=", FormatUtc(FromProto(w.expected_start_time())));
  if (!w.warmup_url().empty()) absl::StrAppend(&line, " url=", w.warmup_url());
  absl::StrAppend(&line, " id=", w.warmup_id(), "\n");
  return line;
}

}  // namespace prewarm::ctl
