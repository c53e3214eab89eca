#pragma once

// libpq helpers shared by the PostgreSQL store and leader election: connecting with prewarmd's
// defaults, running parameterised statements in binary format, and turning libpq errors into
// absl::Status values that name the database (never its password).

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prewarm::pg {

// Whether `store` names a PostgreSQL database ("postgres://..." or "postgresql://...") rather
// than an SQLite file.
bool IsPostgresUri(absl::string_view store);

// "postgresql://user@host:port/dbname" for messages: the DSN without its password or options.
// Anything that is not a PostgreSQL URI (an SQLite path) is returned as it is.
std::string Describe(const std::string& dsn);

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;

struct ResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultClearer>;

// Connects to `dsn` with a 5 s connect timeout, TCP keepalives (a dead peer is noticed in ~10 s)
// and application_name "prewarmd" unless the DSN sets them, then sets lock_timeout and
// statement_timeout to `statement_timeout` so that no statement waits for ever, and ends the
// session after 5 s idle inside a transaction (a paused process must not hold locks the next
// leader waits for). UNAVAILABLE names the database and libpq's reason.
absl::StatusOr<ConnPtr> Connect(const std::string& dsn, absl::Duration statement_timeout);

// Binary-format statement parameters. The values must outlive the statement's execution.
class Params {
 public:
  Params& Bytes(absl::string_view bytes);
  Params& Int64(int64_t value);
  Params& Int32(int32_t value);
  Params& Double(double value);
  Params& Null();

  int size() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  // Integers and doubles in network byte order. Each value has its own heap string, so that
  // pointers into earlier values stay valid as more are added.
  void Add(std::string bytes, bool is_null);

  std::vector<std::unique_ptr<std::string>> storage_;
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

// Decoders of binary-format result columns.
int64_t GetInt64(const PGresult* result, int row, int column);
int32_t GetInt32(const PGresult* result, int row, int column);
double GetDouble(const PGresult* result, int row, int column);
absl::string_view GetBytes(const PGresult* result, int row, int column);

// The status of a failed statement (or connection): the code from its SQLSTATE (connection
// failures and fencing are UNAVAILABLE), the message naming the database and `what`.
absl::Status Error(PGconn* conn, const PGresult* result, const std::string& dsn,
                   absl::string_view what);

// Runs `sql` with `params`, binary results. OK only for PGRES_COMMAND_OK / PGRES_TUPLES_OK.
absl::StatusOr<ResultPtr> Exec(PGconn* conn, const std::string& dsn, const char* sql,
                               const Params& params, absl::string_view what);

// Runs `sql`, which may hold several statements and no parameters (the simple query protocol:
// migrations, SET). Results are discarded.
absl::Status ExecScript(PGconn* conn, const std::string& dsn, const char* sql,
                        absl::string_view what);

// SQLSTATE raised by prewarm_check_fence(): the writer's epoch is no longer the store's.
inline constexpr char kFencedSqlState[] = "PWF01";

}  // namespace prewarm::pg
