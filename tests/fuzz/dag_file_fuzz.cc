// Fuzzes prewarmctl's file readers (clients/cpp/input_files.h over yaml_value.h): the first byte
// picks the reader (run or services) and the format (detect, JSON, YAML), the rest is the file.
// Refusals must be INVALID_ARGUMENT naming the file; what is accepted must read back the same
// after printing it as proto3 JSON (what `prewarmctl --output json` prints can be read again).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "clients/cpp/input_files.h"
#include "clients/cpp/yaml_value.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/json_util.h"
#include "prewarm/v1/prewarm.pb.h"

namespace {

#define FUZZ_CHECK(cond, ...)                                              \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "dag_file_fuzz: check failed: %s: %s\n", #cond, \
                   absl::StrCat(__VA_ARGS__).c_str());                     \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

constexpr absl::string_view kName = "fuzz.input";

void CheckRefusal(const absl::Status& s) {
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument, s.ToString());
  FUZZ_CHECK(absl::StrContains(s.message(), kName),
             "the error does not name the file: ", s.ToString());
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  FUZZ_CHECK(google::protobuf::util::MessageToJsonString(m, &out).ok(), m.ShortDebugString());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every invalid UTF-8 string it meets; the fuzzer only wants its findings.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace prewarm;
  using ctl::FileFormat;
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  static const FileFormat kFormats[] = {FileFormat::kDetect, FileFormat::kJson, FileFormat::kYaml};
  const FileFormat format = kFormats[(selector >> 1) % 3];

  if ((selector & 1) == 0) {
    absl::StatusOr<v1::PrewarmRequest> run = ctl::ParseRun(text, format, kName);
    if (!run.ok()) {
      CheckRefusal(run.status());
    } else {
      absl::StatusOr<v1::PrewarmRequest> again =
          ctl::ParseRun(Json(*run), FileFormat::kJson, kName);
      FUZZ_CHECK(again.ok(), "printed run not readable: ", again.status().ToString());
      FUZZ_CHECK(again->SerializeAsString() == run->SerializeAsString(),
                 "run changed: ", run->ShortDebugString(), " -> ", again->ShortDebugString());
    }
  } else {
    absl::StatusOr<std::vector<v1::Service>> services = ctl::ParseServices(text, format, kName);
    if (!services.ok()) {
      CheckRefusal(services.status());
    } else {
      std::string list = "[";
      for (size_t i = 0; i < services->size(); ++i) {
        absl::StrAppend(&list, i ? "," : "", Json((*services)[i]));
      }
      list += "]";
      absl::StatusOr<std::vector<v1::Service>> again =
          ctl::ParseServices(list, FileFormat::kJson, kName);
      FUZZ_CHECK(again.ok(), "printed services not readable: ", again.status().ToString());
      FUZZ_CHECK(again->size() == services->size(), "service count changed");
      for (size_t i = 0; i < services->size(); ++i) {
        FUZZ_CHECK((*again)[i].SerializeAsString() == (*services)[i].SerializeAsString(),
                   "service changed: ", (*services)[i].ShortDebugString());
      }
    }
  }
  // The YAML reader alone too, on the same text: it must never crash or hang.
  absl::StatusOr<google::protobuf::Value> tree = ctl::ParseYaml(text);
  FUZZ_CHECK(tree.ok() || tree.status().code() == absl::StatusCode::kInvalidArgument,
             tree.status().ToString());
  return 0;
}
