#include "server/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace prewarm {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> log_fd{STDERR_FILENO};

// A single write(2) keeps a line whole even against other processes sharing the descriptor; the
// mutex also keeps it whole in the rare case the kernel accepts only part of a long line.
ABSL_CONST_INIT absl::Mutex write_mu(absl::kConstInit);

void WriteLine(const std::string& line) ABSL_LOCKS_EXCLUDED(write_mu) {
  absl::MutexLock lock(&write_mu);
  const int fd = log_fd.load(std::memory_order_relaxed);
  const char* data = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // Nowhere left to report a failing log sink.
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
}

absl::string_view Basename(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? path : path.substr(slash + 1);
}

// Appends `message` with line breaks escaped, so the event stays one line.
void AppendEscaped(absl::string_view message, std::string& out) {
  for (char c : message) {
    switch (c) {
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      default:
        out.push_back(c);
    }
  }
}

}  // namespace

void SetMinLogLevel(LogLevel level) {
  min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel MinLogLevel() { return static_cast<LogLevel>(min_level.load(std::memory_order_relaxed)); }

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level \"", name, "\"; want debug, info, warning or error"));
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

void SetLogFd(int fd) { log_fd.store(fd, std::memory_order_relaxed); }

namespace log_internal {

bool IsEnabled(LogLevel level) {
  return static_cast<int>(level) >= min_level.load(std::memory_order_relaxed);
}

LogMessage::LogMessage(LogLevel level, const char* file, int line)
    : level_(level), file_(file), line_(line) {}

LogMessage::~LogMessage() {
  const std::string message = stream_.str();
  absl::string_view name = LogLevelName(level_);
  std::string line;
  line.reserve(64 + message.size());
  absl::StrAppend(&line, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                  " ", name);
  // Pad to five characters so the common levels line up.
  if (name.size() < 5) line.append(5 - name.size(), ' ');
  absl::StrAppend(&line, " ", Basename(file_), ":", line_, "] ");
  AppendEscaped(message, line);
  line.push_back('\n');
  WriteLine(line);
}

}  // namespace log_internal
}  // namespace prewarm
