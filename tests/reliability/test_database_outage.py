"""The database goes away and comes back: clear 503s meanwhile, recovery after, nothing lost.

PostgreSQL is reached through a TCP proxy the test owns, so "down" is real (connections
reset, the port refuses) and "back" is the same URL answering again. Dropped connections
(``pg_terminate_backend``) are also tried: the pool must reconnect by itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from inhouse.access import AccessService, RequestAuthorizer
from inhouse.access.tokens import load_or_create_pepper
from inhouse.errors import UnavailableError
from inhouse.registry import Registry
from inhouse.schema import get_engine
from tests.polling import wait_for
from tests.reliability.helpers import register

pytestmark = pytest.mark.integration
# As tests/conftest.py (importing it would run its session setup a second time).
PG_BASE = os.environ.get("INHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL until :meth:`down`; :meth:`up` reopens it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture()
def proxied_url(pg_url: str) -> Iterator[tuple[str, TcpProxy, str]]:
    """A PostgreSQL URL (fresh schema) through a proxy; yields (url, proxy, application name)."""
    from sqlalchemy.engine import make_url

    base = make_url(PG_BASE)
    proxy = TcpProxy((base.host or "127.0.0.1", base.port or 5432))
    proxy.up()
    schema = f"ih_out_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    name = f"inhouse-outage-{uuid.uuid4().hex[:8]}"
    url = base.set(port=proxy.port).render_as_string(hide_password=False)
    yield f"{url}?options=-csearch_path%3D{schema}&application_name={name}", proxy, name
    proxy.down()
    from inhouse import db

    for key in [k for k in db._engines if schema in k]:
        db._engines.pop(key).dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_dropped_connections_are_invisible(
    proxied_url: tuple[str, TcpProxy, str], tmp_path: Path
) -> None:
    url, _proxy, name = proxied_url
    registry = Registry(engine=get_engine(url), root=tmp_path / "reg")
    version = register(registry)
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        killed = conn.execute(
            text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE application_name = :name"), {"name": name}
        ).scalar()
    admin.dispose()
    assert killed >= 1  # the pool's idle connection died under it
    assert registry.get("digits", str(version)).version == version  # pre-ping reconnected


def test_an_outage_gives_503s_and_recovers_with_nothing_lost(
    proxied_url: tuple[str, TcpProxy, str], tmp_path: Path
) -> None:
    url, proxy, _name = proxied_url
    access = AccessService(engine=get_engine(url), pepper=load_or_create_pepper(tmp_path / "p"))
    access.create_principal(name="svc", kind="service", roles=["predictor"])
    cached = "Bearer " + access.issue_token(principal="svc", expires_in=timedelta(hours=1)).token
    fresh = "Bearer " + access.issue_token(principal="svc", expires_in=timedelta(hours=1)).token
    authorizer = RequestAuthorizer(access, cache_ttl_s=60, max_pending=50)
    decisions = 0

    def call(header: str) -> None:
        nonlocal decisions
        authorizer.authorize(header, action="model:predict", resource="digits", request_id="r")
        decisions += 1

    try:
        call(cached)
        authorizer.flush()
        proxy.down()
        with pytest.raises(UnavailableError, match="database unavailable"):
            call(fresh)  # a token never seen: its state cannot be read, fail closed
        served_during_outage = 0
        with pytest.raises(UnavailableError, match="audit log unavailable"):
            for _ in range(100):  # a cached token keeps working until the audit queue fills
                call(cached)
                served_during_outage += 1
        assert served_during_outage == 50  # then max_pending (50) decisions wait: fail closed
        with pytest.raises(UnavailableError):
            authorizer.flush()
        proxy.up()
        wait_for(lambda: authorizer.queue.pending == 0, timeout_s=30, what="the queued audit")
        call(fresh)
        call(cached)
        authorizer.flush()
    finally:
        authorizer.close()
    report = access.audit.verify()
    assert report.ok
    # Every decision made is in the chain, the 50 of the outage included; the 503s are not.
    entries = access.audit.tail(1000)
    outcomes = [e.outcome for e in entries if e.action == "model:predict"]
    assert decisions == 53 and outcomes == ["allow"] * decisions


def test_registry_calls_during_an_outage_are_503(
    proxied_url: tuple[str, TcpProxy, str], tmp_path: Path
) -> None:
    url, proxy, _name = proxied_url
    registry = Registry(engine=get_engine(url), root=tmp_path / "reg")
    register(registry)
    proxy.down()
    try:
        with pytest.raises(UnavailableError):
            registry.get("digits", "1")
    finally:
        proxy.up()
    assert registry.get("digits", "1").version == 1  # and it recovers by itself
