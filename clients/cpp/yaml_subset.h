#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace prewarm::ctl {

// Parses the subset of YAML that configuration files use, into the JSON data model
// (google.protobuf.Value), so that YAML files go through the same proto3 JSON mapping as JSON
// files. No dependency beyond protobuf.
//
// Supported: block mappings and sequences by indentation (spaces), a sequence as a mapping's
// value at the key's indentation, "- key: value" items, flow collections on one line
// ([a, b], {a: 1}), plain, 'single' and "double" quoted scalars, # comments, a leading "---".
// Plain scalars are typed as YAML 1.2's core schema does: null / ~ / empty -> null, true/false ->
// bool, decimal numbers -> number, anything else -> string (quote ids that look like numbers).
//
// Not supported (INVALID_ARGUMENT naming the line): tabs in indentation, anchors and aliases,
// tags, block scalars (| and >), multi-line plain or quoted scalars and flow collections, several
// documents, complex keys, duplicate keys.
//
// Example:
//   services:
//     - name: svc-a               # managed: the server sends GET .../warmup
//       warmup_url: http://127.0.0.1:8080/warmup
//       keep_alive: 90s
absl::StatusOr<google::protobuf::Value> ParseYamlSubset(absl::string_view text);

}  // namespace prewarm::ctl
