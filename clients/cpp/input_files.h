#pragma once

#include <istream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prewarm/v1/prewarm.pb.h"

namespace prewarm::ctl {

// The files prewarmctl reads: services to register and runs to submit. Both are the proto3 JSON
// mapping of the API's messages (field names as in the .proto or lowerCamelCase), written as JSON
// or as YAML (read as yaml_value.h says). Two conveniences over the strict mapping: durations
// may be written "1m30s", "1500ms" or a number of seconds besides "90s", and unknown fields are
// errors (a typo is never silently ignored). Every error is INVALID_ARGUMENT naming the file and
// the entry.

enum class FileFormat {
  // JSON when the text starts with '{' or '[', YAML otherwise.
  kDetect,
  kJson,
  kYaml,
};

// From the name: ".json" -> kJson, ".yaml"/".yml" -> kYaml, otherwise kDetect.
FileFormat FormatFromPath(absl::string_view path);

// The whole file, or all of `stdin` when path is "-". NOT_FOUND / INVALID_ARGUMENT name the path.
absl::StatusOr<std::string> ReadInput(const std::string& path, std::istream& stdin_stream);

// Services: a list of Service objects, {"services": [...]} (what `prewarmctl --output json
// services list` prints, so a listing can be registered again) or one Service object.
// `name` labels errors (the path).
absl::StatusOr<std::vector<v1::Service>> ParseServices(absl::string_view text, FileFormat format,
                                                       absl::string_view name);

// A run: one PrewarmRequest object, for example
//   {"run_id": "run-1", "workflow_id": "etl", "start_time": "2024-05-01T12:00:00Z",
//    "tasks": [{"task_id": "extract", "service": "svc-a"},
//              {"task_id": "load", "service": "svc-b", "upstream_task_ids": ["extract"]}]}
absl::StatusOr<v1::PrewarmRequest> ParseRun(absl::string_view text, FileFormat format,
                                            absl::string_view name);

}  // namespace prewarm::ctl
