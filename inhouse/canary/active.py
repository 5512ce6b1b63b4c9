"""The active canary of each model: which version serves which share of requests, until when.

This module owns the ``coordinator_canary`` table (its name predates this package). The
coordinator writes it with :func:`save_canary` inside its decision transaction, next to the
``candidate`` alias; the ingress polls :func:`active_canaries` to route requests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from inhouse.db import Base, session_scope


class CanaryRecord(Base):
    """The active canary of a model (at most one): what the ingress routes by."""

    __tablename__ = "coordinator_canary"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    champion_version: Mapped[int] = mapped_column(Integer)
    share: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Canary:
    """A candidate serving ``share`` of the requests from ``started_at`` to ``ends_at``."""

    version: int
    champion_version: int
    share: float
    started_at: float
    ends_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Canary:
        return cls(
            version=int(data["version"]),
            champion_version=int(data["champion_version"]),
            share=float(data["share"]),
            started_at=float(data["started_at"]),
            ends_at=float(data["ends_at"]),
        )

    @classmethod
    def _from(cls, r: CanaryRecord) -> Canary:
        return cls(r.version, r.champion_version, r.share, r.started_at, r.ends_at)


def active_canaries(engine: Engine, models: list[str]) -> dict[str, Canary]:
    """The canaries running for ``models`` (what the ingress polls)."""
    with session_scope(engine) as session:
        rows = session.scalars(select(CanaryRecord).where(CanaryRecord.model.in_(models)))
        return {r.model: Canary._from(r) for r in rows}


def load_canary(session: Session, model: str) -> Canary | None:
    """The canary of ``model`` in the caller's transaction, or None."""
    record = session.get(CanaryRecord, model)
    return None if record is None else Canary._from(record)


def save_canary(session: Session, model: str, canary: Canary | None) -> None:
    """Make ``canary`` the active one of ``model`` in the caller's transaction (None: none)."""
    record = session.get(CanaryRecord, model)
    if canary is None:
        if record is not None:
            session.delete(record)
        return
    if record is None:
        session.add(CanaryRecord(model=model, **canary.to_dict()))
        return
    for name, value in canary.to_dict().items():
        setattr(record, name, value)
