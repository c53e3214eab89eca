"""RetryPolicy: how PrewarmClient retries calls that prewarmd answered UNAVAILABLE.

UNAVAILABLE means the call was not carried out: prewarmd is not reachable (down, restarting, a
connection refused), it is a standby of a replicated deployment (it answers every RPC UNAVAILABLE
until it leads; during a failover the new leader takes over within seconds), or it could not
commit. Retrying it is safe: a repeated ReportTiming of an event already applied is acknowledged
OK, and a Prewarm that did reach a leader before its answer was lost answers ALREADY_EXISTS.
No other status is retried; DEADLINE_EXCEEDED in particular is not (the call may have run).

Backoff is exponential with jitter, so that the clients of many schedulers do not retry in step:
before retry n (1-based) the client sleeps a uniformly random time in [b/2, b] with
b = min(max_backoff, initial_backoff · multiplier^(n-1)). Retries stop at max_attempts, or when
the call's deadline (its `timeout`, which covers all attempts) would pass before the next one.
"""

from __future__ import annotations

import dataclasses
import math
import random


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """max_attempts counts the first attempt too (1: no retry). Spans are seconds."""

    max_attempts: int = 8
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, "
                             f"got {self.max_attempts!r}")
        for name in ("initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0 seconds, got {value!r}")
        if self.max_backoff < self.initial_backoff:
            raise ValueError(f"RetryPolicy.max_backoff ({self.max_backoff!r}) must be >= "
                             f"initial_backoff ({self.initial_backoff!r})")
        if not isinstance(self.multiplier, (int, float)) or not math.isfinite(self.multiplier) \
                or self.multiplier < 1:
            raise ValueError(f"RetryPolicy.multiplier must be >= 1, got {self.multiplier!r}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to sleep before retry number `retry` (1 for the second attempt)."""
        ceiling = min(self.max_backoff,
                      self.initial_backoff * self.multiplier ** min(retry - 1, 64))
        return rng.uniform(ceiling / 2, ceiling)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)

__all__ = ["RetryPolicy", "DEFAULT_RETRY", "NO_RETRY"]
