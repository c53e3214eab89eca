#pragma once

#include <cstdio>
#include <cstdlib>

// Abseil 20220623 has no logging library; this is the one assertion prewarm needs. It is for
// broken invariants only (programming errors): bad input is reported with absl::Status.
#define PREWARM_CHECK(condition, message)                                                   \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", __FILE__, __LINE__, #condition, \
                   message);                                                                \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)
