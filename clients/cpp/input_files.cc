#include "clients/cpp/input_files.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "clients/cpp/yaml_value.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace prewarm::ctl {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Value;

absl::Status Invalid(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
  if (const FieldDescriptor* f = d->FindFieldByName(key)) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

// "90s" as the proto3 JSON mapping writes durations: seconds with up to 9 decimals.
std::string ProtoJsonDuration(absl::Duration d) {
  absl::Duration rem;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &rem);
  const int64_t nanos = absl::ToInt64Nanoseconds(rem);
  if (nanos == 0) return absl::StrCat(seconds, "s");
  return absl::StrFormat("%d.%09ds", seconds, nanos);
}

// Rewrites friendly durations ("1m30s", "1500ms", 90) under message type `d` into the mapping's
// "90s" form. Leaves anything it does not understand for the JSON parser to report.
void NormalizeDurations(Value& v, const Descriptor* d) {
  if (!v.has_struct_value()) return;
  for (auto& [key, field_value] : *v.mutable_struct_value()->mutable_fields()) {
    const FieldDescriptor* f = FindField(d, key);
    if (f == nullptr || f->type() != FieldDescriptor::TYPE_MESSAGE) continue;
    const Descriptor* type = f->message_type();
    auto normalize_one = [&](Value& item) {
      if (type->full_name() != google::protobuf::Duration::descriptor()->full_name()) {
        NormalizeDurations(item, type);
        return;
      }
      absl::Duration parsed;
      if (item.has_number_value() && std::isfinite(item.number_value())) {
        item.set_string_value(ProtoJsonDuration(absl::Seconds(item.number_value())));
      } else if (item.has_string_value() &&
                 absl::ParseDuration(absl::StripAsciiWhitespace(item.string_value()), &parsed) &&
                 parsed != absl::InfiniteDuration() && parsed != -absl::InfiniteDuration()) {
        item.set_string_value(ProtoJsonDuration(parsed));
      }
    };
    if (f->is_repeated() && field_value.has_list_value()) {
      for (Value& item : *field_value.mutable_list_value()->mutable_values()) normalize_one(item);
    } else {
      normalize_one(field_value);
    }
  }
}

absl::StatusOr<Value> ParseTree(absl::string_view text, FileFormat format, absl::string_view name) {
  if (format == FileFormat::kDetect) {
    const absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(text);
    format = absl::StartsWith(trimmed, "{") || absl::StartsWith(trimmed, "[") ? FileFormat::kJson
                                                                              : FileFormat::kYaml;
  }
  if (format == FileFormat::kYaml) {
    absl::StatusOr<Value> v = ParseYaml(text);
    if (!v.ok()) return Invalid(name, absl::StrCat("YAML: ", v.status().message()));
    return v;
  }
  Value v;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), &v);
  if (!status.ok()) {
    return Invalid(name, absl::StrCat("not valid JSON: ", std::string(status.message())));
  }
  return v;
}

// One entry of the tree into `message`, through the proto3 JSON mapping.
absl::Status ToMessage(Value v, google::protobuf::Message& message, absl::string_view label) {
  if (!v.has_struct_value()) return Invalid(label, "expected an object");
  NormalizeDurations(v, message.GetDescriptor());
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(v, &json).ok()) {
    return Invalid(label, "cannot be converted to JSON");
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &message, options);
  if (!status.ok()) return Invalid(label, std::string(status.message()));
  return absl::OkStatus();
}

}  // namespace

FileFormat FormatFromPath(absl::string_view path) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".json")) return FileFormat::kJson;
  if (absl::EndsWith(lower, ".yaml") || absl::EndsWith(lower, ".yml")) return FileFormat::kYaml;
  return FileFormat::kDetect;
}

absl::StatusOr<std::string> ReadInput(const std::string& path, std::istream& stdin_stream) {
  std::ostringstream text;
  if (path == "-") {
    text << stdin_stream.rdbuf();
    return text.str();
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  text << file.rdbuf();
  if (file.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read '", path, "'"));
  return text.str();
}

absl::StatusOr<std::vector<v1::Service>> ParseServices(absl::string_view text, FileFormat format,
                                                       absl::string_view name) {
  absl::StatusOr<Value> tree = ParseTree(text, format, name);
  if (!tree.ok()) return tree.status();
  std::vector<Value> entries;
  std::string label_prefix;
  if (tree->has_list_value()) {
    entries.assign(tree->list_value().values().begin(), tree->list_value().values().end());
    label_prefix = "[";
  } else if (tree->has_struct_value() && tree->struct_value().fields().count("services") > 0) {
    for (const auto& [key, unused] : tree->struct_value().fields()) {
      if (key != "services") {
        return Invalid(name, absl::StrCat("unknown key '", key, "' next to 'services'"));
      }
    }
    const Value& list = tree->struct_value().fields().at("services");
    if (!list.has_list_value()) return Invalid(name, "'services' must be a list");
    entries.assign(list.list_value().values().begin(), list.list_value().values().end());
    label_prefix = "services[";
  } else if (tree->has_struct_value()) {
    entries.push_back(*tree);
  } else {
    return Invalid(name, "expected a list of services, {\"services\": [...]} or one service");
  }
  if (entries.empty()) return Invalid(name, "no services in the file");
  std::vector<v1::Service> services;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string label =
        label_prefix.empty() ? std::string(name) : absl::StrCat(name, ": ", label_prefix, i, "]");
    v1::Service service;
    if (absl::Status s = ToMessage(entries[i], service, label); !s.ok()) return s;
    services.push_back(std::move(service));
  }
  return services;
}

absl::StatusOr<v1::PrewarmRequest> ParseRun(absl::string_view text, FileFormat format,
                                            absl::string_view name) {
  absl::StatusOr<Value> tree = ParseTree(text, format, name);
  if (!tree.ok()) return tree.status();
  v1::PrewarmRequest request;
  if (absl::Status s = ToMessage(*std::move(tree), request, name); !s.ok()) return s;
  return request;
}

}  // namespace prewarm::ctl
