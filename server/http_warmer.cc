#include "server/http_warmer.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "predictor/check.h"
#include "predictor/random.h"

namespace prewarm {
namespace {

// Warm-up responses are not read; a body beyond this aborts the transfer so that a misbehaving
// target cannot keep a slot busy streaming.
constexpr size_t kMaxBodyBytes = 64 * 1024;
// The loop re-reads the clock at least this often, so backoff timers follow an injected clock
// even when nothing else wakes the loop.
constexpr absl::Duration kMaxPollWait = absl::Seconds(1);
// libcurl takes timeouts as a long of milliseconds; anything longer is clamped to this.
constexpr absl::Duration kMaxTimeout = absl::Hours(24);

// One request from Fire() to its callback, across attempts.
struct Job {
  WarmupRequest request;
  std::function<void(const WarmupResult&)> done;
  absl::Duration fired_at;  // monotonic
  WarmupResult result;
  // Of the current attempt.
  size_t body_bytes = 0;
  bool body_capped = false;
  char error_buffer[CURL_ERROR_SIZE] = {};
};

size_t DiscardBody(char* /*data*/, size_t size, size_t count, void* user) {
  auto* job = static_cast<Job*>(user);
  size_t bytes = size * count;
  job->body_bytes += bytes;
  if (job->body_bytes > kMaxBodyBytes) {
    job->body_capped = true;
    return 0;  // libcurl aborts with CURLE_WRITE_ERROR
  }
  return bytes;
}

absl::Status InitCurlOnce() {
  static std::once_flag once;
  static CURLcode code = CURLE_OK;
  std::call_once(once, [] { code = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (code != CURLE_OK) {
    return absl::InternalError(absl::StrCat("curl_global_init: ", curl_easy_strerror(code)));
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const HttpWarmerOptions& options) {
  if (options.max_concurrent < 1) {
    return absl::InvalidArgumentError("http warmer max_concurrent must be >= 1");
  }
  if (options.max_queued < 0) {
    return absl::InvalidArgumentError("http warmer max_queued must be >= 0");
  }
  if (options.initial_backoff < absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff || options.max_backoff > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        "http warmer backoff must satisfy 0 <= initial_backoff <= max_backoff <= 1h");
  }
  if (!(options.backoff_multiplier >= 1 && options.backoff_multiplier <= 100)) {
    return absl::InvalidArgumentError("http warmer backoff_multiplier must be in [1, 100]");
  }
  for (char c : options.user_agent) {
    // A CR or LF would let the header smuggle others.
    if (absl::ascii_iscntrl(c)) {
      return absl::InvalidArgumentError("http warmer user_agent contains a control character");
    }
  }
  return absl::OkStatus();
}

// Why the request cannot be sent; empty when it can. Normalises the method to upper case, and
// an empty one (an unset proto field) to GET.
std::string ValidateRequest(WarmupRequest& request) {
  request.method = request.method.empty() ? "GET" : absl::AsciiStrToUpper(request.method);
  if (request.method != "GET" && request.method != "HEAD" && request.method != "POST") {
    return absl::StrFormat("unsupported method '%s' (GET, HEAD or POST)",
                           absl::CHexEscape(request.method));
  }
  if (request.url.empty()) return "empty url";
  if (request.max_attempts < 1) return "max_attempts must be >= 1";
  if (request.timeout <= absl::ZeroDuration()) return "timeout must be positive";
  return "";
}

bool IsRetryableStatus(int status) { return status == 502 || status == 503 || status == 504; }

// Connection-level failures worth another attempt: the target may be starting up or its
// endpoint may be changing. Timeouts are not among them (see the class comment).
bool IsRetryableError(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      return true;
    default:
      return false;
  }
}

std::string DescribeError(CURLcode code, long os_errno, const Job& job) {
  absl::string_view detail =
      job.error_buffer[0] != '\0' ? job.error_buffer : curl_easy_strerror(code);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::StrCat("timeout after ",
                          absl::FormatDuration(std::min(job.request.timeout, kMaxTimeout)));
    case CURLE_COULDNT_CONNECT:
      if (os_errno == ECONNREFUSED) return "connection refused";
      return absl::StrCat("could not connect: ", detail);
    case CURLE_COULDNT_RESOLVE_HOST:
      return absl::StrCat("DNS failure: ", detail);
    case CURLE_GOT_NOTHING:
      return "connection closed without a response";
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      if (os_errno == ECONNRESET) return "connection reset";
      return absl::StrCat("connection error: ", detail);
    default:
      return std::string(detail);
  }
}

// The libcurl implementation. Thread-safe: Fire() hands requests over under `mu_`; everything
// else (the multi handle, transfers, timers) belongs to the loop thread.
class CurlHttpWarmer final : public HttpWarmer {
 public:
  CurlHttpWarmer(HttpWarmerOptions options, Clock& clock, CURLM* multi)
      : options_(std::move(options)), clock_(clock), multi_(multi), rng_(options_.jitter_seed) {}

  ~CurlHttpWarmer() override {
    Shutdown();
    curl_multi_cleanup(multi_);
  }

  void Start() ABSL_LOCKS_EXCLUDED(join_mu_) {
    absl::MutexLock lock(&join_mu_);
    thread_ = std::thread([this] { Run(); });
  }

  void Fire(WarmupRequest request, std::function<void(const WarmupResult&)> done) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    auto job = std::make_unique<Job>();
    job->fired_at = clock_.MonotonicNow();
    job->result.id = request.id;
    job->request = std::move(request);
    job->done = std::move(done);
    std::string invalid = ValidateRequest(job->request);
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_) {
        in_flight_.fetch_add(1, std::memory_order_relaxed);
        if (!invalid.empty()) {
          job->result.error = std::move(invalid);
          failed_.push_back(std::move(job));
        } else if (queue_.size() >= static_cast<size_t>(options_.max_queued)) {
          job->result.error = "queue full";
          failed_.push_back(std::move(job));
        } else {
          queue_.push_back(std::move(job));
        }
        curl_multi_wakeup(multi_);
        return;
      }
    }
    job->result.error = "shut down";
    job->result.total_time = clock_.MonotonicNow() - job->fired_at;
    job->done(job->result);
  }

  int in_flight() const override { return in_flight_.load(std::memory_order_relaxed); }

  void Shutdown() override ABSL_LOCKS_EXCLUDED(join_mu_, mu_) {
    absl::MutexLock join_lock(&join_mu_);
    if (!thread_.joinable()) return;
    PREWARM_CHECK(std::this_thread::get_id() != thread_.get_id(),
                  "HttpWarmer::Shutdown() called from a done callback");
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      curl_multi_wakeup(multi_);
    }
    thread_.join();
  }

 private:
  // The loop: start what fits, let libcurl move the transfers, finish or reschedule completed
  // attempts, then sleep until a socket, a timer or Fire() wakes it.
  void Run() ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      absl::Duration now = clock_.MonotonicNow();
      while (!retries_.empty() && retries_.begin()->first <= now) {
        ready_.push_back(std::move(retries_.begin()->second));
        retries_.erase(retries_.begin());
      }
      while (!ready_.empty() && active_.size() < static_cast<size_t>(options_.max_concurrent)) {
        std::unique_ptr<Job> job = std::move(ready_.front());
        ready_.pop_front();
        StartAttempt(std::move(job));
      }

      std::vector<std::unique_ptr<Job>> failed;
      std::vector<std::unique_ptr<Job>> starting;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) break;
        failed.swap(failed_);
        size_t free_slots = options_.max_concurrent - active_.size();
        while (free_slots > 0 && !queue_.empty()) {
          starting.push_back(std::move(queue_.front()));
          queue_.pop_front();
          --free_slots;
        }
      }
      for (std::unique_ptr<Job>& job : failed) Complete(std::move(job));
      for (std::unique_ptr<Job>& job : starting) StartAttempt(std::move(job));

      int running = 0;
      curl_multi_perform(multi_, &running);
      bool slot_freed = ReapFinished();

      // A freed slot may let a queued request start: go round again at once.
      absl::Duration wait = slot_freed ? absl::ZeroDuration() : kMaxPollWait;
      if (!retries_.empty()) {
        wait = std::min(wait, retries_.begin()->first - clock_.MonotonicNow());
      }
      wait = std::max(wait, absl::ZeroDuration());
      // libcurl shortens the wait further when one of its own timeouts is due sooner.
      int wait_ms =
          static_cast<int>(absl::Ceil(wait, absl::Milliseconds(1)) / absl::Milliseconds(1));
      curl_multi_poll(multi_, nullptr, 0, wait_ms, nullptr);
    }
    CancelAll();
  }

  void StartAttempt(std::unique_ptr<Job> job) {
    ++job->result.attempts;
    job->body_bytes = 0;
    job->body_capped = false;
    job->error_buffer[0] = '\0';
    CURL* easy = curl_easy_init();
    if (easy == nullptr) {
      job->result.error = "curl_easy_init failed";
      Complete(std::move(job));
      return;
    }
    const WarmupRequest& request = job->request;
    absl::Duration timeout = std::min(request.timeout, kMaxTimeout);
    long timeout_ms = std::max<long>(1, absl::ToInt64Milliseconds(timeout));
    bool ok = true;
    auto set = [&](CURLoption option, auto value) {
      ok = ok && curl_easy_setopt(easy, option, value) == CURLE_OK;
    };
    set(CURLOPT_URL, request.url.c_str());
    set(CURLOPT_PRIVATE, static_cast<void*>(job.get()));
    set(CURLOPT_ERRORBUFFER, job->error_buffer);
    // Outbound safety: the allowlisted URL is the only place we go.
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_PROXY, "");     // ignore http_proxy and friends from the environment
    set(CURLOPT_NOSIGNAL, 1L);  // timeouts must not use signals in a threaded server
    set(CURLOPT_TIMEOUT_MS, timeout_ms);
    set(CURLOPT_USERAGENT, options_.user_agent.c_str());
    set(CURLOPT_WRITEFUNCTION, &DiscardBody);
    set(CURLOPT_WRITEDATA, static_cast<void*>(job.get()));
    if (request.method == "HEAD") {
      set(CURLOPT_NOBODY, 1L);
    } else if (request.method == "POST") {
      set(CURLOPT_POST, 1L);
      set(CURLOPT_POSTFIELDS, "");
      set(CURLOPT_POSTFIELDSIZE, 0L);
    } else {
      set(CURLOPT_HTTPGET, 1L);
    }
    if (!ok || curl_multi_add_handle(multi_, easy) != CURLM_OK) {
      curl_easy_cleanup(easy);
      job->result.error = "could not set up the transfer";
      Complete(std::move(job));
      return;
    }
    active_.emplace(easy, std::move(job));
  }

  // Handles every attempt libcurl reports as done. Returns whether any transfer slot was freed.
  bool ReapFinished() {
    bool freed = false;
    int queued_messages = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &queued_messages)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      CURLcode code = message->data.result;  // `message` dies with the handle
      auto it = active_.find(easy);
      PREWARM_CHECK(it != active_.end(), "libcurl reported a transfer we did not start");
      std::unique_ptr<Job> job = std::move(it->second);
      active_.erase(it);
      freed = true;

      long status = 0;
      curl_off_t total_us = 0;
      long os_errno = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
      curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
      curl_multi_remove_handle(multi_, easy);
      curl_easy_cleanup(easy);
      FinishAttempt(std::move(job), code, static_cast<int>(status), os_errno,
                    absl::Microseconds(total_us));
    }
    return freed;
  }

  void FinishAttempt(std::unique_ptr<Job> job, CURLcode code, int status, long os_errno,
                     absl::Duration latency) {
    WarmupResult& result = job->result;
    result.latency = latency;
    result.http_status = status;
    // A body cut off by us still means the service answered.
    bool answered = code == CURLE_OK || (code == CURLE_WRITE_ERROR && job->body_capped);
    bool retry = false;
    if (answered && status < 400) {
      result.success = true;
      result.error.clear();
    } else if (answered) {
      result.error = absl::StrCat("HTTP ", status);
      retry = IsRetryableStatus(status);
    } else {
      result.error = DescribeError(code, os_errno, *job);
      retry = IsRetryableError(code);
    }
    if (retry && result.attempts < job->request.max_attempts) {
      absl::Duration due = clock_.MonotonicNow() + Backoff(result.attempts);
      retries_.emplace(due, std::move(job));
      return;
    }
    Complete(std::move(job));
  }

  // The wait after `attempts` failed attempts.
  absl::Duration Backoff(int attempts) {
    double seconds = absl::ToDoubleSeconds(options_.initial_backoff) *
                     std::pow(options_.backoff_multiplier, attempts - 1);
    seconds = std::min(seconds, absl::ToDoubleSeconds(options_.max_backoff));
    double jitter = 0.8 + 0.4 * rng_.Uniform();
    return absl::Seconds(seconds * jitter);
  }

  void Complete(std::unique_ptr<Job> job) {
    job->result.total_time = clock_.MonotonicNow() - job->fired_at;
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    job->done(job->result);
  }

  // After the loop stops: every request still held gets its callback.
  void CancelAll() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::unique_ptr<Job>> cancelled;
    for (auto& [easy, job] : active_) {
      curl_multi_remove_handle(multi_, easy);
      curl_easy_cleanup(easy);
      job->result.http_status = 0;  // the attempt in progress got no response
      job->result.latency = absl::ZeroDuration();
      cancelled.push_back(std::move(job));
    }
    active_.clear();
    for (auto& [due, job] : retries_) cancelled.push_back(std::move(job));
    retries_.clear();
    for (std::unique_ptr<Job>& job : ready_) cancelled.push_back(std::move(job));
    ready_.clear();
    std::vector<std::unique_ptr<Job>> failed;
    {
      absl::MutexLock lock(&mu_);
      failed.swap(failed_);
      for (std::unique_ptr<Job>& job : queue_) cancelled.push_back(std::move(job));
      queue_.clear();
    }
    for (std::unique_ptr<Job>& job : failed) Complete(std::move(job));
    for (std::unique_ptr<Job>& job : cancelled) {
      job->result.success = false;
      job->result.error = "shut down";
      Complete(std::move(job));
    }
  }

  const HttpWarmerOptions options_;
  Clock& clock_;
  CURLM* const multi_;  // owned; curl_multi_wakeup() may be called from any thread
  std::atomic<int> in_flight_{0};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Fired, waiting for a transfer slot, in order.
  std::deque<std::unique_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  // Failed in Fire(), to be reported on the loop thread so that `done` never runs inside Fire().
  std::vector<std::unique_ptr<Job>> failed_ ABSL_GUARDED_BY(mu_);

  // Owned by the loop thread.
  absl::flat_hash_map<CURL*, std::unique_ptr<Job>> active_;
  std::multimap<absl::Duration, std::unique_ptr<Job>> retries_;  // by monotonic due time
  std::deque<std::unique_ptr<Job>> ready_;  // retries due, ahead of the queue: fired earlier
  Rng rng_;

  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<HttpWarmer>> HttpWarmer::Create(HttpWarmerOptions options,
                                                               Clock& clock) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  if (absl::Status status = InitCurlOnce(); !status.ok()) return status;
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return absl::InternalError("curl_multi_init failed");
  auto warmer = std::make_unique<CurlHttpWarmer>(std::move(options), clock, multi);
  warmer->Start();
  return warmer;
}

}  // namespace prewarm
