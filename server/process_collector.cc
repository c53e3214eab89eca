#include "server/process_collector.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_type.h"

namespace prewarm {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// The fields of /proc/<pid>/stat used here (proc(5)).
struct ProcStat {
  uint64_t utime_ticks = 0;
  uint64_t stime_ticks = 0;
  uint64_t start_ticks_since_boot = 0;
  uint64_t virtual_bytes = 0;
  uint64_t rss_pages = 0;
};

std::optional<ProcStat> ParseProcStat(absl::string_view text) {
  // The command name (field 2) is in parentheses and may itself hold spaces and ')', so the
  // numeric fields start after the last ')'.
  const size_t paren = text.rfind(')');
  if (paren == absl::string_view::npos) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(paren + 1), ' ', absl::SkipWhitespace());
  // fields[0] is field 3 (state); field N of proc(5) is fields[N - 3].
  auto field = [&fields](int n, uint64_t& out) {
    const size_t i = static_cast<size_t>(n - 3);
    return i < fields.size() && absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[i]), &out);
  };
  ProcStat stat;
  if (!field(14, stat.utime_ticks) || !field(15, stat.stime_ticks) ||
      !field(22, stat.start_ticks_since_boot) || !field(23, stat.virtual_bytes) ||
      !field(24, stat.rss_pages)) {
    return std::nullopt;
  }
  return stat;
}

// Boot time in seconds since the epoch: the `btime` line of /proc/stat.
std::optional<uint64_t> ParseBootTime(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      uint64_t btime;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &btime)) return btime;
    }
  }
  return std::nullopt;
}

// The soft limit on "Max open files" from /proc/<pid>/limits; "unlimited" reads as the largest
// value, as the Go client does.
std::optional<double> ParseMaxFds(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, "Max open files")) continue;
    std::vector<absl::string_view> columns = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (columns.empty()) return std::nullopt;
    if (columns[0] == "unlimited") return static_cast<double>(std::numeric_limits<uint64_t>::max());
    uint64_t soft;
    if (absl::SimpleAtoi(columns[0], &soft)) return static_cast<double>(soft);
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<double> CountOpenFds(const std::string& fd_dir) {
  DIR* dir = ::opendir(fd_dir.c_str());
  if (dir == nullptr) return std::nullopt;
  double count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") ++count;
  }
  ::closedir(dir);
  // Includes the descriptor opendir() held, as the Go client's count does.
  return count;
}

prometheus::MetricFamily SingleMetricFamily(std::string name, std::string help,
                                            prometheus::MetricType type, double value) {
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return prometheus::MetricFamily{std::move(name), std::move(help), type, {std::move(metric)}};
}

}  // namespace

ProcessCollector::ProcessCollector(std::string proc_root) : proc_root_(std::move(proc_root)) {}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;

  const std::optional<std::string> stat_text = ReadFile(proc_root_ + "/self/stat");
  const std::optional<ProcStat> stat =
      stat_text ? ParseProcStat(*stat_text) : std::optional<ProcStat>();
  const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page_bytes = static_cast<double>(::sysconf(_SC_PAGESIZE));

  if (stat) {
    families.push_back(SingleMetricFamily(
        "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
        MetricType::Counter,
        static_cast<double>(stat->utime_ticks + stat->stime_ticks) / ticks_per_second));
  }
  if (std::optional<double> fds = CountOpenFds(proc_root_ + "/self/fd")) {
    families.push_back(SingleMetricFamily("process_open_fds", "Number of open file descriptors.",
                                          MetricType::Gauge, *fds));
  }
  if (std::optional<std::string> limits = ReadFile(proc_root_ + "/self/limits")) {
    if (std::optional<double> max_fds = ParseMaxFds(*limits)) {
      families.push_back(SingleMetricFamily("process_max_fds",
                                            "Maximum number of open file descriptors.",
                                            MetricType::Gauge, *max_fds));
    }
  }
  if (stat) {
    families.push_back(SingleMetricFamily("process_virtual_memory_bytes",
                                          "Virtual memory size in bytes.", MetricType::Gauge,
                                          static_cast<double>(stat->virtual_bytes)));
    families.push_back(SingleMetricFamily("process_resident_memory_bytes",
                                          "Resident memory size in bytes.", MetricType::Gauge,
                                          static_cast<double>(stat->rss_pages) * page_bytes));
    const std::optional<std::string> boot_text = ReadFile(proc_root_ + "/stat");
    if (std::optional<uint64_t> boot = boot_text ? ParseBootTime(*boot_text) : std::nullopt) {
      families.push_back(SingleMetricFamily(
          "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          MetricType::Gauge,
          static_cast<double>(*boot) +
              static_cast<double>(stat->start_ticks_since_boot) / ticks_per_second));
    }
  }
  return families;
}

}  // namespace prewarm
