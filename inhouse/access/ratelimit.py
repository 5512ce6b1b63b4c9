"""Per-token rate limiting: a token bucket per key, in memory, bounded.

Each key (the authenticated token id, :attr:`~inhouse.access.permissions.Principal.token_id`)
owns a bucket of ``burst`` tokens that refills at ``rate_per_s``; a request takes one token,
and an empty bucket refuses with :class:`~inhouse.errors.RateLimitedError` (429) carrying
``retry_after_s``, the wait until one token is back. Call it after authentication, so
unknown callers cannot fill the table with keys of their choosing.

State lives in the process: with several ingress replicas each keeps its own buckets, so a
token may send up to ``replicas × rate_per_s``. Buckets beyond ``max_keys`` are dropped
least recently used first; a dropped key starts again with a full bucket.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from inhouse.errors import ConfigError, RateLimitedError


class RateLimiter:
    """A thread-safe token-bucket limiter keyed by string; O(1) per :meth:`check`.

    Args:
        rate_per_s: tokens added to each bucket per second (the sustained request rate).
        burst: bucket size: requests a key may send at once after being idle.
        clock: monotonic seconds; tests inject a fake one.
        max_keys: buckets kept; the least recently used beyond this are dropped.

    Raises:
        ConfigError: a rate that is not a positive finite number, or a burst or max_keys
            below 1.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int | float):
            raise ConfigError(f"rate limit {rate_per_s!r} must be a number of requests per second")
        if not (math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ConfigError(f"rate limit {rate_per_s!r}/s must be a positive finite number")
        for what, value in (("burst", burst), ("max_keys", max_keys)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"rate limit {what} {value!r} must be a whole number >= 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens left, time of last update); order = least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str) -> None:
        """Take one token from ``key``'s bucket.

        Raises:
            RateLimitedError: the bucket is empty; ``retry_after_s`` says when one token
                will be back (nothing is taken from the bucket).
        """
        with self._lock:
            now = self._clock()
            state = self._buckets.get(key)
            if state is None:
                tokens = float(self.burst)
            else:
                left, last = state
                # max(0, ...): a clock that steps back must not drain the bucket.
                tokens = min(float(self.burst), left + max(0.0, now - last) * self.rate_per_s)
                self._buckets.move_to_end(key)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if state is None and len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        if not allowed:
            retry_after = (1.0 - tokens) / self.rate_per_s
            raise RateLimitedError(
                f"rate limit exceeded: at most {self.rate_per_s:g} requests/s per token "
                f"(burst {self.burst}); retry in {retry_after:.2f} s",
                retry_after_s=retry_after,
            )

    def __len__(self) -> int:
        """Number of buckets held (at most ``max_keys``)."""
        with self._lock:
            return len(self._buckets)
