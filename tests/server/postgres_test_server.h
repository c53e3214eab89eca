#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace prewarm {

// A real, throw-away PostgreSQL server for tests: initdb in a fresh temporary directory and a
// postgres listening only on a unix socket there (no TCP port to collide with). PostgreSQL
// refuses to run as root, so as root the cluster is created and run as the unprivileged user
// `nobody`. Binaries come from $PREWARM_POSTGRES_BIN, else /usr/lib/postgresql/15/bin.
// fsync is off: tests need crash-of-a-process durability, not power-loss durability.
// Not thread-safe.
class PostgresTestServer {
 public:
  // NOT_FOUND when the binaries are missing (callers skip, saying so loudly); other errors carry
  // the failing command and the server log's tail.
  static absl::StatusOr<std::unique_ptr<PostgresTestServer>> Start();
  // Stops the server at once and removes its directory.
  ~PostgresTestServer();

  // A fresh, empty database (CREATE DATABASE); returns its URI.
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);
  // The URI of database `name` (postgresql://prewarm@/name?host=<socket dir>).
  std::string Uri(const std::string& name) const;

  // Stops the server (immediate shutdown: connections drop, as on a crash) and starts it again.
  absl::Status Stop();
  absl::Status Restart();

 private:
  PostgresTestServer() = default;
  absl::Status PgCtl(const std::string& action);

  std::string bin_;
  std::string dir_;
  bool running_ = false;
};

// The test process's PostgresTestServer, started on first use (gtest_discover_tests runs each
// test case in a process of its own) and stopped when the process's tests end. Null when it
// cannot run: then *skip says why when the binaries are missing (the caller skips, loudly), or
// a failure has been added to the test.
PostgresTestServer* SharedPostgres(std::string* skip);

// In a test or SetUp: the shared server, or skip the test (missing binaries) / fail it.
#define PREWARM_SHARED_POSTGRES_OR_SKIP(var)             \
  std::string var##_skip;                                \
  PostgresTestServer* var = SharedPostgres(&var##_skip); \
  if (var == nullptr) GTEST_SKIP() << var##_skip

}  // namespace prewarm
