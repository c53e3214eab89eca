#include "server/postgres_connection.h"

#include <endian.h>

#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace prewarm::pg {
namespace {

// See Connect().
constexpr absl::Duration kIdleInTransactionTimeout = absl::Seconds(5);

}  // namespace

bool IsPostgresUri(absl::string_view store) {
  return absl::StartsWith(store, "postgres://") || absl::StartsWith(store, "postgresql://");
}

std::string Describe(const std::string& dsn) {
  if (!IsPostgresUri(dsn)) return dsn;  // An SQLite path names itself.
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  if (options == nullptr) {
    PQfreemem(error);
    return "postgresql://(unparseable DSN)";
  }
  std::string user, host, port, dbname;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const absl::string_view keyword = o->keyword;
    if (keyword == "user") user = o->val;
    if (keyword == "host" || (keyword == "hostaddr" && host.empty())) host = o->val;
    if (keyword == "port") port = o->val;
    if (keyword == "dbname") dbname = o->val;
  }
  PQconninfoFree(options);
  return absl::StrCat("postgresql://", user, user.empty() ? "" : "@", host, port.empty() ? "" : ":",
                      port, "/", dbname);
}

absl::StatusOr<ConnPtr> Connect(const std::string& dsn, absl::Duration statement_timeout) {
  // Defaults first: the DSN, expanded in place of "dbname", overrides them.
  const char* keywords[] = {"connect_timeout",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "application_name",
                            "dbname",
                            nullptr};
  const char* values[] = {"5", "5", "2", "3", "prewarmd", dsn.c_str(), nullptr};
  ConnPtr conn(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
  if (conn == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("prewarm store ", Describe(dsn), ": out of memory connecting"));
  }
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat(
        "prewarm store ", Describe(dsn),
        ": cannot connect: ", absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn.get()))));
  }
  const int64_t ms = absl::ToInt64Milliseconds(statement_timeout);
  // NOTICEs (e.g. "already exists, skipping") would go to stderr. prewarmd never waits inside a
  // transaction (a batch is sent whole), so a session idle in one is a paused or partitioned
  // process: ending it releases the fence row's share lock, which the next leader's epoch bump
  // waits for.
  const std::string set =
      absl::StrCat("SET client_min_messages = warning; SET lock_timeout = ", ms,
                   "; SET statement_timeout = ", ms, "; SET idle_in_transaction_session_timeout = ",
                   absl::ToInt64Milliseconds(kIdleInTransactionTimeout));
  if (absl::Status s = ExecScript(conn.get(), dsn, set.c_str(), "setting timeouts"); !s.ok()) {
    return s;
  }
  return conn;
}

void Params::Add(std::string bytes, bool is_null) {
  storage_.push_back(std::make_unique<std::string>(std::move(bytes)));
  values_.push_back(is_null ? nullptr : storage_.back()->data());
  lengths_.push_back(static_cast<int>(storage_.back()->size()));
  formats_.push_back(1);
}

Params& Params::Bytes(absl::string_view bytes) {
  Add(std::string(bytes), /*is_null=*/false);
  return *this;
}

Params& Params::Int64(int64_t value) {
  const uint64_t be = htobe64(static_cast<uint64_t>(value));
  Add(std::string(reinterpret_cast<const char*>(&be), sizeof(be)), /*is_null=*/false);
  return *this;
}

Params& Params::Int32(int32_t value) {
  const uint32_t be = htobe32(static_cast<uint32_t>(value));
  Add(std::string(reinterpret_cast<const char*>(&be), sizeof(be)), /*is_null=*/false);
  return *this;
}

Params& Params::Double(double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return Int64(static_cast<int64_t>(bits));
}

Params& Params::Null() {
  Add(std::string(), /*is_null=*/true);
  return *this;
}

int64_t GetInt64(const PGresult* result, int row, int column) {
  uint64_t be = 0;
  std::memcpy(&be, PQgetvalue(result, row, column), sizeof(be));
  return static_cast<int64_t>(be64toh(be));
}

int32_t GetInt32(const PGresult* result, int row, int column) {
  uint32_t be = 0;
  std::memcpy(&be, PQgetvalue(result, row, column), sizeof(be));
  return static_cast<int32_t>(be32toh(be));
}

double GetDouble(const PGresult* result, int row, int column) {
  const uint64_t bits = static_cast<uint64_t>(GetInt64(result, row, column));
  double value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

absl::string_view GetBytes(const PGresult* result, int row, int column) {
  return absl::string_view(PQgetvalue(result, row, column),
                           static_cast<size_t>(PQgetlength(result, row, column)));
}

namespace {

absl::StatusCode CodeForSqlState(absl::string_view state) {
  if (state == kFencedSqlState) return absl::StatusCode::kUnavailable;
  if (state.size() != 5) return absl::StatusCode::kUnavailable;  // No state: the connection.
  const absl::string_view klass = state.substr(0, 2);
  if (klass == "08" || klass == "57" || klass == "53" || klass == "40" || klass == "55") {
    // Connection exceptions, operator intervention (shutdown, cancel, timeouts), insufficient
    // resources, rollbacks (serialization, deadlock), lock not available: transient.
    return klass == "53" ? absl::StatusCode::kResourceExhausted : absl::StatusCode::kUnavailable;
  }
  if (klass == "22" || klass == "23") return absl::StatusCode::kInvalidArgument;
  if (klass == "28" || klass == "42") {
    return state == "42501" ? absl::StatusCode::kPermissionDenied
                            : absl::StatusCode::kFailedPrecondition;
  }
  if (klass == "XX") return absl::StatusCode::kDataLoss;
  return absl::StatusCode::kInternal;
}

}  // namespace

absl::Status Error(PGconn* conn, const PGresult* result, const std::string& dsn,
                   absl::string_view what) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  absl::string_view message = result != nullptr && *PQresultErrorMessage(result) != '\0'
                                  ? PQresultErrorMessage(result)
                                  : PQerrorMessage(conn);
  message = absl::StripTrailingAsciiWhitespace(message);
  if (message.empty()) message = "no answer from the server";
  return absl::Status(
      CodeForSqlState(state != nullptr ? state : ""),
      absl::StrCat("prewarm store ", Describe(dsn), ": ", what, ": ", message,
                   state != nullptr ? absl::StrCat(" (SQLSTATE ", state, ")") : ""));
}

absl::StatusOr<ResultPtr> Exec(PGconn* conn, const std::string& dsn, const char* sql,
                               const Params& params, absl::string_view what) {
  ResultPtr result(PQexecParams(conn, sql, params.size(), /*paramTypes=*/nullptr, params.values(),
                                params.lengths(), params.formats(), /*resultFormat=*/1));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return Error(conn, result.get(), dsn, what);
  }
  return result;
}

absl::Status ExecScript(PGconn* conn, const std::string& dsn, const char* sql,
                        absl::string_view what) {
  ResultPtr result(PQexec(conn, sql));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return Error(conn, result.get(), dsn, what);
  }
  return absl::OkStatus();
}

}  // namespace prewarm::pg
