// Fuzzes Dag::Build with task lists decoded from the input (small id pools, so that duplicates,
// cycles and unknown upstream ids are common), and checks every DAG it accepts: a topological
// order, parents and children that mirror each other, the edge count, Find, and Descendants
// (exactly the tasks reachable through children, in index order). Refusals must be
// INVALID_ARGUMENT or RESOURCE_EXHAUSTED with words.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "predictor/dag.h"

namespace prewarm {
namespace {

#define FUZZ_CHECK(cond, ...)                                         \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "dag_fuzz: check failed: %s: %s\n", #cond, \
                   absl::StrCat(__VA_ARGS__).c_str());                \
      std::abort();                                                   \
    }                                                                 \
  } while (0)

std::string Id(FuzzedDataProvider& in, int pool) {
  switch (in.ConsumeIntegralInRange(0, 15)) {
    case 0:
      return in.ConsumeRandomLengthString(300);
    case 1:
      return std::string(in.ConsumeIntegralInRange(249, 252), 'x');
    default:
      return absl::StrCat("t", in.ConsumeIntegralInRange(0, pool));
  }
}

void Check(const Dag& dag, const std::vector<TaskSpec>& specs) {
  FUZZ_CHECK(dag.size() == static_cast<int>(specs.size()), dag.size(), " tasks of ", specs.size());
  int edges = 0;
  for (int i = 0; i < dag.size(); ++i) {
    FUZZ_CHECK(dag.Find(dag.task(i).task_id) == i, "Find(", dag.task(i).task_id, ")");
    FUZZ_CHECK(dag.parents(i).size() == dag.task(i).upstream_task_ids.size(), "task ", i);
    for (int p : dag.parents(i)) {
      FUZZ_CHECK(p >= 0 && p < i, "parent ", p, " of ", i, " is not earlier");
      const std::vector<int>& c = dag.children(p);
      FUZZ_CHECK(std::count(c.begin(), c.end(), i) == 1, "child ", i, " of ", p);
    }
    for (int c : dag.children(i)) {
      const std::vector<int>& p = dag.parents(c);
      FUZZ_CHECK(std::count(p.begin(), p.end(), i) == 1, "parent ", i, " of ", c);
    }
    edges += static_cast<int>(dag.parents(i).size());
  }
  FUZZ_CHECK(dag.edge_count() == edges, dag.edge_count(), " edges counted, ", edges, " present");
  // Descendants of a few tasks against a plain reachability sweep (index order is topological).
  for (int u = 0; u < std::min(dag.size(), 4); ++u) {
    std::vector<bool> reach(dag.size(), false);
    for (int c : dag.children(u)) reach[c] = true;
    std::vector<int> expected;
    for (int v = u + 1; v < dag.size(); ++v) {
      if (!reach[v]) continue;
      expected.push_back(v);
      for (int c : dag.children(v)) reach[c] = true;
    }
    FUZZ_CHECK(dag.Descendants(u) == expected, "descendants of ", u);
  }
}

}  // namespace
}  // namespace prewarm

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace prewarm;
  FuzzedDataProvider in(data, size);
  DagLimits limits;
  limits.max_tasks = in.ConsumeIntegralInRange(1, 64);
  limits.max_edges = in.ConsumeIntegralInRange(0, 256);
  const int pool = in.ConsumeIntegralInRange(1, 80);
  std::vector<TaskSpec> specs(in.ConsumeIntegralInRange(0, 80));
  for (TaskSpec& t : specs) {
    t.task_id = Id(in, pool);
    if (in.ConsumeBool()) t.service = in.ConsumeBool() ? "svc-a" : in.ConsumeRandomLengthString(80);
    const int parents = in.ConsumeIntegralInRange(0, 4);
    for (int p = 0; p < parents; ++p) t.upstream_task_ids.push_back(Id(in, pool));
  }
  const std::vector<TaskSpec> copy = specs;
  absl::StatusOr<Dag> dag = Dag::Build(std::move(specs), limits);
  if (!dag.ok()) {
    const absl::StatusCode code = dag.status().code();
    FUZZ_CHECK((code == absl::StatusCode::kInvalidArgument ||
                code == absl::StatusCode::kResourceExhausted) &&
                   !dag.status().message().empty(),
               dag.status().ToString());
    return 0;
  }
  FUZZ_CHECK(dag->size() <= limits.max_tasks && dag->edge_count() <= limits.max_edges,
             "limits exceeded");
  Check(*dag, copy);
  return 0;
}
