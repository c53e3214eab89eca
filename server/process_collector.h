#pragma once

#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace prewarm {

// The standard process metrics that Prometheus client libraries export and that prometheus-cpp
// lacks, read from procfs at every scrape:
//   process_cpu_seconds_total       counter  user + system CPU time
//   process_resident_memory_bytes   gauge
//   process_virtual_memory_bytes    gauge
//   process_open_fds                gauge
//   process_max_fds                 gauge    soft RLIMIT_NOFILE
//   process_start_time_seconds      gauge    since the Unix epoch
// A metric whose source cannot be read (no procfs) is left out rather than reported as 0.
// Thread-safe: Collect() keeps no state.
class ProcessCollector final : public prometheus::Collectable {
 public:
  // `proc_root` is where procfs is mounted; tests point it at a fake tree holding `self/stat`,
  // `self/limits`, `self/fd/` and `stat`.
  explicit ProcessCollector(std::string proc_root = "/proc");

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string proc_root_;
};

}  // namespace prewarm
