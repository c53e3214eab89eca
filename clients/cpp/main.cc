// prewarmctl: the command line of prewarm. All logic is in prewarmctl_lib (RunPrewarmctl); this
// file only wires the process to it: arguments, PREWARM_SERVER, stdio and Ctrl-C.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "clients/cpp/prewarmctl.h"
#include "predictor/clock.h"

int main(int argc, char** argv) {
  // Signals are taken by one thread: block them before gRPC starts any. Ctrl-C stops a running
  // `watch` (exit 0) and anything else at once (exit 130, as the shell's default would).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  static prewarm::ctl::Interrupter interrupter;
  std::thread([signals] {
    while (true) {
      int signal = 0;
      if (sigwait(&signals, &signal) != 0) continue;
      if (!interrupter.Trigger()) _exit(128 + signal);
    }
  }).detach();

  prewarm::ctl::Environment env;
  if (const char* server = std::getenv("PREWARM_SERVER"); server != nullptr && *server != '\0') {
    env.server = server;
  }
  env.clock = &prewarm::Clock::Real();
  env.stdin_stream = &std::cin;
  env.interrupter = &interrupter;
  const int code = prewarm::ctl::RunPrewarmctl(std::vector<std::string>(argv, argv + argc), env,
                                               std::cout, std::cerr);
  std::cout.flush();
  return code;
}
