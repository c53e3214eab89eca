#include "predictor/run_model.h"

#include "absl/container/flat_hash_map.h"
#include "predictor/branch_outcomes.h"

namespace prewarm {

RunModel BuildRunModel(const Dag& dag, absl::string_view workflow, const History& history,
                       const ServiceLookup& services) {
  RunModel model;
  model.dispatch_gap = history.DispatchGap(workflow);
  model.tasks.resize(dag.size());
  // Services repeat across tasks: look each up (and snapshot its cold starts) once.
  absl::flat_hash_map<absl::string_view, std::pair<ServiceInfo, Estimate>> seen;
  for (int v = 0; v < dag.size(); ++v) {
    const TaskSpec& spec = dag.task(v);
    TaskModel& task = model.tasks[v];
    task.duration =
        history.TaskDuration(workflow, spec.task_id, spec.service, spec.expected_duration);
    task.run_probability = history.RunProbability(workflow, spec.task_id);
    if (spec.service.empty()) continue;
    auto it = seen.find(spec.service);
    if (it == seen.end()) {
      ServiceInfo info = services(spec.service);
      Estimate cold = history.ColdStart(spec.service, info.cold_start_prior);
      it = seen.emplace(spec.service, std::make_pair(std::move(info), std::move(cold))).first;
    }
    task.service = it->second.first;
    task.cold_start = it->second.second;
  }
  for (int v = 0; v < dag.size(); ++v) {
    std::vector<uint32_t> masks = LearnedChildOutcomes(history, workflow, dag, v);
    if (!masks.empty()) model.child_outcomes.push_back({v, std::move(masks)});
  }
  return model;
}

}  // namespace prewarm
