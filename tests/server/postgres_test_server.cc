#include "tests/server/postgres_test_server.h"

#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

constexpr char kDefaultBin[] = "/usr/lib/postgresql/15/bin";
constexpr char kUser[] = "prewarm";  // The database superuser initdb creates.
constexpr int kPort = 5432;          // Only names the socket file, in a private directory.

// Runs argv (as `nobody` when this process is root) and waits; the exit status. Everything the
// child needs is prepared before fork(): other threads may hold locks (malloc, NSS) that the
// child must not wait for, so it only calls async-signal-safe functions.
int Run(const std::vector<std::string>& argv) {
  const bool root = geteuid() == 0;
  const struct passwd* nobody = root ? getpwnam("nobody") : nullptr;
  if (root && nobody == nullptr) return 126;
  const uid_t uid = root ? nobody->pw_uid : 0;
  const gid_t gid = root ? nobody->pw_gid : 0;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (root && (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string all = buffer.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  PostgresTestServer* Server(std::string* skip) {
    if (!started_) {
      started_ = true;
      server_ = PostgresTestServer::Start();
    }
    if (server_.ok()) return server_->get();
    const std::string why = server_.status().ToString();
    if (server_.status().code() == absl::StatusCode::kNotFound) {
      std::fprintf(stderr, "\n*** SKIPPING a PostgreSQL test: %s ***\n\n", why.c_str());
      *skip = why;
    } else {
      ADD_FAILURE() << "cannot start PostgreSQL: " << why;
      *skip = "PostgreSQL failed to start (see the failure)";
    }
    return nullptr;
  }
  void TearDown() override { server_ = absl::UnknownError("stopped"); }

 private:
  bool started_ = false;
  absl::StatusOr<std::unique_ptr<PostgresTestServer>> server_ = absl::UnknownError("not started");
};

// Registered before main() runs the tests, so that TearDown stops the server.
PostgresEnvironment* const kEnvironment = static_cast<PostgresEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment()));

}  // namespace

PostgresTestServer* SharedPostgres(std::string* skip) { return kEnvironment->Server(skip); }

absl::StatusOr<std::unique_ptr<PostgresTestServer>> PostgresTestServer::Start() {
  std::unique_ptr<PostgresTestServer> s(new PostgresTestServer());
  const char* env = getenv("PREWARM_POSTGRES_BIN");
  s->bin_ = env != nullptr && *env != '\0' ? env : kDefaultBin;
  if (access((s->bin_ + "/postgres").c_str(), X_OK) != 0 ||
      access((s->bin_ + "/initdb").c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("PostgreSQL binaries not found in ", s->bin_,
                     " (install Debian's postgresql package, or set PREWARM_POSTGRES_BIN)"));
  }
  std::string pattern = "/tmp/prewarm_pg_XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  s->dir_ = pattern;
  if (geteuid() == 0) {
    const struct passwd* nobody = getpwnam("nobody");
    if (nobody == nullptr) return absl::FailedPreconditionError("running as root without 'nobody'");
    if (chown(s->dir_.c_str(), nobody->pw_uid, nobody->pw_gid) != 0) {
      return absl::InternalError(absl::StrCat("chown ", s->dir_));
    }
  }
  const std::string log = s->dir_ + "/initdb.log";
  // initdb's output goes to a file through sh, so that a failure can be shown.
  if (int rc = Run({"/bin/sh", "-c",
                    absl::StrCat(s->bin_, "/initdb -D ", s->dir_, "/data -U ", kUser,
                                 " --auth=trust --locale=C -E UTF8 > ", log, " 2>&1")});
      rc != 0) {
    return absl::InternalError(absl::StrCat("initdb exited with ", rc, ": ", Tail(log)));
  }
  if (absl::Status started = s->PgCtl("start"); !started.ok()) return started;
  return s;
}

absl::Status PostgresTestServer::PgCtl(const std::string& action) {
  const std::string log = dir_ + "/postgres.log";
  std::vector<std::string> argv = {bin_ + "/pg_ctl", "-D", dir_ + "/data", "-w", "-s"};
  if (action == "start") {
    argv.insert(argv.end(),
                {"-l", log, "-o",
                 absl::StrCat("-k ", dir_, " -p ", kPort,
                              " -c listen_addresses='' -c fsync=off -c max_connections=200"
                              // Small, and no /dev/shm (64 MiB in containers; tests run several
                              // servers at once).
                              " -c shared_buffers=16MB -c dynamic_shared_memory_type=mmap")});
  } else {
    argv.insert(argv.end(), {"-m", "immediate"});
  }
  argv.push_back(action);
  if (int rc = Run(argv); rc != 0) {
    return absl::InternalError(
        absl::StrCat("pg_ctl ", action, " exited with ", rc, ": ", Tail(log)));
  }
  running_ = action == "start";
  return absl::OkStatus();
}

absl::Status PostgresTestServer::Stop() { return PgCtl("stop"); }
absl::Status PostgresTestServer::Restart() { return PgCtl("start"); }

PostgresTestServer::~PostgresTestServer() {
  if (running_) (void)PgCtl("stop");
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

std::string PostgresTestServer::Uri(const std::string& name) const {
  return absl::StrCat("postgresql://", kUser, "@/", name, "?host=", dir_, "&port=", kPort);
}

absl::StatusOr<std::string> PostgresTestServer::CreateDatabase(const std::string& name) {
  PGconn* conn = PQconnectdb(Uri("postgres").c_str());
  absl::Status status;
  if (PQstatus(conn) != CONNECTION_OK) {
    status = absl::UnavailableError(PQerrorMessage(conn));
  } else {
    PGresult* result = PQexec(conn, absl::StrCat("CREATE DATABASE \"", name, "\"").c_str());
    if (PQresultStatus(result) != PGRES_COMMAND_OK) {
      status = absl::InternalError(PQresultErrorMessage(result));
    }
    PQclear(result);
  }
  PQfinish(conn);
  if (!status.ok()) return status;
  return Uri(name);
}

}  // namespace prewarm
