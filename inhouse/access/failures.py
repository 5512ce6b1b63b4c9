"""Repeated refusals audited as one entry per window, not one per request.

A flood of bad requests must not turn into a flood of audit rows (each one a database
write, and a full audit queue refuses everyone with 503). :class:`FailureAggregator` sorts
refusals by kind: client address, principal and reason (``invalid token``, ``missing
credentials``, ``rate limited``...). The first refusal of a kind is audited as it happens,
with its request id and detail; the next ones during ``window_s`` are only counted, and when
the window ends one entry records them::

    repeated: 299 more like this, not audited one by one, first=<ISO time> last=<ISO time>
    client=10.0.0.7 reason=invalid token; last: unauthenticated: bad token 0123456789abcdef

The summary's action and resource are those of the repeats, ``*`` where they varied. So a
kind costs at most two rows per window. At most ``max_keys`` kinds are tracked at
once; refusals of further kinds are counted together under client ``*``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from inhouse.access.auditentry import AuditEvent
from inhouse.errors import ConfigError

MAX_KINDS = 1000
Kind = tuple[str, str, str]  # client address, principal, reason
OVERFLOW: Kind = ("*", "*", "refusals of other kinds")


@dataclass
class _Window:
    start: datetime
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    action: str = "-"
    resource: str = "-"
    detail: str = ""


def _iso(ts: datetime | None) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if ts else "-"


class FailureAggregator:
    """Counts repeated refusals and turns each window's count into one audit event.

    Thread-safe. A caller asks :meth:`opens` first: True means the refusal starts a window
    and is audited on its own; otherwise (or when the caller could not queue it) it calls
    :meth:`count`. :meth:`drain`, run before each audit flush, returns the events of the
    windows that ended.

    Args:
        clock: aware UTC time, the one the audit entries are stamped with.
        window_s: how long repeats of a kind are counted before one entry records them.
        max_keys: kinds tracked at once; beyond, refusals are counted under client ``*``.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        window_s: float = 10.0,
        max_keys: int = MAX_KINDS,
    ) -> None:
        if not window_s > 0 or max_keys < 1:
            raise ConfigError(f"failure window {window_s!r} s must be > 0, max_keys >= 1")
        self._clock = clock
        self._window = timedelta(seconds=window_s)
        self._max_keys = max_keys
        self._open: dict[Kind, _Window] = {}  # in order of their start
        self._lock = threading.Lock()
        self._closing = False

    def opens(self, client: str | None, principal: str, reason: str) -> bool:
        """Open a window for this kind if none is; True: audit this refusal on its own."""
        kind = (client or "-", principal, reason)
        with self._lock:
            if kind in self._open or len(self._open) >= self._max_keys:
                return False
            self._open[kind] = _Window(self._clock())
            return True

    def count(
        self,
        client: str | None,
        principal: str,
        reason: str,
        *,
        action: str,
        resource: str,
        detail: str,
    ) -> None:
        """Count a refusal that is not audited on its own."""
        kind = (client or "-", principal, reason)
        with self._lock:
            now = self._clock()
            window = self._open.get(kind)
            if window is None:
                if len(self._open) >= self._max_keys:
                    kind = OVERFLOW
                window = self._open.setdefault(kind, _Window(now))
            if not window.count:
                window.action, window.resource, window.first = action, resource, now
            # Repeats on several actions or resources are recorded as "*".
            window.action = action if window.action == action else "*"
            window.resource = resource if window.resource == resource else "*"
            window.count += 1
            window.last, window.detail = now, detail

    def drain(self, room: int) -> list[AuditEvent]:
        """Close the windows that ended; return at most ``room`` summary events.

        A window with repeats that does not fit stays open and keeps counting.
        """
        events: list[AuditEvent] = []
        with self._lock:
            now = self._clock()
            for kind, window in list(self._open.items()):
                # abs(): a clock stepping back cannot keep a window open forever.
                if not (self._closing or abs(now - window.start) >= self._window):
                    break  # later windows started later
                if window.count:
                    if len(events) >= room:
                        continue
                    events.append(self._summary(kind, window, now))
                del self._open[kind]
        return events

    def close(self) -> None:
        """Make every window due, so the next :meth:`drain` records them all."""
        with self._lock:
            self._closing = True

    def __len__(self) -> int:
        """Kinds with an open window."""
        with self._lock:
            return len(self._open)

    @staticmethod
    def _summary(kind: Kind, window: _Window, now: datetime) -> AuditEvent:
        client, principal, reason = kind
        detail = (
            f"repeated: {window.count} more like this, not audited one by one, "
            f"first={_iso(window.first)} last={_iso(window.last)} client={client} "
            f"reason={reason}; last: {window.detail}"
        )
        return AuditEvent(now, principal, window.action, window.resource, "deny", None, detail)
