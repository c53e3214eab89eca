#include "bench/policy_sim/report.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace prewarm::sim {
namespace {

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank.
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::string Percent(std::optional<double> share) {
  if (!share.has_value()) return "n/a";
  return absl::StrFormat("%.1f%%", 100 * *share);
}

std::string Number(std::optional<double> v) {
  return v.has_value() ? absl::StrFormat("%.4f", *v) : "";
}

bool IsPrewarm(const Row& row) { return row.result.delay_cost_ratio > 0; }

}  // namespace

std::vector<Row> Summarize(const std::vector<SimResult>& results) {
  absl::flat_hash_map<std::string, const SimResult*> none, eager;
  for (const SimResult& r : results) {
    if (r.policy == "none") none[r.workload] = &r;
    if (r.policy == "eager") eager[r.workload] = &r;
  }
  std::vector<Row> rows;
  for (const SimResult& r : results) {
    Row row;
    row.result = r;
    if (auto it = none.find(r.workload); it != none.end()) {
      row.none_hideable_delay_s = it->second->hideable_delay_s;
      if (it->second->hideable_delay_s > 0) {
        row.hidden_share = 1 - r.hideable_delay_s / it->second->hideable_delay_s;
      }
    }
    if (auto it = eager.find(r.workload); it != eager.end() && it->second->policy_idle_s > 0) {
      row.idle_vs_eager = r.policy_idle_s / it->second->policy_idle_s;
    }
    row.added_latency_p50_s = Quantile(r.added_latency_s, 0.5);
    row.added_latency_p95_s = Quantile(r.added_latency_s, 0.95);
    double sum = 0;
    for (double x : r.added_latency_s) sum += x;
    row.added_latency_mean_s = r.added_latency_s.empty() ? 0 : sum / r.added_latency_s.size();
    const int runs = std::max(1, r.measured_runs);
    row.idle_per_run_s = r.policy_idle_s / runs;
    row.warmups_per_run = static_cast<double>(r.warmups) / runs;
    rows.push_back(std::move(row));
  }
  return rows;
}

TargetCheck CheckTargets(const Row& row, bool has_skips) {
  TargetCheck c;
  c.idle_limit = has_skips ? 0.5 : 0.05;
  c.hidden_ok = row.hidden_share.has_value() && *row.hidden_share >= 0.95;
  c.idle_ok = row.idle_vs_eager.has_value() && *row.idle_vs_eager <= c.idle_limit;
  return c;
}

void WriteCsv(const std::vector<Row>& rows, std::ostream& out) {
  out << "workload,policy,delay_cost_ratio,measured_runs,tasks_run,tasks_skipped,hideable_tasks,"
         "hideable_cold_tasks,hideable_delay_s,none_hideable_delay_s,hidden_share,"
         "unhideable_delay_s,added_latency_p50_s,added_latency_p95_s,added_latency_mean_s,"
         "idle_s,idle_per_run_s,idle_vs_eager,idle_after_warmup_s,idle_warmup_spare_s,"
         "idle_pinned_s,idle_extended_s,platform_idle_s,warmups,warmups_per_run,"
         "containers_started,errors,simulated_hours,cpu_seconds\n";
  for (const Row& row : rows) {
    const SimResult& r = row.result;
    out << absl::StrFormat(
        "%s,%s,%g,%d,%d,%d,%d,%d,%.3f,%.3f,%s,%.3f,%.3f,%.3f,%.3f,%.1f,%.3f,%s,%.1f,%.1f,%.1f,%.1f,"
        "%.1f,%d,%.3f,%d,"
        "%d,%.2f,%.3f\n",
        r.workload, r.policy, r.delay_cost_ratio, r.measured_runs, r.tasks_run, r.tasks_skipped,
        r.hideable_tasks, r.hideable_cold_tasks, r.hideable_delay_s, row.none_hideable_delay_s,
        Number(row.hidden_share), r.unhideable_delay_s, row.added_latency_p50_s,
        row.added_latency_p95_s, row.added_latency_mean_s, r.policy_idle_s, row.idle_per_run_s,
        Number(row.idle_vs_eager), r.idle_after_warmup_s, r.idle_warmup_spare_s, r.idle_pinned_s,
        r.idle_extended_s, r.platform_idle_s, r.warmups, row.warmups_per_run, r.containers_started,
        r.errors, r.simulated_hours, r.cpu_seconds);
  }
}

void WriteMarkdown(const std::vector<Row>& rows, const std::vector<Workload>& workloads,
                   std::ostream& out) {
  // Targets first: prewarm at every ratio, per workload.
  std::vector<double> ratios;
  for (const Row& row : rows) {
    if (IsPrewarm(row) &&
        std::find(ratios.begin(), ratios.end(), row.result.delay_cost_ratio) == ratios.end()) {
      ratios.push_back(row.result.delay_cost_ratio);
    }
  }
  if (!ratios.empty()) {
    out << "### Targets: prewarm, share hidden / idle as a share of eager's\n\n";
    out << "Target: hidden >= 95%; idle <= 5% of eager's (<= 50% on workloads with skipped "
           "tasks). A cell is `hidden / idle`, then `ok` when both are met, else which one is "
           "missed. oracle95 knows the true distributions (see the policies).\n\n";
    out << "| workload | idle limit |";
    for (double r : ratios) out << absl::StrFormat(" a/b=%g |", r);
    out << " oracle95 (reference) |\n|---|---|";
    for (size_t i = 0; i < ratios.size(); ++i) out << "---|";
    out << "---|\n";
    for (const Workload& w : workloads) {
      out << absl::StrFormat("| %s | %s |", w.name, w.has_skips ? "50%" : "5%");
      for (double ratio : ratios) {
        const Row* found = nullptr;
        for (const Row& row : rows) {
          if (row.result.workload == w.name && IsPrewarm(row) &&
              row.result.delay_cost_ratio == ratio) {
            found = &row;
          }
        }
        if (found == nullptr) {
          out << " |";
          continue;
        }
        const TargetCheck c = CheckTargets(*found, w.has_skips);
        out << absl::StrFormat(" %s / %s %s |", Percent(found->hidden_share),
                               Percent(found->idle_vs_eager),
                               c.hidden_ok && c.idle_ok ? "ok"
                               : c.hidden_ok            ? "(idle)"
                               : c.idle_ok              ? "(hidden)"
                                                        : "(both)");
      }
      const Row* oracle = nullptr;
      for (const Row& row : rows) {
        if (row.result.workload == w.name && row.result.policy == "oracle95") oracle = &row;
      }
      if (oracle != nullptr) {
        out << absl::StrFormat(" %s / %s |", Percent(oracle->hidden_share),
                               Percent(oracle->idle_vs_eager));
      } else {
        out << " |";
      }
      out << "\n";
    }
    out << "\n";
  }
  for (const Workload& w : workloads) {
    out << absl::StrFormat("### %s\n\n%s.\n\n", w.name, w.description);
    out << "| policy | hidden | cold hideable tasks | added latency p50 / p95 (s) | idle s/run | "
           "idle vs eager | warm-ups/run |\n";
    out << "|---|---:|---:|---:|---:|---:|---:|\n";
    for (const Row& row : rows) {
      const SimResult& r = row.result;
      if (r.workload != w.name) continue;
      out << absl::StrFormat("| %s | %s | %d / %d | %.2f / %.2f | %.1f | %s | %.1f |\n", r.policy,
                             Percent(row.hidden_share), r.hideable_cold_tasks, r.hideable_tasks,
                             row.added_latency_p50_s, row.added_latency_p95_s, row.idle_per_run_s,
                             Percent(row.idle_vs_eager), row.warmups_per_run);
    }
    out << "\n";
  }
}

}  // namespace prewarm::sim
