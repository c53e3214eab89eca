#include "tests/fakes/fake_http_target.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace prewarm::testing {
namespace {

// Request heads beyond this are refused: tests never send one, and it bounds memory.
constexpr size_t kMaxHeadBytes = 64 * 1024;

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::abort();
}

// Binds a TCP socket to 127.0.0.1 on an ephemeral port; returns the fd and fills `port`.
int BindLoopback(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) Die("bind");
  socklen_t length = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) Die("getsockname");
  *port = ntohs(address.sin_port);
  return fd;
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t sent = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    data.remove_prefix(static_cast<size_t>(sent));
  }
  return true;
}

// Reads until the head (request line and headers) is complete, then the body announced by
// Content-Length, which is dropped. Returns the head, or empty on EOF, error or oversize.
std::string ReadRequest(int fd) {
  std::string data;
  char buffer[4096];
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    if (data.size() > kMaxHeadBytes) return "";
    ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return "";
    data.append(buffer, static_cast<size_t>(got));
  }
  std::string head = data.substr(0, head_end);
  size_t body_length = 0;
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    if (absl::StartsWithIgnoreCase(line, "content-length:")) {
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &body_length)) return "";
    }
  }
  size_t have = data.size() - head_end - 4;
  while (have < body_length) {
    ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return "";
    have += static_cast<size_t>(got);
  }
  return head;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 307:
      return "Temporary Redirect";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

}  // namespace

std::unique_ptr<FakeHttpTarget> FakeHttpTarget::Start() {
  int port = 0;
  int fd = BindLoopback(&port);
  if (listen(fd, 1024) != 0) Die("listen");
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) Die("pipe2");
  // Not make_unique: the constructor is private.
  std::unique_ptr<FakeHttpTarget> target(new FakeHttpTarget(fd, port, pipe_fds[0], pipe_fds[1]));
  target->accept_thread_ = std::thread([t = target.get()] { t->AcceptLoop(); });
  return target;
}

FakeHttpTarget::FakeHttpTarget(int listen_fd, int port, int wake_read_fd, int wake_write_fd)
    : listen_fd_(listen_fd),
      port_(port),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd) {}

FakeHttpTarget::~FakeHttpTarget() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;                                  // wakes delayed answers
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);  // wakes blocked reads
  }
  char byte = 0;
  while (write(wake_write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  accept_thread_.join();
  std::map<uint64_t, std::thread> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (auto& [id, thread] : connections) thread.join();
  close(listen_fd_);
  close(wake_read_fd_);
  close(wake_write_fd_);
}

std::string FakeHttpTarget::Url(absl::string_view path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

void FakeHttpTarget::SetRoute(absl::string_view path, Route route) {
  absl::MutexLock lock(&mu_);
  routes_[path].route = std::move(route);
}

void FakeHttpTarget::Reset() {
  absl::MutexLock lock(&mu_);
  for (auto& [path, state] : routes_) state = RouteState{.route = std::move(state.route)};
  stats_.clear();
  total_requests_ = 0;
}

int FakeHttpTarget::requests(absl::string_view path) const {
  absl::MutexLock lock(&mu_);
  auto it = stats_.find(path);
  return it == stats_.end() ? 0 : it->second.count;
}

std::vector<std::string> FakeHttpTarget::methods(absl::string_view path) const {
  absl::MutexLock lock(&mu_);
  auto it = stats_.find(path);
  return it == stats_.end() ? std::vector<std::string>() : it->second.methods;
}

int FakeHttpTarget::total_requests() const {
  absl::MutexLock lock(&mu_);
  return total_requests_;
}

bool FakeHttpTarget::WaitForRequests(absl::string_view path, int n, absl::Duration timeout) const {
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = stats_.find(path);
    return it != stats_.end() && it->second.count >= n;
  };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

int FakeHttpTarget::UnusedPort() {
  int port = 0;
  int fd = BindLoopback(&port);
  close(fd);
  return port;
}

void FakeHttpTarget::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
    // The timeout only bounds how long finished connection threads wait to be joined.
    int ready = poll(fds, 2, 100);
    JoinFinished();
    if (ready < 0 && errno != EINTR) Die("poll");
    if (fds[1].revents != 0) return;
    if (ready <= 0 || fds[0].revents == 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client gave up, or a transient error
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    uint64_t id = next_id_++;
    open_fds_.push_back(fd);
    connections_.emplace(id, std::thread([this, fd, id] { Serve(fd, id); }));
  }
}

void FakeHttpTarget::JoinFinished() {
  std::vector<std::thread> done;
  {
    absl::MutexLock lock(&mu_);
    for (uint64_t id : finished_) {
      auto it = connections_.find(id);
      if (it == connections_.end()) continue;
      done.push_back(std::move(it->second));
      connections_.erase(it);
    }
    finished_.clear();
  }
  for (std::thread& thread : done) thread.join();
}

void FakeHttpTarget::Serve(int fd, uint64_t id) {
  std::string head = ReadRequest(fd);
  std::string method;
  std::string path;
  if (!head.empty()) {
    std::vector<std::string> request_line = absl::StrSplit(head.substr(0, head.find("\r\n")), ' ');
    if (request_line.size() == 3) {
      method = request_line[0];
      path = request_line[1].substr(0, request_line[1].find('?'));
    }
  }

  Route route{.status = 404};
  absl::Time answer_at = absl::Now();
  bool answer = !path.empty();
  if (answer) {
    absl::MutexLock lock(&mu_);
    PathStats& stats = stats_[path];
    ++stats.count;
    stats.methods.push_back(method);
    ++total_requests_;
    auto it = routes_.find(path);
    if (it != routes_.end()) {
      RouteState& state = it->second;
      route = state.route;
      absl::Time now = absl::Now();
      if (state.failures_served < route.fail_first_n) {
        ++state.failures_served;
        route = Route{.status = 503};
      } else {
        if (route.cold_start > absl::ZeroDuration() &&
            (!state.started || now - state.last_request > route.idle_timeout)) {
          state.started = true;
          state.ready_at = now + route.cold_start;
        }
        state.last_request = now;
        answer_at = std::max(now, state.ready_at) + route.delay;
      }
    }
    // Sleeps until the answer is due, waking early only to shut down.
    while (!stopping_ && absl::Now() < answer_at) {
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), answer_at);
    }
    answer = !stopping_ && !route.close_without_response;
  }

  if (answer) {
    std::string response =
        absl::StrCat("HTTP/1.1 ", route.status, " ", Reason(route.status),
                     "\r\nContent-Length: ", route.body_bytes, "\r\nConnection: close\r\n");
    if (!route.location.empty()) absl::StrAppend(&response, "Location: ", route.location, "\r\n");
    absl::StrAppend(&response, "\r\n");
    if (method != "HEAD") response.append(route.body_bytes, 'x');
    SendAll(fd, response);
    // Half-close, then drain, so that the client reads the whole answer before the reset
    // that closing a socket with unread input would cause.
    shutdown(fd, SHUT_WR);
    char buffer[1024];
    while (recv(fd, buffer, sizeof(buffer), 0) > 0) {
    }
  }

  absl::MutexLock lock(&mu_);
  open_fds_.erase(std::find(open_fds_.begin(), open_fds_.end(), fd));
  close(fd);
  finished_.push_back(id);
}

}  // namespace prewarm::testing
