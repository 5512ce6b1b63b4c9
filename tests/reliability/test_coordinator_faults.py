"""The coordinator under faults (``make test-reliability``; the DP one in ``make test``): its
actor killed mid-retrain and around the promotion, the whole local cluster stopped
mid-retrain, the database away, a DP retrain restarted. After each: no partial version, an
exact watermark, each row window trained (and DP-charged) once, and the champion alias and
the coordinator's state never disagree.

Every test gets a fresh PostgreSQL schema and home with a compressed ``digits`` champion; the
faults are real (``ray.kill`` of the actor process, ``inhouse cluster down``, a TCP proxy the
test closes), nothing of ours is mocked. The rollback under load is in ``test_serve_faults.py``
(it needs that module's deployment).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from inhouse import services
from inhouse.config import CoordinatorSettings, Settings, load_settings
from inhouse.coordinator import CoordinatorStore
from inhouse.coordinator.control import start
from inhouse.kinds import load_module
from inhouse.schema import get_engine
from tests.coordinator_setup import append_stream, kill_coordinator, make_champion
from tests.digits_parent import Parent, train_parent
from tests.pg_schema import drop_schema
from tests.polling import wait_for
from tests.reliability.test_database_outage import TcpProxy

# Each test is marked ``reliability`` (``make test-reliability``) but the DP one, the cheapest
# (~25 s), which is ``integration`` and so runs in ``make test``.
pytestmark = [pytest.mark.slow]
MODEL = "digits"
PG_BASE = os.environ.get("INHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]
FIRST_STREAM_ID = 1798  # the seeded digits rows are ids 1..1797

# Every test's coordinator settings, in one place (canary fields are added when they exist).
FAST: dict[str, Any] = {
    "model": MODEL,
    "min_rows": 100,
    "epochs": 3,
    "poll_s": 0.25,
    "backoff_base_s": 1.0,
    "backoff_max_s": 4.0,
}
CANARY = "canary_share" in CoordinatorSettings.model_fields
if CANARY:
    FAST["canary_share"] = 0.0  # promotion straight to 100% except where a test says otherwise


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Parent:
    from inhouse.data import seed

    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('parent') / 'data.db'}")
    seed(engine, "digits")
    return train_parent(engine)


@dataclass
class Home:
    """A test's home: settings (the coordinator's database URL) and a direct engine."""

    settings: Settings
    schema: str
    direct_url: str  # the same schema, never through a proxy: the test's own reads/writes

    @property
    def engine(self) -> Engine:
        return get_engine(self.direct_url)

    @property
    def store(self) -> CoordinatorStore:
        return CoordinatorStore(self.engine)


def _schema_url(schema: str, base: str = PG_BASE, **params: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"{base}?options=-csearch_path%3D{schema}{extra}"


@contextlib.contextmanager
def _home(tmp_path: Path, parent: Parent, url_for: Callable[[str], str]) -> Iterator[Home]:
    """A fresh schema + home with a compressed champion; ``url_for(schema)`` is the
    coordinator's database URL."""

    schema = f"ih_cf_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    home = tmp_path / "home"
    home.mkdir()
    direct = _schema_url(schema)
    make_champion(load_settings(home=str(home), database_url=direct), parent=parent)
    try:
        yield Home(load_settings(home=str(home), database_url=url_for(schema)), schema, direct)
    finally:
        drop_schema(admin, schema)
        admin.dispose()


@pytest.fixture()
def home(ray_cluster: Settings, tmp_path: Path, parent: Parent) -> Iterator[Home]:
    with _home(tmp_path, parent, _schema_url) as made:
        yield made


@pytest.fixture()
def stop_actor() -> Iterator[None]:
    yield
    kill_coordinator(MODEL)


def _start(home: Home, **overrides: Any) -> Any:
    from inhouse.actors.coordinator import start_actor

    start(services.registry(home.settings), CoordinatorSettings(**{**FAST, **overrides}))
    return start_actor(home.settings, MODEL)


def _runs(home: Home, run: str) -> list[Any]:
    """The versions a retrain of ``run`` registered (float and compressed)."""
    versions = services.registry(home.settings).versions(MODEL)
    return [v for v in versions if v.lineage.get("coordinator_run") == run]


def _windows(home: Home) -> list[tuple[int, int]]:
    versions = services.registry(home.settings).versions(MODEL)
    floats = [v for v in versions if v.lineage.get("coordinator_run") and v.format != "compressed"]
    return [(v.lineage["rows"]["first_id"], v.lineage["rows"]["up_to_id"]) for v in floats]


def _assert_no_partial_version(home: Home) -> None:
    """Every registered version loads (hashes and decryption checked). On disk, anything else
    may only be what a killed write leaves and the registry never shows: a ``.vN.*.tmp``
    directory, or a ``vN`` above every registered number (the next write replaces it)."""
    registry = services.registry(home.settings)
    versions = registry.versions(MODEL)
    for info in versions:
        load_module(registry, info)
    root = home.settings.home / "registry" / MODEL
    top = max(v.version for v in versions)
    registered = {f"v{v.version}" for v in versions}
    for path in root.iterdir() if root.exists() else []:
        name = path.name
        orphan = re.fullmatch(r"v([0-9]+)", name)
        assert (
            name in registered
            or re.fullmatch(r"\.v[0-9]+\..*\.tmp", name)
            or (orphan is not None and int(orphan.group(1)) > top)
        ), f"unexpected {path} beside versions {sorted(registered)}"


def _assert_done_once(home: Home, run: str) -> dict[str, Any]:
    """``run`` made one float and one compressed version and was decided once; returns the
    decision's event detail."""
    made = _runs(home, run)
    assert sorted(v.format for v in made) == ["compressed", "safetensors"], made
    events = home.store.history(MODEL, limit=200)
    started = [e for e in events if e.kind == "retrain_started" and e.detail["run_id"] == run]
    decided = [
        e
        for e in events
        if e.kind in ("promoted", "rejected", "flagged", "canary_started")
        and e.detail.get("run_id") == run
    ]
    assert len(started) == 1 and len(decided) == 1, [(e.kind, e.detail) for e in events]
    return decided[0].detail


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Watermark, the state's champion, the ``champion`` alias and (with canaries) the canary
    row and the ``candidate`` alias, read in ONE repeatable-read transaction: what a crash
    at this instant would leave."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        row = conn.execute(
            text("SELECT watermark, champion_version FROM coordinator_state WHERE model=:m"),
            {"m": MODEL},
        ).one()
        aliases = dict(
            conn.execute(
                text("SELECT alias, version FROM model_aliases WHERE model=:m"), {"m": MODEL}
            ).all()
        )
        canary = (
            conn.execute(
                text("SELECT version FROM coordinator_canary WHERE model=:m"), {"m": MODEL}
            ).scalar()
            if CANARY
            else None
        )
    return {
        "watermark": int(row[0]),
        "state_champion": row[1],
        "champion": aliases.get("champion"),
        "canary": canary,
        "candidate": aliases.get("candidate"),
    }


class Watch:
    """Samples the state and the aliases every 20 ms in the background, collecting violations
    of: the ``champion`` alias is the state's champion, the ``candidate`` alias is the state's
    canary, the watermark only moves to a window's end."""

    def __init__(self, engine: Engine, allowed_watermarks: set[int]) -> None:
        self.engine, self.allowed = engine, allowed_watermarks
        self.samples = 0
        self.violations: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                seen = _snapshot(self.engine)
            except Exception as exc:  # the watcher itself must not go blind silently
                self.violations.append({"error": repr(exc)})
                return
            self.samples += 1
            if (
                seen["state_champion"] != seen["champion"]
                or seen["canary"] != seen["candidate"]
                or seen["watermark"] not in self.allowed
            ):
                self.violations.append(seen)
            self._stop.wait(0.02)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _kill(actor: Any) -> int:
    """Kill the actor's process (Ray restarts it: ``max_restarts=-1``); returns the old pid."""
    import ray

    pid = int(ray.get(actor.info.remote(), timeout=120)["pid"])
    ray.kill(actor, no_restart=False)
    return pid


def _busy(home: Home) -> bool:
    """A retrain or a canary is in progress."""
    state = home.store.load(MODEL)
    return state.job is not None or getattr(state, "canary", None) is not None


def _in_flight(home: Home) -> str | None:
    job = home.store.load(MODEL).job
    return None if job is None else str(job["run_id"])


# --- 1. the actor killed mid-retrain -------------------------------------------------------


@pytest.mark.reliability
def test_actor_killed_mid_retrain_resumes_exactly(home: Home, stop_actor: None) -> None:
    """Killed twice: while training (nothing registered yet) and after the float candidate
    was registered (mid-compression): the window is still trained once, the watermark exact."""
    import ray

    started = time.monotonic()
    actor = _start(home, epochs=30)
    old_champion = home.store.load(MODEL).champion_version
    last = append_stream(home.engine, 150, seed_=2)
    wait_for(lambda: _in_flight(home), timeout_s=60, what="a retrain to start")
    run = _in_flight(home)
    assert run is not None
    first_pid = _kill(actor)  # while training
    assert _runs(home, run) == []  # it died before registering anything
    wait_for(
        lambda: len(_runs(home, run)) >= 1 or home.store.load(MODEL).watermark == last,
        timeout_s=180,
        what="the resumed retrain to register its candidate",
    )
    second_pid = _kill(actor) if home.store.load(MODEL).watermark != last else None
    wait_for(lambda: home.store.load(MODEL).watermark == last, timeout_s=180, what="the resume")
    info = ray.get(actor.info.remote(), timeout=60)
    assert info["pid"] not in (first_pid, second_pid)
    state = home.store.load(MODEL)
    assert state.watermark == last and state.job is None
    detail = _assert_done_once(home, run)
    assert _windows(home) == [(FIRST_STREAM_ID, last)]
    _assert_no_partial_version(home)
    champion = services.registry(home.settings).resolve(MODEL, "champion")
    assert champion == state.champion_version
    assert (champion != old_champion) == (detail["verdict"] == "promote")
    print(
        f"\nRELIABILITY coordinator killed mid-retrain x{1 + (second_pid is not None)}: "
        f"window [{FIRST_STREAM_ID}, {last}] trained once, verdict {detail['verdict']}, "
        f"{time.monotonic() - started:.1f} s"
    )


# --- 2. killed over and over around the promotion ------------------------------------------


@pytest.mark.reliability
@pytest.mark.parametrize("share", [0.0, 0.1] if CANARY else [None], ids=lambda s: f"canary{s}")
def test_actor_killed_around_the_promotion_leaves_one_champion(
    home: Home, stop_actor: None, share: float | None
) -> None:
    """The actor is killed again and again from the float candidate's registration until the
    promotion is committed, each time 1 s later after its restart (0, 1, 2 ... s): the
    kills sweep the resume (compress -> measure -> gate commit -> canary, where canaries
    exist -> promotion commit) until one lands past the commit. A watcher reads the state and
    the aliases in one transaction every 20 ms: they never disagree; one champion results."""
    import ray

    canary = {} if share is None else {"canary_share": share, "canary_window_s": 12.0}
    started = time.monotonic()
    registry = services.registry(home.settings)
    actor = _start(home, **canary)
    before = home.store.load(MODEL)
    last = append_stream(home.engine, 150, seed_=4)
    kills = 0
    with Watch(home.engine, {before.watermark, last}) as watch:
        wait_for(lambda: _in_flight(home), timeout_s=60, what="a retrain to start")
        run = _in_flight(home)
        assert run is not None
        wait_for(
            lambda: len(_runs(home, run)) >= 1 or not _in_flight(home),
            timeout_s=180,
            what="the float candidate",
        )
        stages: list[str] = []
        while _busy(home) and kills < 5:
            ray.get(actor.info.remote(), timeout=120)  # restarted and looping again
            time.sleep(1.0 * kills)  # each kill later after the restart: a sweep
            state = home.store.load(MODEL)
            if state.job is None and getattr(state, "canary", None) is None:
                break
            stages.append("canary" if state.job is None else f"{len(_runs(home, run))} made")
            _kill(actor)
            kills += 1
        wait_for(lambda: not _busy(home), timeout_s=180, what="the promotion decided")
    assert watch.samples > 50 and watch.violations == [], watch.violations[:5]
    state = home.store.load(MODEL)
    assert state.watermark == last
    detail = _assert_done_once(home, run)
    aliases = registry.aliases(MODEL)
    assert aliases["champion"] == state.champion_version and "candidate" not in aliases
    history = home.store.history(MODEL, limit=200)
    promoted = [e for e in history if e.kind == "promoted"]
    if detail["verdict"] == "promote" and not any(e.kind == "canary_rolled_back" for e in history):
        assert state.champion_version == detail["candidate_version"]
        assert aliases["previous"] == before.champion_version and len(promoted) == 1
    else:
        assert state.champion_version == before.champion_version and promoted == []
    _assert_no_partial_version(home)
    print(
        f"\nRELIABILITY coordinator killed {kills}x around the promotion (at {stages})"
        f"{f' (canary share {share})' if share else ''}: {[e.kind for e in history][2:]}, "
        f"{watch.samples} snapshots, 0 disagreements, {time.monotonic() - started:.1f} s"
    )


# --- 3. the whole local cluster stopped mid-retrain ----------------------------------------

_OFFSET = int(os.environ.get("INHOUSE_TEST_PORT_OFFSET", "0")) * 10


def _cluster_env(home: Home) -> dict[str, str]:
    """The environment of ``inhouse`` commands on a cluster of the test's own (own home and
    ports: GCS 6700+, dashboard/Serve 8700+, agent 53700+)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INHOUSE_", "RAY_"))}
    env.update(
        {
            "INHOUSE_HOME": str(home.settings.home),
            "INHOUSE_DATABASE_URL": str(home.settings.database_url),
            "INHOUSE_RAY__GCS_PORT": str(6700 + _OFFSET),
            "INHOUSE_RAY__CLIENT_PORT": str(6701 + _OFFSET),
            "INHOUSE_RAY__DASHBOARD_PORT": str(8700 + _OFFSET),
            "INHOUSE_SERVE__PORT": str(8701 + _OFFSET),
            "INHOUSE_RAY__AGENT_PORT": str(53700 + _OFFSET),
            "INHOUSE_RAY__NUM_CPUS": "2",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(home.settings.home / "ray_auth_token"),
        }
    )
    return env


def _inhouse(env: dict[str, str], *args: str, timeout: float = 240) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "inhouse.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


@pytest.fixture()
def own_home(tmp_path: Path, parent: Parent) -> Iterator[Home]:
    """A home on its own cluster (started by the test through the CLI, stopped after)."""
    from inhouse import local_cluster

    with _home(tmp_path, parent, _schema_url) as made:
        try:
            yield made
        finally:
            env = _cluster_env(made)
            local_cluster.stop(load_settings(ray={"gcs_port": int(env["INHOUSE_RAY__GCS_PORT"])}))


@pytest.mark.reliability
def test_cluster_stopped_mid_retrain_resumes_exactly(own_home: Home) -> None:
    from inhouse import local_cluster

    home, env = own_home, _cluster_env(own_home)
    # A retrain of several seconds (1000 epochs over 600 rows + replay): Ray's workers outlive
    # their raylet for a moment, and a short one would finish and commit before it died.
    flags = ["--min-rows", "100", "--epochs", "1000", "--poll", "0.25"]
    started = time.monotonic()
    _inhouse(env, "cluster", "up")
    _inhouse(env, "coordinator", "start", MODEL, *flags)
    last = append_stream(home.engine, 600, seed_=5)
    wait_for(lambda: _in_flight(home), timeout_s=90, what="a retrain to start")
    run = _in_flight(home)
    assert run is not None
    # What `inhouse cluster down` runs, in-process (the CLI's start-up would let the retrain
    # finish first): every process of the cluster goes, the actor's included.
    local_cluster.stop(load_settings(ray={"gcs_port": int(env["INHOUSE_RAY__GCS_PORT"])}))
    down = home.store.load(MODEL)
    assert down.job is not None and down.watermark == FIRST_STREAM_ID - 1  # nothing consumed
    assert _runs(home, run) == []  # stopped before it registered anything
    _inhouse(env, "cluster", "up")
    _inhouse(env, "coordinator", "start", MODEL, *flags)  # resumes the job in its state
    wait_for(lambda: home.store.load(MODEL).watermark == last, timeout_s=240, what="the resume")
    status = json.loads(_inhouse(env, "coordinator", "status", MODEL, "--history", "20"))
    assert status["watermark"] == last and status["job"] is None
    assert isinstance(status["actor"], dict) and status["actor"]["running"]
    _assert_done_once(home, run)
    assert _windows(home) == [(FIRST_STREAM_ID, last)]
    _assert_no_partial_version(home)
    _inhouse(env, "coordinator", "stop", MODEL)
    print(f"\nRELIABILITY cluster stopped mid-retrain: once, {time.monotonic() - started:.1f} s")


# --- 4. the database unavailable -----------------------------------------------------------


@pytest.fixture()
def proxied(
    ray_cluster: Settings, tmp_path: Path, parent: Parent
) -> Iterator[tuple[Home, TcpProxy]]:
    """A home whose coordinator reaches PostgreSQL only through a proxy the test controls."""
    from sqlalchemy.engine import make_url

    base = make_url(PG_BASE)
    proxy = TcpProxy((base.host or "127.0.0.1", base.port or 5432))
    proxy.up()
    through = base.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with _home(tmp_path, parent, lambda schema: _schema_url(schema, through)) as made:
            yield made, proxy
    finally:
        proxy.down()


@pytest.mark.reliability
def test_database_outage_backs_off_and_catches_up(
    proxied: tuple[Home, TcpProxy], stop_actor: None
) -> None:
    """The database goes away mid-retrain and stays away while rows arrive: the actor backs
    off (its status says so), consumes nothing, and finishes every window once it returns."""
    import ray

    home, proxy = proxied
    started = time.monotonic()
    actor = _start(home, epochs=30)
    first = append_stream(home.engine, 150, seed_=6)
    wait_for(lambda: _in_flight(home), timeout_s=60, what="a retrain to start")
    run = _in_flight(home)
    with Watch(home.engine, {FIRST_STREAM_ID - 1, first}) as watch:
        proxy.down()
        outage = time.monotonic()
        second = append_stream(home.engine, 150, seed_=7)  # rows arrive during the outage
        watch.allowed.add(second)
        wait_for(
            lambda: ray.get(actor.info.remote(), timeout=30).get("backing_off"),
            timeout_s=120,
            what="the actor to back off",
        )
        time.sleep(6.0)  # hold the outage a while: the state must not move meanwhile
        info = ray.get(actor.info.remote(), timeout=30)
        assert home.store.load(MODEL).watermark == FIRST_STREAM_ID - 1
        assert home.store.load(MODEL).job is not None  # the window is still owed
        proxy.up()
        back = time.monotonic()
        wait_for(
            lambda: home.store.load(MODEL).watermark >= first,
            timeout_s=180,
            what="the first window after the outage",
        )
        caught_up_s = time.monotonic() - back
    assert watch.violations == [], watch.violations[:5]
    wait_for(
        lambda: home.store.load(MODEL).watermark == second,
        timeout_s=180,
        what="the rows of the outage",
    )
    assert info["backing_off"] and info["last"]["failures_in_row"] >= 2, info
    assert "retry in" in info["last"]["reason"], info
    assert info["last"]["retry_in_s"] > FAST["poll_s"], info  # it waits longer each time
    _assert_done_once(home, run)
    assert _windows(home) == [(FIRST_STREAM_ID, first), (first + 1, second)]
    _assert_no_partial_version(home)
    wait_for(
        lambda: not ray.get(actor.info.remote(), timeout=30)["backing_off"],
        timeout_s=30,
        what="the actor to stop backing off",
    )
    print(
        f"\nRELIABILITY database outage {back - outage:.1f} s mid-retrain: backed off "
        f"({info['last']['failures_in_row']} failed steps in a row, waiting "
        f"{info['last']['retry_in_s']} s), first "
        f"window done {caught_up_s:.1f} s after it returned, both windows once; "
        f"{time.monotonic() - started:.1f} s"
    )


# --- 5. no double privacy spend ------------------------------------------------------------


@pytest.mark.integration
def test_dp_retrain_restarted_is_charged_once(home: Home, stop_actor: None) -> None:
    from inhouse.privacy import PrivacyLedger
    from inhouse.privacy.accounting import Mechanism, epsilon_of

    ledger = PrivacyLedger(home.engine)
    ledger.set_budget(dataset="digits", epsilon=50.0, delta=1e-5, actor="admin")
    started = time.monotonic()
    actor = _start(home, dp=True, noise_multiplier=1.0, epochs=10, batch_size=64)
    last = append_stream(home.engine, 150, seed_=8)

    def reserved() -> bool:
        with home.engine.connect() as conn:
            query = "SELECT count(*) FROM privacy_charges WHERE status = 'reserved'"
            return bool(conn.execute(text(query)).scalar())

    wait_for(reserved, timeout_s=90, what="the DP retrain to reserve its spend")
    run = _in_flight(home)
    assert run is not None
    _kill(actor)  # mid-training: the charge is reserved, nothing registered
    assert _runs(home, run) == []
    try:
        wait_for(lambda: home.store.load(MODEL).watermark == last, timeout_s=180, what="resume")
    except AssertionError:
        print("charges:", ledger.report("digits")[0].charges)
        print("history:", [(e.kind, e.detail) for e in home.store.history(MODEL)])
        import ray

        print("actor:", ray.get(actor.info.remote(), timeout=30))
        raise
    report = ledger.report("digits")[0]
    charges = [c for c in report.charges if c.run == run]
    assert len(report.charges) == 1 and len(charges) == 1, report.charges
    charge = charges[0]
    assert charge.status == "committed" and charge.steps == charge.planned_steps, charge
    one_run = epsilon_of(
        [Mechanism(charge.noise_multiplier, charge.sample_rate, charge.planned_steps)],
        delta=charge.delta,
        accountant=charge.accountant,
    )
    assert charge.epsilon == pytest.approx(one_run) and report.spent == pytest.approx(one_run)
    floats = [v for v in _runs(home, run) if v.format != "compressed"]
    assert floats[0].lineage["privacy"]["charge_id"] == charge.id
    assert charge.version == floats[0].version
    _assert_done_once(home, run)
    print(
        f"\nRELIABILITY DP retrain killed and resumed: 1 charge, ε={charge.epsilon:.3f} "
        f"(one run's), {time.monotonic() - started:.1f} s"
    )
