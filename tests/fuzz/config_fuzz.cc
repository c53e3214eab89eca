// Fuzzes the configuration file: ReadConfigFile (JSON, through a file, as prewarmd reads it) and
// ApplyConfig. An input whose first byte is '{' or whitespace is JSON text; any other input is also
// tried as a binary ServerConfig, so that ApplyConfig sees every field combination quickly.
// A configuration ApplyConfig accepts must leave options a server can start with: an allowlist
// that builds, positive sample counts, windows and durations.

#include <fuzzer/FuzzedDataProvider.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "prewarm/config/v1/config.pb.h"
#include "server/config.h"
#include "server/url_allowlist.h"

namespace prewarm {
namespace {

#define FUZZ_CHECK(cond, ...)                                            \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "config_fuzz: check failed: %s: %s\n", #cond, \
                   absl::StrCat(__VA_ARGS__).c_str());                   \
      std::abort();                                                      \
    }                                                                    \
  } while (0)

void Apply(config::v1::ServerConfig config) {
  // A path to read the bearer token from would let the fuzzer read any file of the machine
  // (/dev/zero never ends); the config is trusted operator input, so that field stays out.
  config.clear_bearer_token_file();
  ServerOptions options;
  const absl::Status applied = ApplyConfig(config, options);
  if (!applied.ok()) {
    FUZZ_CHECK(!applied.message().empty(), "an error without words");
    return;
  }
  FUZZ_CHECK(UrlAllowlist::Create(options.allowlist).ok(), "accepted an allowlist that fails");
  FUZZ_CHECK(options.registry.planner.sample_count >= 1, options.registry.planner.sample_count);
  FUZZ_CHECK(options.registry.history.window_size >= 1, options.registry.history.window_size);
  FUZZ_CHECK(options.registry.max_warmup_refreshes >= 0, options.registry.max_warmup_refreshes);
  FUZZ_CHECK(options.registry.planner.delay_cost_ratio > 0, "delay_cost_ratio");
  FUZZ_CHECK(options.service_defaults.keep_alive > absl::ZeroDuration(), "keep_alive");
  FUZZ_CHECK(options.registry.history.cold_start_prior > absl::ZeroDuration(), "prior");
  FUZZ_CHECK(options.registry.history.duration_prior > absl::ZeroDuration(), "prior");
}

}  // namespace
}  // namespace prewarm

namespace {
int config_fd = -1;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every invalid UTF-8 string it meets; the fuzzer only wants its findings.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  config_fd = memfd_create("config_fuzz.json", 0);
  return config_fd < 0 ? 1 : 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (ftruncate(config_fd, 0) != 0 ||
      pwrite(config_fd, data, size, 0) != static_cast<ssize_t>(size)) {
    std::abort();
  }
  const std::string path = absl::StrCat("/proc/self/fd/", config_fd);
  absl::StatusOr<prewarm::config::v1::ServerConfig> config = prewarm::ReadConfigFile(path);
  if (config.ok()) {
    prewarm::Apply(*config);
  } else {
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument,
               config.status().ToString());
    FUZZ_CHECK(config.status().message().find(path) != std::string::npos,
               "the error does not name the file: ", config.status().ToString());
  }
  if (size > 0 && data[0] != '{' && data[0] != ' ' && data[0] != '\n') {
    prewarm::config::v1::ServerConfig binary;
    if (binary.ParseFromArray(data, static_cast<int>(size))) prewarm::Apply(binary);
  }
  return 0;
}
