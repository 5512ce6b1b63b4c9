"""Tables of the privacy ledger, registered on :class:`inhouse.db.Base`.

``privacy_budgets`` has one row per data set the ledger has touched: its budget (nullable:
no budget set), the accountant it composes with, the admin's non-DP exemption, and ``seq``,
the counter every writer bumps first in its transaction; that UPDATE is the per-data-set
lock (a row lock on PostgreSQL, the write lock on SQLite), so two reservations never both
see the same spend. ``privacy_charges`` holds one row per DP run; ``privacy_non_dp_runs``
one row per non-DP run an exemption let through.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inhouse.db import Base, BigId, UTCDateTime, utcnow

RESERVED = "reserved"
COMMITTED = "committed"
FAILED = "failed"
REFUNDED = "refunded"
COUNTED = (RESERVED, COMMITTED, FAILED)
"""Statuses whose charge counts against the budget (a failed run's checkpoints exist)."""


class BudgetRecord(Base):
    """A data set's budget, accountant, non-DP exemption and lock counter."""

    __tablename__ = "privacy_budgets"

    dataset: Mapped[str] = mapped_column(String(48), primary_key=True)
    epsilon: Mapped[float | None] = mapped_column(Float, nullable=True)
    delta: Mapped[float | None] = mapped_column(Float, nullable=True)
    accountant: Mapped[str] = mapped_column(String(16), default="prv")
    set_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    non_dp_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    non_dp_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    non_dp_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    non_dp_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)


class ChargeRecord(Base):
    """One DP training run charged to a data set's rows ``first_id..up_to_id``."""

    __tablename__ = "privacy_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(48), index=True)
    first_id: Mapped[int] = mapped_column(BigId)
    up_to_id: Mapped[int] = mapped_column(BigId)
    noise_multiplier: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[float] = mapped_column(Float)
    planned_steps: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    clipping: Mapped[float] = mapped_column(Float)
    accountant: Mapped[str] = mapped_column(String(16))
    delta: Mapped[float] = mapped_column(Float)
    epsilon: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(64))
    run: Mapped[str] = mapped_column(String(256))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=RESERVED, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    refunded_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    refund_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class NonDPRunRecord(Base):
    """A non-DP training run on a budgeted data set, let through by an admin's exemption."""

    __tablename__ = "privacy_non_dp_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(48), index=True)
    model: Mapped[str] = mapped_column(String(64))
    run: Mapped[str] = mapped_column(String(256))
    allowed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
