"""The budget of attempts that are not authenticated yet, spent before any database work.

A request whose token the replica cannot check from memory costs a database read, and
every refusal an audit entry; without a limit an anonymous caller sets that cost.
:class:`PreAuthLimiter` charges such a request to two token buckets: one per client
address (every attempt not authenticated from memory) and one for all clients together
(only attempts that need a database read: the budget that still holds when a proxy hides
the addresses). An empty bucket refuses with 429. A request whose token then proves valid
gives its charge back, so only failures spend the budget; a token the replica already
knows is never charged at all.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from inhouse.errors import ConfigError, RateLimitedError

MAX_CLIENTS = 10_000
UNKNOWN_CLIENT = "-"


class _Buckets:
    """Token buckets by key (LRU-bounded), with a refund; the caller holds the lock."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int) -> None:
        self.rate_per_s, self.burst, self.max_keys = rate_per_s, burst, max_keys
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Take one token; returns 0.0, or the seconds until one is back (nothing taken)."""
        state = self._state.get(key)
        tokens = float(self.burst)
        if state is not None:
            left, last = state
            tokens = min(tokens, left + max(0.0, now - last) * self.rate_per_s)
            self._state.move_to_end(key)
        if tokens < 1.0:
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s
        self._state[key] = (tokens - 1.0, now)
        if state is None and len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return 0.0

    def refund(self, key: str) -> None:
        state = self._state.get(key)
        if state is not None:
            self._state[key] = (min(float(self.burst), state[0] + 1.0), state[1])


def _check(name: str, rate_per_s: float, burst: int) -> None:
    if isinstance(rate_per_s, bool) or not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ConfigError(f"{name} rate {rate_per_s!r}/s must be a positive finite number")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"{name} burst {burst!r} must be a whole number >= 1")


class PreAuthLimiter:
    """Budgets for attempts that are not (yet) authenticated; thread-safe, O(1) per call.

    Args:
        client_rate_per_s: attempts per second one client address may fail.
        client_burst: failed attempts one address may make at once after being idle.
        global_rate_per_s: database reads per second for credentials not known to this
            replica, all addresses together.
        global_burst: such reads at once.
        clock: monotonic seconds; tests inject one.
        max_clients: addresses tracked; the least recently seen beyond are forgotten.

    Raises:
        ConfigError: a rate that is not a positive finite number or a burst below 1.
    """

    def __init__(
        self,
        *,
        client_rate_per_s: float = 10.0,
        client_burst: int = 50,
        global_rate_per_s: float = 100.0,
        global_burst: int = 200,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        _check("pre-authentication client", client_rate_per_s, client_burst)
        _check("pre-authentication global", global_rate_per_s, global_burst)
        self._clients = _Buckets(float(client_rate_per_s), client_burst, max_clients)
        self._global = _Buckets(float(global_rate_per_s), global_burst, 1)
        self._clock = clock
        self._lock = threading.Lock()

    def charge(self, client: str | None, *, read: bool) -> None:
        """Charge one attempt by ``client`` (and, when it needs a database read, the global
        budget).

        Raises:
            RateLimitedError: a budget is spent (nothing is taken from the other one).
        """
        key = client or UNKNOWN_CLIENT
        with self._lock:
            now = self._clock()
            who, wait = f"client {key}", self._clients.take(key, now)
            if not wait and read:
                wait = self._global.take("*", now)
                if wait:
                    self._clients.refund(key)
                    who = "all clients (tokens this server has not seen yet)"
        if wait:
            raise RateLimitedError(
                f"too many unauthenticated requests from {who}; retry in {wait:.2f} s",
                retry_after_s=wait,
            )

    def refund(self, client: str | None, *, read: bool) -> None:
        """Give back a :meth:`charge` whose token proved valid."""
        with self._lock:
            self._clients.refund(client or UNKNOWN_CLIENT)
            if read:
                self._global.refund("*")
