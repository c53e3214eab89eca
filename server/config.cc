#include "server/config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "server/proto_time.h"
#include "server/url_allowlist.h"

namespace prewarm {
namespace {

absl::Status ReadFile(absl::string_view path, std::string* out) {
  std::ifstream in{std::string(path), std::ios::binary};
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return absl::OkStatus();
}

absl::Status PositiveDuration(const google::protobuf::Duration& d, absl::string_view field,
                              absl::Duration* out) {
  absl::StatusOr<absl::Duration> v = FromProto(d, field);
  if (!v.ok()) return v.status();
  if (*v <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be positive"));
  }
  *out = *v;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<config::v1::ServerConfig> ReadConfigFile(absl::string_view path) {
  std::string text;
  if (absl::Status s = ReadFile(path, &text); !s.ok()) return s;
  config::v1::ServerConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;  // A typo must not be silently ignored.
  const auto status = google::protobuf::util::JsonStringToMessage(text, &config, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file '", path, "': ", std::string(status.message())));
  }
  return config;
}

absl::Status ApplyConfig(const config::v1::ServerConfig& c, ServerOptions& o) {
  if (!c.grpc_address().empty()) o.grpc_address = c.grpc_address();
  if (!c.metrics_address().empty()) o.metrics_address = c.metrics_address();
  if (!c.store_path().empty()) o.store_path = c.store_path();
  o.services.assign(c.services().begin(), c.services().end());
  if (!c.allowlist().empty()) {
    // Checked here too (the server builds it again at start), so that a bad rule is reported as
    // a configuration error.
    std::vector<std::string> rules(c.allowlist().begin(), c.allowlist().end());
    if (absl::StatusOr<UrlAllowlist> allowlist = UrlAllowlist::Create(rules); !allowlist.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("allowlist: ", allowlist.status().message()));
    }
    o.allowlist = std::move(rules);
  }
  if (!c.store_sync().empty()) {
    const std::string sync = absl::AsciiStrToLower(c.store_sync());
    if (sync != "normal" && sync != "full") {
      return absl::InvalidArgumentError(
          absl::StrCat("store_sync '", c.store_sync(), "' must be 'normal' or 'full'"));
    }
    o.store_sync_full = sync == "full";
  }
  if (c.store_accept_empty()) o.store_accept_empty = true;
  const config::v1::Leadership& leadership = c.leadership();
  if (!leadership.replica_id().empty()) o.replica_id = leadership.replica_id();
  if (leadership.has_poll()) {
    if (absl::Status s = PositiveDuration(leadership.poll(), "leadership.poll", &o.leader_poll);
        !s.ok()) {
      return s;
    }
  }
  if (leadership.has_lease()) {
    if (absl::Status s = PositiveDuration(leadership.lease(), "leadership.lease", &o.leader_lease);
        !s.ok()) {
      return s;
    }
  }
  if (o.leader_lease <= o.leader_poll) {
    return absl::InvalidArgumentError(absl::StrCat(
        "leadership.lease (", absl::FormatDuration(o.leader_lease),
        ") must be more than leadership.poll (", absl::FormatDuration(o.leader_poll), ")"));
  }
  if (!c.log_level().empty()) {
    absl::StatusOr<LogLevel> level = ParseLogLevel(c.log_level());
    if (!level.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("log_level: ", level.status().message()));
    }
    o.log_level = *level;
  }

  const config::v1::Limits& l = c.limits();
  auto limit = [](int32_t value, absl::string_view field, int* out) {
    if (value < 0) return absl::InvalidArgumentError(absl::StrCat(field, " must be >= 0"));
    if (value > 0) *out = value;
    return absl::OkStatus();
  };
  for (absl::Status s :
       {limit(l.max_active_runs(), "limits.max_active_runs", &o.registry.max_active_runs),
        limit(l.max_tasks_per_dag(), "limits.max_tasks_per_dag", &o.registry.dag.max_tasks),
        limit(l.max_edges_per_dag(), "limits.max_edges_per_dag", &o.registry.dag.max_edges),
        limit(l.max_services(), "limits.max_services", &o.service_defaults.max_services),
        limit(l.max_message_bytes(), "limits.max_message_bytes", &o.max_message_bytes),
        limit(l.max_unregistered_service_counters(), "limits.max_unregistered_service_counters",
              &o.registry.max_unregistered_service_counters),
        limit(l.max_events_per_run(), "limits.max_events_per_run",
              &o.registry.max_events_per_run)}) {
    if (!s.ok()) return s;
  }
  if (l.max_history_keys() != 0) {
    // Fewer keys than a few runs' worth would evict what the next plan needs.
    if (l.max_history_keys() < 100) {
      return absl::InvalidArgumentError(absl::StrCat(
          "limits.max_history_keys must be at least 100 (or 0 for the default 100000), got ",
          l.max_history_keys()));
    }
    o.registry.history.max_keys = l.max_history_keys();
  }

  const config::v1::Planning& p = c.planning();
  if (p.delay_cost_ratio() != 0) {
    if (!(p.delay_cost_ratio() > 0) || p.delay_cost_ratio() > 1e6) {
      return absl::InvalidArgumentError("planning.delay_cost_ratio must be in (0, 1e6]");
    }
    o.registry.planner.delay_cost_ratio = p.delay_cost_ratio();
  }
  if (p.has_planning_horizon()) {
    absl::StatusOr<absl::Duration> horizon =
        FromProto(p.planning_horizon(), "planning.planning_horizon");
    if (!horizon.ok()) return horizon.status();
    if (*horizon < absl::Seconds(1) || *horizon > absl::Hours(24)) {
      return absl::InvalidArgumentError("planning.planning_horizon must be in [1s, 24h]");
    }
    o.registry.planner.planning_horizon = *horizon;
  }
  o.registry.planner.lazy_planning = !p.eager_planning();
  if (p.sample_count() < 0 || p.sample_count() > PlannerOptions::kMaxSampleCount) {
    return absl::InvalidArgumentError(absl::StrCat("planning.sample_count must be in [1, ",
                                                   PlannerOptions::kMaxSampleCount, "]"));
  }
  if (p.sample_count() > 0) o.registry.planner.sample_count = p.sample_count();
  if (p.window_size() < 0 || p.window_size() > 100'000) {
    return absl::InvalidArgumentError("planning.window_size must be in [1, 100000]");
  }
  if (p.window_size() > 0) o.registry.history.window_size = p.window_size();
  if (p.max_warmup_refreshes() < -1 || p.max_warmup_refreshes() > 100'000) {
    return absl::InvalidArgumentError(
        "planning.max_warmup_refreshes must be in [1, 100000], or -1 for no refreshes");
  }
  if (p.max_warmup_refreshes() != 0) {
    o.registry.max_warmup_refreshes = std::max(0, p.max_warmup_refreshes());
  }
  if (p.ignore_trends()) o.registry.history.follow_trends = false;
  if (p.duration_hint_spread() != 0) {
    // Beyond 3 the log-normal spans more than e^±3.8 at the 10th/90th percentile: no longer a hint.
    if (!(p.duration_hint_spread() > 0) || p.duration_hint_spread() > 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("planning.duration_hint_spread must be in (0, 3] (0 for the default 0.25), "
                       "got ",
                       p.duration_hint_spread()));
    }
    o.registry.history.duration_hint_spread = p.duration_hint_spread();
  }
  if (p.has_default_keep_alive()) {
    if (absl::Status s = PositiveDuration(p.default_keep_alive(), "planning.default_keep_alive",
                                          &o.service_defaults.keep_alive);
        !s.ok()) {
      return s;
    }
  }
  if (p.has_cold_start_prior()) {
    if (absl::Status s = PositiveDuration(p.cold_start_prior(), "planning.cold_start_prior",
                                          &o.registry.history.cold_start_prior);
        !s.ok()) {
      return s;
    }
  }
  if (p.has_duration_prior()) {
    if (absl::Status s = PositiveDuration(p.duration_prior(), "planning.duration_prior",
                                          &o.registry.history.duration_prior);
        !s.ok()) {
      return s;
    }
  }

  if (c.has_tls()) {
    o.tls_cert_file = c.tls().cert_file();
    o.tls_key_file = c.tls().key_file();
    o.tls_client_ca_file = c.tls().client_ca_file();
  }
  if (!c.bearer_token_file().empty()) {
    std::string token;
    if (absl::Status s = ReadFile(c.bearer_token_file(), &token); !s.ok()) return s;
    o.bearer_token = std::string(absl::StripAsciiWhitespace(token));
    if (o.bearer_token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bearer_token_file '", c.bearer_token_file(), "' is empty"));
    }
  }
  return absl::OkStatus();
}

}  // namespace prewarm
