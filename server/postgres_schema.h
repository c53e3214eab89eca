#pragma once

#include <libpq-fe.h>

#include <string>

#include "absl/status/status.h"

namespace prewarm {

// Creates or migrates prewarm's tables in the PostgreSQL database `uri` that `conn` is connected
// to, in one transaction under an advisory lock (replicas starting together migrate once).
// FAILED_PRECONDITION for a schema newer than this binary. Used by HistoryStore::OpenPostgres
// and by PostgresLeader, which needs the fencing table before it opens the store.
absl::Status MigratePostgresSchema(PGconn* conn, const std::string& uri);

}  // namespace prewarm
