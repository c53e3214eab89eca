#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace prewarm {

// Longest task, run and workflow id accepted (Airflow's id limit).
inline constexpr size_t kMaxIdLength = 250;
// Longest service name accepted.
inline constexpr size_t kMaxServiceNameLength = 128;

// Ids (task, run, workflow) are 1..max_length bytes of valid UTF-8 with no control characters.
// `what` names the field in the error, e.g. "run_id" or "task 'extract' upstream_task_ids[1]".
absl::Status ValidateId(absl::string_view id, absl::string_view what,
                        size_t max_length = kMaxIdLength);

// Service names are 1..kMaxServiceNameLength characters of [A-Za-z0-9._-].
absl::Status ValidateServiceName(absl::string_view name, absl::string_view what);

}  // namespace prewarm
