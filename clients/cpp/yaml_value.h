#pragma once

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace prewarm::ctl {

// Reads a YAML file (yaml-cpp) into the JSON data model, google.protobuf.Value, so that YAML
// files go through the same proto3 JSON mapping as JSON files (input_files.h).
//
// All of YAML 1.2 that yaml-cpp reads: block and flow collections, block scalars (| and >),
// multi-line and quoted scalars, anchors and aliases. Scalars are typed by YAML 1.2's core
// schema:
//   - quoted scalars and block scalars are strings, whatever they look like ("007", 'true');
//   - null, Null, NULL, ~ and empty -> null;
//   - true/True/TRUE, false/False/FALSE -> bool (YAML 1.1's yes/no/on/off stay strings);
//   - integers (12, -3, 0x1F, 0o17) and floats (1.5, -2e3, .5) -> number;
//   - .inf, -.inf and .nan (or a number too large for a double) are refused: JSON numbers are
//     finite, so no protobuf message could carry them. The error names the key; quote the
//     value to mean a string.
//   - anything else is a string.
// The tag !!str makes a plain scalar a string; other tags are refused.
//
// Refused, with INVALID_ARGUMENT "line N: ..." (N counted from 1): what yaml-cpp cannot parse
// (also "column M"), several documents in one file, duplicate keys, keys that are collections or
// null, and documents that exceed YamlLimits. An empty document is null.
//
// Example:
//   services:
//     - name: svc-a               # managed: the server sends GET .../warmup
//       warmup_url: http://127.0.0.1:8080/warmup
//       keep_alive: 90s

// Aliases repeat the node they name without repeating its text, so a few hundred bytes can
// stand for billions of nodes ("billion laughs"). These bounds apply to the result with every
// alias expanded; a 10,000-task DAG is about 100,000 nodes.
inline constexpr size_t kYamlMaxNodes = 1'000'000;
inline constexpr size_t kYamlMaxScalarBytes = size_t{64} << 20;
// Collections within collections; also stops an alias inside its own anchor (&a [*a]).
inline constexpr int kYamlMaxDepth = 64;

struct YamlLimits {
  size_t max_nodes = kYamlMaxNodes;
  size_t max_scalar_bytes = kYamlMaxScalarBytes;
  int max_depth = kYamlMaxDepth;
};

absl::StatusOr<google::protobuf::Value> ParseYaml(absl::string_view text,
                                                  const YamlLimits& limits = {});

}  // namespace prewarm::ctl
