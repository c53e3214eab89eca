#pragma once

#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// One-line logs with levels. Abseil 20220623 has no absl/log, hence this small logger.
//
// Example:
//   PREWARM_LOG(INFO) << "listening on " << address;
// writes to stderr, in a single write(2):
//   2026-11-26T15:04:05.123Z INFO  server.cc:42] listening on 127.0.0.1:50051
//
// The time is UTC with milliseconds. Newlines inside a message are escaped ("\n" becomes the two
// characters \ and n) so that every event stays one line for line-oriented log collectors.
// Lines from concurrent threads never interleave. The streamed operands are evaluated only when
// the level is enabled.

namespace prewarm {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Events below `level` are dropped. The default is kInfo. Thread-safe; meant to be set once at
// start, from a flag.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

// "debug", "info", "warning" (or "warn"), "error", in any case. InvalidArgument otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);

// "DEBUG", "INFO", "WARNING", "ERROR".
absl::string_view LogLevelName(LogLevel level);

// Where lines go: a file descriptor, stderr (2) by default. Not owned; it must stay open while
// anything logs. Lets tests capture lines without touching the process's stderr.
void SetLogFd(int fd);

namespace log_internal {

// Token-pasted by PREWARM_LOG so that `INFO` etc. never meet a macro of the same name.
inline constexpr LogLevel kLevelDEBUG = LogLevel::kDebug;
inline constexpr LogLevel kLevelINFO = LogLevel::kInfo;
inline constexpr LogLevel kLevelWARNING = LogLevel::kWarning;
inline constexpr LogLevel kLevelERROR = LogLevel::kError;

bool IsEnabled(LogLevel level);

// Collects one event and writes it when destroyed, at the end of the full expression.
// Not thread-safe: each event has its own LogMessage.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage();

  std::ostream& stream() { return stream_; }

 private:
  const LogLevel level_;
  const char* const file_;
  const int line_;
  std::ostringstream stream_;
};

// Turns the stream expression into void so both arms of PREWARM_LOG's conditional match.
// `&` binds more loosely than `<<`, so it applies after the whole message is streamed.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace log_internal
}  // namespace prewarm

// The conditional (rather than an `if`) keeps `if (x) PREWARM_LOG(INFO) << ...; else ...` correct.
#define PREWARM_LOG(level)                                                                        \
  !::prewarm::log_internal::IsEnabled(::prewarm::log_internal::kLevel##level)                     \
      ? (void)0                                                                                   \
      : ::prewarm::log_internal::Voidify() &                                                      \
            ::prewarm::log_internal::LogMessage(::prewarm::log_internal::kLevel##level, __FILE__, \
                                                __LINE__)                                         \
                .stream()
