// prewarmctl end to end: RunPrewarmctl driven with argument vectors and captured output against
// a real prewarm::Server in process (loopback port 0, SQLite store in a temporary directory, fake
// clock), the real binary exec'd for its exit codes, and the pieces (input files, rendering) on
// their own; YAML in yaml_value_test.cc.
#include "clients/cpp/prewarmctl.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/command_line.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/input_files.h"
#include "clients/cpp/render.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_target.h"

namespace prewarm::ctl {
namespace {

using ::prewarm::testing::FakeHttpTarget;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Generous: only a broken server comes near it, however loaded the machine.
constexpr absl::Duration kPatience = absl::Seconds(30);

// FakeClock's default start: 2023-11-14T22:13:20Z.
constexpr char kNow[] = "2023-11-14T22:13:20.000Z";

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const Result& r) {
  return os << "exit " << r.code << "\n--- stdout\n" << r.out << "--- stderr\n" << r.err;
}

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "prewarmctl_test_XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

template <typename M>
M FromJson(const std::string& json) {
  M message;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return message;
}

// A loopback port with nothing listening: bound (so nobody else takes it) but never listen()ed,
// so connecting is refused.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() { close(fd_); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class PrewarmctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    target_ = FakeHttpTarget::Start();
    target_->SetRoute("/warmup", {});
    options_.grpc_address = "127.0.0.1:0";
    options_.metrics_address = "";  // Stopping a /metrics listener takes about 2 s.
    options_.store_path = dir_ + "/prewarm.db";
    options_.log_level = LogLevel::kWarning;
  }

  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_TRUE(server_->Shutdown().ok());
    }
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer() {
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options_, clock_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = absl::StrCat("127.0.0.1:", server_->grpc_port());
  }

  // Runs prewarmctl with `args` (no program name) against the server, through PREWARM_SERVER.
  Result Run(std::vector<std::string> args, std::string stdin_text = "") {
    args.insert(args.begin(), "prewarmctl");
    std::istringstream in(stdin_text);
    std::ostringstream out;
    std::ostringstream err;
    Environment env;
    env.server = address_;
    env.clock = &clock_;
    env.stdin_stream = &in;
    env.interrupter = &interrupter_;
    Result r;
    r.code = RunPrewarmctl(args, env, out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  void RegisterManaged(const std::string& name) {
    const Result r =
        Run({"services", "register", "--name", name, "--url", target_->Url("/warmup")});
    ASSERT_EQ(r.code, 0) << r;
  }

  // The seed's shape: extract -> transform -> load on three services.
  std::string ChainFile(const std::string& run_id = "run-1") {
    return WriteFile(run_id + ".json", absl::StrCat(R"({
      "run_id": ")",
                                                    run_id, R"(", "workflow_id": "etl",
      "tasks": [
        {"task_id": "extract", "service": "svc-a"},
        {"task_id": "transform", "service": "svc-b", "upstream_task_ids": ["extract"]},
        {"task_id": "load", "service": "svc-c", "upstream_task_ids": ["transform"]}
      ]})"));
  }

  // Waits (real time, bounded) until `done` holds.
  template <typename F>
  bool WaitFor(F done) {
    const absl::Time deadline = absl::Now() + kPatience;
    while (!done() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
    return done();
  }

  // Runs prewarmctl on a thread; joins on destruction, interrupting a watch that is still running
  // (a failed assertion must not leave the thread behind).
  class Background {
   public:
    Background(PrewarmctlTest* test, std::vector<std::string> args)
        : test_(test), thread_([this, args] {
            result_ = test_->Run(args);
            done_ = true;
          }) {}
    ~Background() {
      while (!done_) {  // Only after a failure: stop the watch whenever it is armed.
        test_->interrupter_.Trigger();
        absl::SleepFor(absl::Milliseconds(1));
      }
      Join();
    }
    const Result& Join() {
      if (thread_.joinable()) thread_.join();
      return result_;
    }

   private:
    PrewarmctlTest* test_;
    Result result_;
    std::atomic<bool> done_ = false;
    std::thread thread_;
  };

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<FakeHttpTarget> target_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::string address_ = "127.0.0.1:1";
  Interrupter interrupter_;
};

// --- Help and usage errors -------------------------------------------------------------------

TEST_F(PrewarmctlTest, HelpListsEveryCommandTheExitCodesAndAFirstSession) {
  const Result r = Run({"--help"});
  ASSERT_EQ(r.code, 0) << r;
  for (const char* command : {"services list", "services register", "run submit", "run report",
                              "run cancel", "plan", "stats", "watch", "warmup report", "health"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("  ", command, " "))) << command;
  }
  EXPECT_THAT(r.out, HasSubstr("Exit codes: 0 ok, 2 usage error"));
  EXPECT_THAT(r.out, HasSubstr("3 prewarmd cannot be reached"));
  EXPECT_THAT(r.out, HasSubstr("--server HOST:PORT"));
  EXPECT_THAT(r.out, HasSubstr("PREWARM_SERVER"));
  EXPECT_THAT(r.out, HasSubstr("prewarmctl plan run-1"));
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(Run({"help"}).out, r.out);
  EXPECT_EQ(Run({"-h"}).out, r.out);
}

TEST_F(PrewarmctlTest, EveryCommandHasHelpWithUsageFlagsAndExamples) {
  for (const std::vector<std::string>& words :
       std::vector<std::vector<std::string>>{{"services", "list"},
                                             {"services", "register"},
                                             {"run", "submit"},
                                             {"run", "report"},
                                             {"run", "cancel"},
                                             {"plan"},
                                             {"stats"},
                                             {"watch"},
                                             {"warmup", "report"},
                                             {"health"}}) {
    const std::string path = absl::StrJoin(words, " ");
    SCOPED_TRACE(path);
    std::vector<std::string> args = words;
    args.push_back("--help");
    const Result r = Run(args);
    ASSERT_EQ(r.code, 0) << r;
    EXPECT_THAT(r.out, StartsWith(absl::StrCat("Usage: prewarmctl [global flags] ", path)));
    EXPECT_THAT(r.out, HasSubstr("\nExamples:\n  "));
    EXPECT_THAT(r.out, HasSubstr("\n  prewarmctl "));
    std::vector<std::string> help_args = {"help"};
    help_args.insert(help_args.end(), words.begin(), words.end());
    EXPECT_EQ(Run(help_args).out, r.out);
  }
  const Result submit = Run({"run", "submit", "-h"});
  EXPECT_THAT(submit.out, HasSubstr("--dry-run"));
  EXPECT_THAT(submit.out, HasSubstr("\"upstream_task_ids\": [\"extract\"]"));
  EXPECT_THAT(submit.out, HasSubstr("prewarmctl run submit --file dag.json --run-id run-2"));
  const Result register_help = Run({"services", "register", "--help"});
  EXPECT_THAT(register_help.out, HasSubstr("services.yaml"));
  EXPECT_THAT(register_help.out, HasSubstr("--container-concurrency N"));
  EXPECT_THAT(register_help.out, HasSubstr("(0: unlimited; Lambda: 1)"));
  EXPECT_THAT(register_help.out, HasSubstr("container_concurrency: 1}"));  // The YAML example.
}

TEST_F(PrewarmctlTest, GroupsWithoutACommandListTheirCommands) {
  Result r = Run({"services"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("prewarmctl services list"));
  EXPECT_THAT(r.err, HasSubstr("'services' needs a command"));
  r = Run({"run", "--help"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out,
              AllOf(HasSubstr("run submit"), HasSubstr("run report"), HasSubstr("run cancel")));
  r = Run({"run", "explode"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command 'run explode'"));
}

TEST_F(PrewarmctlTest, UsageErrorsExitTwoNamingTheProblemAndCallNothing) {
  StartServer();
  const std::string bad_json = WriteFile("bad.json", "{\"run_id\": ");
  const std::string typo = WriteFile("typo.json", R"({"run_id": "r", "taskz": []})");
  const std::string no_id = WriteFile("no_id.json", R"({"workflow_id": "w"})");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, "no command given"},
      {{"explode"}, "unknown command 'explode'"},
      {{"plan"}, "expected RUN_ID"},
      {{"plan", "a", "b"}, "too many"},
      {{"services", "list", "extra"}, "unexpected argument 'extra'"},
      {{"plan", "r", "--frobnicate"}, "unknown flag '--frobnicate'"},
      {{"--timeout", "soon", "plan", "r"}, "--timeout: 'soon' is not a duration"},
      {{"--timeout=0s", "plan", "r"}, "--timeout must be more than 0"},
      {{"--output", "xml", "plan", "r"}, "--output is table or json, not 'xml'"},
      {{"--server"}, "--server needs a value"},
      {{"--server=a:1", "plan", "r", "--server=b:2"}, "--server given both before and after"},
      {{"run", "report", "r", "t", "exploded"}, "unknown event 'exploded'"},
      {{"run", "report", "r", "t", "started", "--time", "yesterday"}, "not an RFC 3339 time"},
      {{"run", "report", "r", "t", "invoked", "--cold", "maybe"}, "--cold: 'maybe'"},
      {{"run", "report", "r", "t", "invoked", "--cold-start", "-1s"}, "is negative"},
      {{"run", "submit"}, "give the run's DAG with --file"},
      {{"run", "submit", "--file", dir_ + "/missing.json"}, "cannot open"},
      {{"run", "submit", "--file", bad_json}, "not valid JSON"},
      {{"run", "submit", "--file", typo}, "taskz"},
      {{"run", "submit", "--file", no_id}, "no run_id"},
      {{"run", "submit", "--file", no_id, "--run-id", "x", "--start-in", "1s", "--start-time",
        kNow},
       "--start-time or --start-in, not both"},
      {{"run", "submit", "--file", no_id, "--run-id", "x", "--delay-cost-ratio", "-2"},
       "--delay-cost-ratio must be a number > 0"},
      {{"run", "submit", "--file", no_id, "--dry-run=perhaps"}, "--dry-run takes no value"},
      {{"services", "register"}, "give --name"},
      {{"services", "register", "--name", "a", "--mode", "lazy"}, "--mode is managed or delegated"},
      {{"services", "register", "--name", "a", "--keep-alive", "forever"}, "--keep-alive"},
      {{"services", "register", "--name", "a", "--container-concurrency", "one"},
       "--container-concurrency must be an integer >= 0 (0: unlimited), not 'one'"},
      {{"services", "register", "--name", "a", "--container-concurrency", "-1"},
       "--container-concurrency must be an integer >= 0 (0: unlimited), not '-1'"},
      {{"services", "register", "--name", "a", "--container-concurrency=1.5"},
       "--container-concurrency must be an integer"},
      {{"services", "register", "--name", "a", "--container-concurrency", "99999999999"},
       "not '99999999999'"},  // Beyond int32.
      {{"services", "register", "--name", "a", "--container-concurrency"},
       "--container-concurrency needs a value (N)"},
      {{"services", "register", "--file", bad_json, "--container-concurrency", "1"},
       "--file cannot be combined with --container-concurrency"},
      {{"services", "register", "--file", bad_json, "--name", "a"},
       "--file cannot be combined with --name"},
      {{"watch", "--count", "0"}, "--count must be a positive integer"},
      {{"warmup", "report", "w", "meh"}, "the result is ok or failed"},
      {{"--client-cert", "c.pem", "health"}, "--client-cert and --client-key go together"},
      {{"--token-file", dir_ + "/no-token", "health"}, "cannot open token file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    const Result r = Run(c.args);
    EXPECT_EQ(r.code, 2) << r;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << r;
    EXPECT_THAT(r.err, StartsWith("prewarmctl: ")) << r;
    EXPECT_EQ(r.out, "");
  }
  EXPECT_EQ(server_->registry().active_runs(), 0);
}

// --- Services --------------------------------------------------------------------------------

TEST_F(PrewarmctlTest, ServicesRegisterFromFlagsAndListAsTableAndJson) {
  StartServer();
  Result r = Run({"services", "register", "--name", "svc-a", "--url", target_->Url("/warmup"),
                  "--method", "post", "--timeout", "20s", "--keep-alive", "90s",
                  "--cold-start-prior", "2.5s", "--warm-latency", "80ms"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Registered service svc-a.\nNAME   MODE     WARM-UP URL"));
  EXPECT_THAT(r.out, HasSubstr("POST    20s      1m30s       2.5s              80ms"));

  r = Run({"services", "register", "--name", "svc-a", "--url", target_->Url("/warmup")});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Replaced service svc-a."));
  r = Run({"services", "register", "--name", "lambda", "--mode", "delegated"});
  ASSERT_EQ(r.code, 0) << r;

  r = Run({"services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r;
  EXPECT_THAT(lines[0], StartsWith("NAME    MODE       WARM-UP URL"));
  EXPECT_THAT(lines[1], StartsWith("lambda  delegated  -"));
  EXPECT_THAT(lines[2], StartsWith(absl::StrCat("svc-a   managed    ", target_->Url("/warmup"))));

  r = Run({"--output", "json", "services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  const auto list = FromJson<v1::ListServicesResponse>(r.out);
  ASSERT_EQ(list.services_size(), 2);
  EXPECT_EQ(list.services(0).name(), "lambda");
  EXPECT_EQ(list.services(0).mode(), v1::WARMUP_MODE_DELEGATED);
  EXPECT_EQ(list.services(1).warmup_url(), target_->Url("/warmup"));
  EXPECT_THAT(r.out, HasSubstr("\"warmup_url\""));  // Proto field names, for jq.

  // --output after the command works as well.
  r = Run({"services", "register", "--name", "svc-b", "--url", target_->Url("/warmup"),
           "--output=json"});
  ASSERT_EQ(r.code, 0) << r;
  const auto registered = FromJson<v1::RegisterServiceResponse>(r.out);
  EXPECT_EQ(registered.service().name(), "svc-b");
  EXPECT_FALSE(registered.replaced());
  EXPECT_THAT(r.out, HasSubstr("\"replaced\": false"));  // Defaults printed too.
}

TEST_F(PrewarmctlTest, ServicesRegisterContainerConcurrencyShowsInTableAndJson) {
  StartServer();
  Result r = Run({"services", "register", "--name", "lambda", "--mode", "delegated",
                  "--container-concurrency", "1"});
  ASSERT_EQ(r.code, 0) << r;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r;
  EXPECT_THAT(lines[1], AllOf(HasSubstr("KEEP-ALIVE"), EndsWith("  CONCURRENCY")));
  EXPECT_THAT(lines[2], AllOf(StartsWith("lambda  delegated"), EndsWith("  1")));

  // Not given: 0, which the table calls unlimited.
  r = Run({"services", "register", "--name", "svc-a", "--url", target_->Url("/warmup"),
           "--keep-alive", "90s", "--container-concurrency=0"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("1m30s"));
  EXPECT_THAT(r.out, EndsWith("  unlimited\n"));
  r = Run({"services", "register", "--name", "svc-b", "--url", target_->Url("/warmup"),
           "--container-concurrency", "10000"});  // The server's upper bound.
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, EndsWith("  10000\n"));

  r = Run({"services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << r;
  EXPECT_THAT(lines[0], EndsWith("WARM LATENCY  CONCURRENCY"));
  EXPECT_THAT(lines[1], AllOf(StartsWith("lambda "), EndsWith("  1")));
  EXPECT_THAT(lines[2], AllOf(StartsWith("svc-a "), EndsWith("  unlimited")));
  EXPECT_THAT(lines[3], AllOf(StartsWith("svc-b "), EndsWith("  10000")));

  r = Run({"--output", "json", "services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  const auto list = FromJson<v1::ListServicesResponse>(r.out);
  ASSERT_EQ(list.services_size(), 3);
  EXPECT_EQ(list.services(0).container_concurrency(), 1);
  EXPECT_EQ(list.services(1).container_concurrency(), 0);
  EXPECT_EQ(list.services(2).container_concurrency(), 10000);
  EXPECT_THAT(r.out, HasSubstr("\"container_concurrency\": 1,"));
  EXPECT_THAT(r.out, HasSubstr("\"container_concurrency\": 0,"));  // Defaults printed too.

  r = Run({"--output", "json", "services", "register", "--name", "svc-c", "--url",
           target_->Url("/warmup"), "--container-concurrency", "4"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(FromJson<v1::RegisterServiceResponse>(r.out).service().container_concurrency(), 4);

  // Beyond 10000 is the server's INVALID_ARGUMENT, naming the field; nothing is registered.
  r = Run({"services", "register", "--name", "svc-d", "--url", target_->Url("/warmup"),
           "--container-concurrency", "10001"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("service 'svc-d': server error: INVALID_ARGUMENT: "
                               "service.container_concurrency"));
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(Run({"services", "list"}).out, Not(HasSubstr("svc-d")));
}

TEST_F(PrewarmctlTest, ServicesFilesCarryContainerConcurrencyAndAListingRoundTrips) {
  StartServer();
  const std::string yaml = WriteFile("services.yaml", absl::StrCat(R"(services:
  - name: svc-a
    warmup_url: )",
                                                                   target_->Url("/warmup"), R"(
    keep_alive: 90s
    container_concurrency: 8
  - {name: lambda, mode: WARMUP_MODE_DELEGATED, container_concurrency: 1}
)"));
  Result r = Run({"services", "register", "--file", yaml});
  ASSERT_EQ(r.code, 0) << r;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << r;
  EXPECT_THAT(lines[3], AllOf(StartsWith("svc-a "), EndsWith("  8")));
  EXPECT_THAT(lines[4], AllOf(StartsWith("lambda "), EndsWith("  1")));

  const std::string json = WriteFile("more.json", absl::StrCat(R"([
      {"name": "svc-b", "warmup_url": ")",
                                                               target_->Url("/warmup"), R"(",
       "containerConcurrency": 2}])"));
  r = Run({"services", "register", "--file", json});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, EndsWith("  2\n"));

  // A file with a value the server refuses: its message names the field and the entry.
  const std::string bad = WriteFile("bad.json", R"([{"name": "x", "mode": "WARMUP_MODE_DELEGATED",
                                                     "container_concurrency": -3}])");
  r = Run({"services", "register", "--file", bad});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT: service.container_concurrency"));
  EXPECT_THAT(r.err, HasSubstr("(entry 0 of " + bad));

  // What `--output json services list` printed registers again with the same concurrency.
  r = Run({"--output", "json", "services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  const std::string listing = r.out;
  r = Run({"services", "register", "--file", "-"}, listing);
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("Replaced service svc-a."));
  r = Run({"--output", "json", "services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, listing);
  const auto list = FromJson<v1::ListServicesResponse>(r.out);
  ASSERT_EQ(list.services_size(), 3);
  EXPECT_EQ(list.services(0).container_concurrency(), 1);  // lambda
  EXPECT_EQ(list.services(1).container_concurrency(), 8);  // svc-a
  EXPECT_EQ(list.services(2).container_concurrency(), 2);  // svc-b
}

TEST_F(PrewarmctlTest, NoServicesSaysHowToAddOne) {
  StartServer();
  const Result r = Run({"services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("No services registered"));
}

TEST_F(PrewarmctlTest, ServicesRegisterFromJsonYamlStdinAndAListingRoundTrips) {
  StartServer();
  const std::string json =
      WriteFile("services.json", absl::StrCat(R"([
      {"name": "svc-a", "warmup_url": ")",
                                              target_->Url("/warmup"), R"(", "keepAlive": "1m30s"},
      {"name": "svc-b", "warmup_url": ")",
                                              target_->Url("/warmup"), R"(",
       "cold_start_prior": "1500ms"}])"));
  Result r = Run({"services", "register", "--file", json});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Registered service svc-a.\nRegistered service svc-b.\nNAME"));
  EXPECT_THAT(r.out, HasSubstr("1m30s"));
  EXPECT_THAT(r.out, HasSubstr("1.5s"));

  const std::string yaml =
      WriteFile("services.yaml", absl::StrCat(R"(# Two more services.
services:
  - name: svc-c
    warmup_url: ")",
                                              target_->Url("/warmup"), R"("   # quoted
    warmup_method: HEAD
    warmup_timeout: 45
  - {name: lambda, mode: WARMUP_MODE_DELEGATED, keep_alive: 2m}
)"));
  r = Run({"--output", "json", "services", "register", "--file", yaml});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("[\n{"));
  auto wrapped = FromJson<v1::ListServicesResponse>(
      absl::StrCat("{\"services\": [", "]}"));  // Shape check below parses each object.
  (void)wrapped;
  google::protobuf::Value parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  ASSERT_EQ(parsed.list_value().values_size(), 2);

  r = Run({"--output", "json", "services", "list"});
  ASSERT_EQ(r.code, 0) << r;
  const auto list = FromJson<v1::ListServicesResponse>(r.out);
  ASSERT_EQ(list.services_size(), 4);
  EXPECT_EQ(list.services(0).name(), "lambda");
  EXPECT_EQ(list.services(0).keep_alive().seconds(), 120);
  EXPECT_EQ(list.services(2).name(), "svc-b");
  EXPECT_EQ(list.services(2).cold_start_prior().nanos(), 500'000'000);
  EXPECT_EQ(list.services(3).warmup_method(), "HEAD");
  EXPECT_EQ(list.services(3).warmup_timeout().seconds(), 45);

  // What `--output json services list` printed registers again, here from stdin.
  const std::string listing = r.out;
  r = Run({"services", "register", "--file", "-"}, listing);
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("Replaced service svc-c."));
}

TEST_F(PrewarmctlTest, ServicesFileErrorsNameTheEntry) {
  StartServer();
  const std::string yaml = WriteFile("bad.yaml", "services:\n  - name: a\n    wamup_url: x\n");
  Result r = Run({"services", "register", "--file", yaml});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_THAT(r.err, HasSubstr("bad.yaml: services[0]"));
  EXPECT_THAT(r.err, HasSubstr("wamup_url"));
  const std::string tabs = WriteFile("tabs.yaml", "services:\n\t- name: a\n");
  r = Run({"services", "register", "--file", tabs});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_THAT(r.err, HasSubstr("line 2: tab in indentation"));
}

TEST_F(PrewarmctlTest, ARefusedServiceIsAServerErrorNamingItAndWhatWasRegistered) {
  StartServer();
  Result r = Run({"services", "register", "--name", "outside", "--url", "http://example.com/w"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("service 'outside': server error: INVALID_ARGUMENT: "));
  const std::string file = WriteFile("two.json", absl::StrCat(R"([
      {"name": "ok", "warmup_url": ")",
                                                              target_->Url("/warmup"), R"("},
      {"name": "outside", "warmup_url": "http://example.com/w"}])"));
  r = Run({"services", "register", "--file", file});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("(entry 1 of " + file + "; 1 service was registered before it)"));
  EXPECT_THAT(Run({"services", "list"}).out, HasSubstr("ok "));
}

// --- Runs ----------------------------------------------------------------------------------------

TEST_F(PrewarmctlTest, RunSubmitPrintsThePlanTableWithRelativeAndAbsoluteTimes) {
  StartServer();
  RegisterManaged("svc-a");
  RegisterManaged("svc-b");
  RegisterManaged("svc-c");
  Result r = Run({"run", "submit", "--file", ChainFile(), "--start-in", "60s"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Submitted run run-1.\nRun:       run-1\nWorkflow:  etl\n"
                                "Start:     2023-11-14T22:14:20.000Z\n"
                                "Planned:   2023-11-14T22:13:20.000Z (-1m from the start), "
                                "re-planned 0 times\n"));
  EXPECT_THAT(r.out, HasSubstr("Times: relative to the run start, and UTC.\n\nTASK       SERVICE  "
                               "START"));
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 4u);
  const std::vector<std::string> last3(lines.end() - 3, lines.end());
  EXPECT_THAT(lines[lines.size() - 4],
              AllOf(HasSubstr("START UTC"), HasSubstr("WARM-UP UTC"), HasSubstr("COLD START"),
                    HasSubstr("DECISION"), HasSubstr("CONFIDENCE"), HasSubstr("WARM-UP STATE"),
                    HasSubstr("TASK STATE"), HasSubstr("OUTCOME"), HasSubstr("STARTED"),
                    HasSubstr("REASON")));
  EXPECT_THAT(last3[0],
              StartsWith("extract    svc-a    +0s    22:14:20.000  -2s      22:14:18.000"));
  EXPECT_THAT(last3[0], HasSubstr(" warm "));  // Submitted ahead: the root is warmed too.
  EXPECT_THAT(last3[0], HasSubstr(" pending "));
  EXPECT_THAT(last3[1], StartsWith("transform  svc-b    +"));
  EXPECT_THAT(last3[2], StartsWith("load       svc-c    +"));

  // `plan` shows the same plan; json is the GetPlanResponse.
  r = Run({"plan", "run-1"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Run:       run-1\n"));
  EXPECT_THAT(r.out, HasSubstr(last3[0]));
  r = Run({"plan", "run-1", "--output", "json"});
  ASSERT_EQ(r.code, 0) << r;
  const auto plan = FromJson<v1::GetPlanResponse>(r.out);
  EXPECT_EQ(plan.plan().run_id(), "run-1");
  ASSERT_EQ(plan.plan().tasks_size(), 3);
  EXPECT_EQ(plan.plan().tasks(0).decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_THAT(r.out, HasSubstr("\"decision\": \"WARMUP_DECISION_WARM\""));
}

TEST_F(PrewarmctlTest, RunSubmitJsonDryRunAndOverrides) {
  StartServer();
  Result r =
      Run({"--output=json", "run", "submit", "--file", ChainFile(), "--run-id", "other",
           "--start-time", "2023-11-14T23:00:00+01:00", "--delay-cost-ratio", "5", "--dry-run"});
  ASSERT_EQ(r.code, 0) << r;
  const auto response = FromJson<v1::PrewarmResponse>(r.out);
  EXPECT_EQ(response.plan().run_id(), "other");
  EXPECT_EQ(response.plan().start_time().seconds(),
            absl::ToUnixSeconds(
                absl::FromCivil(absl::CivilSecond(2023, 11, 14, 22, 0, 0), absl::UTCTimeZone())));
  EXPECT_EQ(server_->registry().active_runs(), 0);  // Dry run: nothing kept.

  r = Run({"run", "submit", "--file", ChainFile("run-2"), "--dry-run"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Dry run: the plan below was computed; nothing fires"));
  EXPECT_EQ(server_->registry().active_runs(), 0);

  // YAML from stdin, starting now: the first task cannot be warmed in time.
  r = Run({"run", "submit", "--file", "-"}, R"(
run_id: run-3
workflow_id: etl
tasks:
- task_id: only
  service: svc-a
)");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("Start:     2023-11-14T22:13:20.000Z"));
  EXPECT_EQ(server_->registry().active_runs(), 1);

  // The same run id again is the server's ALREADY_EXISTS.
  r = Run({"run", "submit", "--file", "-"}, "{\"run_id\": \"run-3\", \"tasks\": []}");
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("run 'run-3': server error: ALREADY_EXISTS: "));
}

TEST_F(PrewarmctlTest, ReportsReplanAndCancelDropsThePendingWarmups) {
  StartServer();
  RegisterManaged("svc-a");
  RegisterManaged("svc-b");
  RegisterManaged("svc-c");
  ASSERT_EQ(Run({"run", "submit", "--file", ChainFile(), "--start-in", "60s"}).code, 0);

  // Past extract's warm-up (due 2 s before the start): the server's timer thread fires it while
  // this thread goes on, so wait until it has been answered, or whether the report below finds it
  // fired or still pending (and cancels it) would be a race.
  clock_.Advance(absl::Seconds(60));
  ASSERT_TRUE(target_->WaitForRequests("/warmup", 1, kPatience));
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(Run({"plan", "run-1"}).out, "1 ready"); }));
  Result r = Run({"run", "report", "run-1", "extract", "started"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Reported started for task extract of run run-1.\n"));

  clock_.Advance(absl::Seconds(1));
  r = Run({"run", "report", "run-1", "extract", "invoked", "--cold", "true", "--cold-start", "1.2s",
           "--output", "json"});
  ASSERT_EQ(r.code, 0) << r;
  (void)FromJson<v1::ReportTimingResponse>(r.out);

  clock_.Advance(absl::Seconds(3));
  r = Run({"run", "report", "run-1", "extract", "finished", "--time", "2023-11-14T22:14:24Z"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("Re-planned "));
  EXPECT_THAT(r.out, HasSubstr("START UTC"));
  EXPECT_THAT(r.out, HasSubstr("transform  svc-b    2023-11-14T22:14:"));
  EXPECT_THAT(r.out, Not(HasSubstr("The run is complete")));

  r = Run({"plan", "run-1"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("extract    svc-a    +0s"));
  EXPECT_THAT(r.out, HasSubstr("succeeded"));
  EXPECT_THAT(r.out, HasSubstr("miss"));  // Reported cold.

  r = Run({"stats", "svc-a"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Service:      svc-a\n"));
  EXPECT_THAT(r.out, HasSubstr("Task starts:  0 hit, 1 miss, 0 late (hit rate 0%)"));
  // 4 s from start to finish, 1.2 s of it the cold start.
  EXPECT_THAT(r.out, HasSubstr("task duration  1        2.8s"));
  EXPECT_THAT(r.out, HasSubstr("cold start     1        1.2s"));
  r = Run({"--output", "json", "stats", "svc-a"});
  ASSERT_EQ(r.code, 0) << r;
  const auto stats = FromJson<v1::GetServiceStatsResponse>(r.out);
  EXPECT_EQ(stats.miss_count(), 1);
  EXPECT_EQ(stats.cold_start().sample_count(), 1);

  r = Run({"run", "cancel", "run-1"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("Cancelled run run-1: "));
  EXPECT_THAT(r.out, HasSubstr(" pending warm-up"));
  EXPECT_EQ(server_->registry().active_runs(), 0);
  // The retired run's final plan stays readable.
  r = Run({"plan", "run-1"});
  ASSERT_EQ(r.code, 0) << r;
  // Extract's warm-up had fired; load's was pending (transform's was dropped as too late).
  EXPECT_THAT(r.out, HasSubstr("(1 cancelled, 1 ready)"));
  r = Run({"run", "cancel", "run-1"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("server error: NOT_FOUND: "));
}

TEST_F(PrewarmctlTest, TheLastEventRetiresTheRun) {
  StartServer();
  ASSERT_EQ(
      Run({"run", "submit", "--file", "-"},
          R"({"run_id": "r", "workflow_id": "w", "tasks": [{"task_id": "t", "service": "s"}]})")
          .code,
      0);
  EXPECT_EQ(server_->registry().active_runs(), 1);
  Result r = Run({"run", "report", "r", "t", "skipped"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("The run is complete"));
  EXPECT_EQ(server_->registry().active_runs(), 0);
  r = Run({"--output", "json", "run", "cancel", "r"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_EQ(r.out, "");
}

TEST_F(PrewarmctlTest, UnknownRunsAndTasksAreServerErrorsWithCodeAndMessage) {
  StartServer();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"plan", "nope"},
                                             {"run", "cancel", "nope"},
                                             {"run", "report", "nope", "t", "started"},
                                             {"--output", "json", "plan", "nope"}}) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    const Result r = Run(args);
    EXPECT_EQ(r.code, 4) << r;
    EXPECT_THAT(r.err, StartsWith("prewarmctl: server error: NOT_FOUND: "));
    EXPECT_THAT(r.err, HasSubstr("nope"));
    EXPECT_EQ(r.out, "");
  }
}

// --- Watch and delegated warm-ups ----------------------------------------------------------------

TEST_F(PrewarmctlTest, WatchPrintsDelegatedWarmupsAndWarmupReportAnswersThem) {
  StartServer();
  ASSERT_EQ(Run({"services", "register", "--name", "lambda", "--mode", "delegated"}).code, 0);

  Background watcher(this, {"--output", "json", "watch", "--service", "lambda", "--count", "1"});
  ASSERT_TRUE(WaitFor([&] { return server_->delegated().subscribers() == 1; }));
  // The task starts in 1 s and the cold-start prior is longer: the warm-up is due at once.
  const Result submitted = Run({"run", "submit", "--file", "-", "--start-in", "1s"},
                               R"({"run_id": "run-1", "workflow_id": "wf",
                                   "tasks": [{"task_id": "x", "service": "lambda"}]})");
  ASSERT_EQ(submitted.code, 0) << submitted;
  const Result watched = watcher.Join();
  ASSERT_EQ(watched.code, 0) << watched;
  EXPECT_THAT(watched.err, HasSubstr("Watching warm-ups of delegated service(s) lambda"));
  std::vector<std::string> lines = absl::StrSplit(watched.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << watched;  // One compact JSON object per line.
  const auto instruction = FromJson<v1::WatchWarmupsResponse>(lines[0]);
  EXPECT_EQ(instruction.service(), "lambda");
  EXPECT_EQ(instruction.run_id(), "run-1");
  EXPECT_EQ(instruction.task_id(), "x");
  ASSERT_FALSE(instruction.warmup_id().empty());

  Result r = Run({"warmup", "report", instruction.warmup_id(), "ok", "--latency", "1.5s"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, absl::StrCat("Reported warm-up ", instruction.warmup_id(), ": ok in 1.5s.\n"));
  r = Run({"plan", "run-1"});
  EXPECT_THAT(r.out, HasSubstr(" ready "));
  r = Run({"warmup", "report", instruction.warmup_id(), "ok"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT: latency"));  // The server's rule.
  r = Run({"warmup", "report", instruction.warmup_id(), "failed", "--error", "x"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
}

TEST_F(PrewarmctlTest, WatchPrintsOneLinePerInstruction) {
  StartServer();
  ASSERT_EQ(Run({"services", "register", "--name", "lambda", "--mode", "delegated"}).code, 0);
  Background watcher(this, {"watch", "--count", "2"});
  ASSERT_TRUE(WaitFor([&] { return server_->delegated().subscribers() == 1; }));
  for (const char* run : {"run-1", "run-2"}) {
    ASSERT_EQ(
        Run({"run", "submit", "--file", "-", "--start-in", "1s"},
            absl::StrCat(
                R"({"run_id": ")", run,
                R"(", "workflow_id": "wf", "tasks": [{"task_id": "x", "service": "lambda"}]})"))
            .code,
        0);
  }
  const Result watched = watcher.Join();
  ASSERT_EQ(watched.code, 0) << watched;
  std::vector<std::string> lines = absl::StrSplit(watched.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << watched;
  EXPECT_THAT(lines[0], StartsWith("2023-11-14T22:13:"));
  EXPECT_THAT(lines[0], HasSubstr(" lambda run=run-1 task=x start=2023-11-14T22:13:21.000Z id="));
  EXPECT_THAT(lines[1], HasSubstr(" lambda run=run-2 task=x "));
}

TEST_F(PrewarmctlTest, WatchEndsCleanlyWhenInterrupted) {
  StartServer();
  Background watcher(this, {"watch"});
  ASSERT_TRUE(
      WaitFor([&] { return interrupter_.Armed() && server_->delegated().subscribers() == 1; }));
  EXPECT_TRUE(interrupter_.Trigger());
  const Result watched = watcher.Join();
  EXPECT_EQ(watched.code, 0) << watched;
  EXPECT_THAT(watched.err, HasSubstr("every delegated service"));
  EXPECT_EQ(watched.out, "");
  EXPECT_TRUE(WaitFor([&] { return server_->delegated().subscribers() == 0; }));
  EXPECT_FALSE(interrupter_.Trigger());  // Nothing armed any more: main would exit.
}

// --- Health, connection errors, security ---------------------------------------------------------

TEST_F(PrewarmctlTest, HealthSaysServing) {
  StartServer();
  Result r = Run({"health"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, absl::StrCat("prewarm.v1.PrewarmService at ", address_, ": SERVING\n"));
  r = Run({"--output", "json", "health", "--service", ""});
  ASSERT_EQ(r.code, 0) << r;
  google::protobuf::Value v = FromJson<google::protobuf::Value>(r.out);
  EXPECT_EQ(v.struct_value().fields().at("status").string_value(), "SERVING");
  r = Run({"health", "--service", "no.such.Service"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
}

TEST_F(PrewarmctlTest, AClosedPortIsAConnectionError) {
  ClosedPort closed;
  address_ = closed.address();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"services", "list"}, {"plan", "r"}, {"health"}, {"watch"}, {"stats", "s"}}) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    // UNAVAILABLE is retried until the deadline: a short one keeps the test quick.
    std::vector<std::string> with_timeout = {"--timeout", "200ms"};
    with_timeout.insert(with_timeout.end(), args.begin(), args.end());
    const Result r = Run(with_timeout);
    EXPECT_EQ(r.code, 3) << r;
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot reach prewarmd at ", closed.address(),
                                              ": UNAVAILABLE: ")));
    EXPECT_THAT(r.err, HasSubstr("--server or PREWARM_SERVER"));
  }
  // --server wins over PREWARM_SERVER.
  StartServer();
  const std::string live = address_;
  address_ = closed.address();
  const Result r = Run({"--server", live, "health"});
  EXPECT_EQ(r.code, 0) << r;
}

// Issue 14: while prewarmd restarts, or a standby takes over, calls fail with UNAVAILABLE for a
// moment; prewarmctl retries them with backoff within its --timeout.
TEST_F(PrewarmctlTest, UnavailableIsRetriedWithBackoffWithinTheTimeout) {
  StartServer();
  RegisterManaged("svc-a");
  const int port = server_->grpc_port();
  ASSERT_TRUE(server_->Shutdown().ok());
  server_.reset();
  options_.grpc_address = absl::StrCat("127.0.0.1:", port);
  std::unique_ptr<Server> again;
  std::thread restart([&] {
    absl::SleepFor(absl::Milliseconds(300));  // prewarmctl meets a closed port first.
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options_, clock_);
    if (server.ok()) again = *std::move(server);
  });
  const Result r = Run({"--timeout", "30s", "services", "list"});
  restart.join();
  server_ = std::move(again);
  ASSERT_NE(server_, nullptr);
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("svc-a"));
}

TEST_F(PrewarmctlTest, BearerTokenComesFromTheTokenFile) {
  options_.bearer_token = "s3cret";
  StartServer();
  Result r = Run({"services", "list"});
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED"));
  const std::string token = WriteFile("token", "s3cret\n");
  r = Run({"--token-file", token, "services", "list"});
  EXPECT_EQ(r.code, 0) << r;
  r = Run({"services", "list", "--token-file", WriteFile("wrong", "nope")});
  EXPECT_EQ(r.code, 4) << r;
  r = Run({"--token-file", WriteFile("empty", "\n"), "services", "list"});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_THAT(r.err, HasSubstr("is empty"));
}

TEST_F(PrewarmctlTest, TlsWithTheServersCertificateAsCa) {
  const std::string cert = dir_ + "/cert.pem";
  const std::string key = dir_ + "/key.pem";
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
      key, " -out ", cert, " >/dev/null 2>&1");
  if (std::system(command.c_str()) != 0) GTEST_SKIP() << "openssl cannot make a certificate";
  options_.tls_cert_file = cert;
  options_.tls_key_file = key;
  StartServer();
  Result r = Run({"--ca-cert", cert, "health"});
  EXPECT_EQ(r.code, 0) << r;
  r = Run({"--ca-cert", cert, "--tls-server-name", "localhost", "services", "list"});
  EXPECT_EQ(r.code, 0) << r;
  r = Run({"--timeout", "5s", "health"});  // Plaintext against TLS: no connection.
  EXPECT_EQ(r.code, 3) << r;
  r = Run({"--tls", "--timeout", "5s", "health"});  // System roots do not trust it.
  EXPECT_EQ(r.code, 3) << r;
}

// --- The binary ----------------------------------------------------------------------------------

// Runs the real prewarmctl with `args`; PREWARM_SERVER is `server` when not empty.
Result Exec(const std::vector<std::string>& args, const std::string& server,
            const std::string& dir) {
  const std::string out_path = dir + "/exec.out";
  const std::string err_path = dir + "/exec.err";
  std::vector<std::string> argv_storage = {PREWARMCTL_BINARY};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string env_server = "PREWARM_SERVER=" + server;
  std::vector<char*> envp;
  if (!server.empty()) envp.push_back(env_server.data());
  envp.push_back(nullptr);
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const pid_t pid = fork();
  if (pid == 0) {  // Only async-signal-safe calls until exec.
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(out_fd);
  close(err_fd);
  int status = 0;
  waitpid(pid, &status, 0);
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::stringstream out;
  out << std::ifstream(out_path).rdbuf();
  r.out = out.str();
  std::stringstream err;
  err << std::ifstream(err_path).rdbuf();
  r.err = err.str();
  return r;
}

TEST_F(PrewarmctlTest, TheBinaryExitsWithTheDocumentedCodes) {
  StartServer();
  Result r = Exec({"--help"}, "", dir_);
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));
  r = Exec({"--version"}, "", dir_);
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("prewarmctl "));
  r = Exec({"explode"}, address_, dir_);
  EXPECT_EQ(r.code, 2) << r;
  r = Exec({"health"}, address_, dir_);  // PREWARM_SERVER is read.
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("SERVING"));
  r = Exec({"plan", "no-such-run"}, address_, dir_);
  EXPECT_EQ(r.code, 4) << r;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  ClosedPort closed;
  r = Exec({"--server", closed.address(), "services", "list"}, address_, dir_);
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
}

// --- The pieces ----------------------------------------------------------------------------------

TEST(PrewarmctlInputFilesTest, RunFilesAcceptFriendlyDurationsAndRejectUnknownFields) {
  absl::StatusOr<v1::PrewarmRequest> run = ParseRun(
      "run_id: r\nstart_time: '2024-05-01T12:00:00Z'\ndelay_cost_ratio: 20\n"
      "tasks: [{task_id: a, service: s, upstream_task_ids: []}]\n",
      FileFormat::kDetect, "dag.yaml");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->run_id(), "r");
  EXPECT_EQ(run->delay_cost_ratio(), 20);
  EXPECT_EQ(run->tasks(0).service(), "s");
  EXPECT_EQ(run->start_time().seconds(), 1714564800);

  absl::StatusOr<std::vector<v1::Service>> services = ParseServices(
      R"({"name": "s", "keep_alive": 90, "warmup_timeout": "1m", "cold_start_prior": "250ms"})",
      FileFormat::kJson, "s.json");
  ASSERT_TRUE(services.ok()) << services.status();
  ASSERT_EQ(services->size(), 1u);
  EXPECT_EQ((*services)[0].keep_alive().seconds(), 90);
  EXPECT_EQ((*services)[0].warmup_timeout().seconds(), 60);
  EXPECT_EQ((*services)[0].cold_start_prior().nanos(), 250'000'000);
  EXPECT_EQ((*services)[0].container_concurrency(), 0);
  services =
      ParseServices("- {name: a, container_concurrency: 1}\n- {name: b, containerConcurrency: 8}\n",
                    FileFormat::kYaml, "s.yaml");
  ASSERT_TRUE(services.ok()) << services.status();
  ASSERT_EQ(services->size(), 2u);
  EXPECT_EQ((*services)[0].container_concurrency(), 1);
  EXPECT_EQ((*services)[1].container_concurrency(), 8);
  EXPECT_THAT(ParseServices(R"({"name": "a", "container_concurrency": "many"})", FileFormat::kJson,
                            "s.json")
                  .status()
                  .message(),
              HasSubstr("s.json"));

  EXPECT_THAT(ParseServices("[]", FileFormat::kJson, "s.json").status().message(),
              HasSubstr("no services"));
  EXPECT_THAT(
      ParseServices("{\"services\": [], \"x\": 1}", FileFormat::kJson, "s.json").status().message(),
      HasSubstr("unknown key 'x'"));
  EXPECT_THAT(
      ParseServices("[{\"name\": \"a\"}, 3]", FileFormat::kJson, "s.json").status().message(),
      HasSubstr("s.json: [1]: expected an object"));
  EXPECT_EQ(FormatFromPath("a.YML"), FileFormat::kYaml);
  EXPECT_EQ(FormatFromPath("a.json"), FileFormat::kJson);
  EXPECT_EQ(FormatFromPath("-"), FileFormat::kDetect);
}

TEST(PrewarmctlRenderTest, TimesDurationsEnumsAndTables) {
  const absl::Time t = absl::FromUnixSeconds(1'700'000'000);
  EXPECT_EQ(FormatUtc(t + absl::Milliseconds(5)), "2023-11-14T22:13:20.005Z");
  EXPECT_EQ(FormatOffset(t + absl::Milliseconds(62'500), t), "+1m2.5s");
  EXPECT_EQ(FormatOffset(t - absl::Milliseconds(300), t), "-300ms");
  EXPECT_EQ(FormatOffset(t, t), "+0s");
  EXPECT_EQ(FormatSpan(absl::Microseconds(1'234'567)), "1.235s");
  EXPECT_EQ(EnumLabel(v1::WarmupDecision_descriptor(), v1::WARMUP_DECISION_SKIP_TOO_LATE),
            "skip-too-late");
  EXPECT_EQ(EnumLabel(v1::TaskOutcome_descriptor(), v1::TASK_OUTCOME_UNSPECIFIED), "-");
  TextTable table({"A", "BB", "C"});
  table.AddRow({"long", "x", "last column is not padded"});
  EXPECT_EQ(table.Render(), "A     BB  C\nlong  x   last column is not padded\n");
  EXPECT_EQ(*ParseDurationArg("2.5", "--x"), absl::Milliseconds(2500));
  EXPECT_EQ(*ParseDurationArg("1m30s", "--x"), absl::Seconds(90));
  EXPECT_EQ(FromProto(ToProto(t - absl::Nanoseconds(1))), t - absl::Nanoseconds(1));
  EXPECT_EQ(FromProto(ToProto(-absl::Milliseconds(1500))), -absl::Milliseconds(1500));
}

TEST(PrewarmctlRenderTest, ServicesTableEndsWithConcurrencyUnlimitedForZero) {
  v1::ListServicesResponse list;
  v1::Service* a = list.add_services();
  a->set_name("a");
  a->set_mode(v1::WARMUP_MODE_DELEGATED);
  *a->mutable_keep_alive() = ToProto(absl::Seconds(60));
  a->set_container_concurrency(1);
  v1::Service* b = list.add_services();
  b->set_name("b");
  b->set_warmup_url("http://127.0.0.1:1/w");
  b->set_warmup_method("GET");
  EXPECT_EQ(RenderServices(list),
            "NAME  MODE       WARM-UP URL           METHOD  TIMEOUT  KEEP-ALIVE  COLD-START PRIOR  "
            "WARM LATENCY  CONCURRENCY\n"
            "a     delegated  -                     -       -        1m          -                 "
            "-             1\n"
            "b     managed    http://127.0.0.1:1/w  GET     -        -           -                 "
            "-             unlimited\n");
}

TEST(PrewarmctlCommandLineTest, FlagsSwitchesPositionalsAndTheEndOfFlags) {
  const FlagSpec name{"name", "NAME", ""};
  const FlagSpec dry{"dry-run", "", ""};
  const FlagSpec service{"service", "S", "", true};
  ParsedArgs parsed;
  size_t next = 0;
  ASSERT_TRUE(ParseFlags({"x", "--name=a", "pos", "--dry_run", "--service", "s1", "--service=s2",
                          "--", "--not-a-flag"},
                         1, {&name, &dry, &service}, false, parsed, &next)
                  .ok());
  EXPECT_EQ(parsed.Get("name"), "a");
  EXPECT_TRUE(parsed.GetSwitch("dry-run"));
  EXPECT_THAT(parsed.GetAll("service"), ElementsAre("s1", "s2"));
  EXPECT_THAT(parsed.positionals, ElementsAre("pos", "--not-a-flag"));
  EXPECT_EQ(next, 9u);
  ParsedArgs twice;
  EXPECT_THAT(ParseFlags({"x", "--name=a", "--name=b"}, 1, {&name}, false, twice, &next).message(),
              HasSubstr("--name given more than once"));
}

}  // namespace
}  // namespace prewarm::ctl
