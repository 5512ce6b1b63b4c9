"""The coordinator's durable state: one row per model plus an append-only history of events.

Every decision is committed with :meth:`CoordinatorStore.commit`, which writes the new state,
its events and any registry alias moves (``champion``, ``previous``) in ONE transaction, guarded
by a revision number (compare-and-set). A killed actor therefore resumes from exactly the last
committed decision: the watermark (last row id consumed) and the alias never disagree.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, BigInteger, Engine, Float, Integer, String, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from inhouse.canary import Canary, load_canary, save_canary
from inhouse.db import Base, BigId, session_scope
from inhouse.errors import ConflictError, NotFoundError
from inhouse.registry.aliases import move_alias


class CoordinatorStateRecord(Base):
    """Per model: settings, stream watermark, versions, the job in flight, failure backoff."""

    __tablename__ = "coordinator_state"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(48))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="running")
    watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_at: Mapped[float] = mapped_column(Float, default=0.0)
    champion_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    candidate_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    manual_seen_id: Mapped[int] = mapped_column(BigInteger, default=0)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)


class CoordinatorEventRecord(Base):
    """One thing that happened: trigger, retrain started/failed, promoted, rejected, rollback."""

    __tablename__ = "coordinator_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = {"sqlite_autoincrement": True}


_FIELDS = (
    "model",
    "dataset",
    "settings",
    "status",
    "watermark",
    "last_run_at",
    "champion_version",
    "candidate_version",
    "job",
    "failures",
    "next_attempt_at",
    "manual_seen_id",
    "revision",
)


@dataclass(frozen=True)
class CoordinatorState:
    """A model's coordinator state as the decision logic sees it (immutable: use ``replace``)."""

    model: str
    dataset: str
    settings: dict[str, Any]
    status: str = "running"
    watermark: int = 0
    last_run_at: float = 0.0
    champion_version: int | None = None
    candidate_version: int | None = None
    job: dict[str, Any] | None = None
    failures: int = 0
    next_attempt_at: float = 0.0
    manual_seen_id: int = 0
    revision: int = 0
    canary: Canary | None = None  # stored by inhouse.canary (table coordinator_canary)

    def replace(self, **changes: Any) -> CoordinatorState:
        return dataclasses.replace(self, **changes)

    @classmethod
    def _from(cls, record: CoordinatorStateRecord, canary: Canary | None) -> CoordinatorState:
        values: dict[str, Any] = {name: getattr(record, name) for name in _FIELDS}
        values["settings"] = dict(values["settings"])
        values["job"] = dict(values["job"]) if values["job"] else None
        return cls(**values, canary=canary)


@dataclass(frozen=True)
class Event:
    """A history entry (``id`` and ``at`` are filled when it is committed)."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    at: float = 0.0


class CoordinatorStore:
    """Load and commit coordinator state and history (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, model: str) -> CoordinatorState | None:
        with session_scope(self.engine) as session:
            record = session.get(CoordinatorStateRecord, model)
            if record is None:
                return None
            return CoordinatorState._from(record, load_canary(session, model))

    def load(self, model: str) -> CoordinatorState:
        """The state of ``model``; raises NotFoundError if no coordinator was ever started."""
        state = self.get(model)
        if state is None:
            raise NotFoundError(
                f"no coordinator for {model!r}; start one with `inhouse coordinator start {model}`"
            )
        return state

    def create(self, state: CoordinatorState, *, events: Sequence[Event] = ()) -> CoordinatorState:
        """Insert the first state of a model; raises ConflictError if it exists."""
        with session_scope(self.engine) as session:
            if session.get(CoordinatorStateRecord, state.model) is not None:
                raise ConflictError(f"a coordinator state for {state.model!r} exists")
            values = {name: getattr(state, name) for name in _FIELDS}
            session.add(CoordinatorStateRecord(**values, updated_at=time.time()))
            self.add_events(session, state.model, events)
        return state

    def commit(
        self,
        state: CoordinatorState,
        *,
        events: Sequence[Event] = (),
        aliases: dict[str, int | None] | None = None,
    ) -> CoordinatorState:
        """Write ``state`` (whose ``revision`` is the one it was read at), its canary, events and
        alias moves (``None`` removes an alias) atomically; returns it with the next revision.

        Raises:
            ConflictError: someone else committed since ``state`` was read; reload and retry.
        """
        values = {name: getattr(state, name) for name in _FIELDS if name not in ("model",)}
        values["revision"] = state.revision + 1
        values["updated_at"] = time.time()
        with session_scope(self.engine) as session:
            result = session.execute(
                update(CoordinatorStateRecord)
                .where(
                    CoordinatorStateRecord.model == state.model,
                    CoordinatorStateRecord.revision == state.revision,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                raise ConflictError(
                    f"coordinator state of {state.model!r} changed since revision "
                    f"{state.revision}; reload it"
                )
            for alias, version in (aliases or {}).items():
                move_alias(session, state.model, alias, version)
            save_canary(session, state.model, state.canary)
            self.add_events(session, state.model, events)
        return state.replace(revision=state.revision + 1)

    @staticmethod
    def add_events(session: Session, model: str, events: Sequence[Event]) -> None:
        """Append ``events`` of ``model`` in the caller's transaction."""
        now = time.time()
        for event in events:
            session.add(
                CoordinatorEventRecord(
                    model=model, at=event.at or now, kind=event.kind, detail=event.detail
                )
            )

    def record(self, model: str, kind: str, detail: dict[str, Any] | None = None) -> int:
        """Append one event outside a decision (a manual request); returns its id."""
        with session_scope(self.engine) as session:
            record = CoordinatorEventRecord(
                model=model, at=time.time(), kind=kind, detail=detail or {}
            )
            session.add(record)
            session.flush()
            return int(record.id)

    def latest_event_id(self, model: str, kind: str) -> int:
        """The id of the newest ``kind`` event of ``model`` (0 when none)."""
        with session_scope(self.engine) as session:
            found = session.scalar(
                select(func.max(CoordinatorEventRecord.id)).where(
                    CoordinatorEventRecord.model == model, CoordinatorEventRecord.kind == kind
                )
            )
        return int(found or 0)

    @staticmethod
    def replaced_champion(session: Session, model: str, version: int) -> int | None:
        """The champion that ``version``'s latest promotion replaced (in the caller's
        transaction), or None."""
        rows = session.scalars(
            select(CoordinatorEventRecord)
            .where(
                CoordinatorEventRecord.model == model,
                CoordinatorEventRecord.kind.in_(["promoted", "rollback"]),
            )
            .order_by(CoordinatorEventRecord.id.desc())
        )
        for row in rows:
            detail = dict(row.detail)
            if row.kind == "promoted" and detail.get("candidate_version") == version:
                before = detail.get("champion_version")
                return int(before) if before is not None else None
        return None

    def history(self, model: str, *, limit: int = 50, kind: str | None = None) -> list[Event]:
        """The newest ``limit`` events of ``model``, oldest first."""
        query = select(CoordinatorEventRecord).where(CoordinatorEventRecord.model == model)
        if kind is not None:
            query = query.where(CoordinatorEventRecord.kind == kind)
        with session_scope(self.engine) as session:
            rows = session.scalars(query.order_by(CoordinatorEventRecord.id.desc()).limit(limit))
            events = [Event(kind=r.kind, detail=dict(r.detail), id=r.id, at=r.at) for r in rows]
        return events[::-1]
