"""Registry tables: immutable model versions and movable aliases (``champion``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKeyConstraint, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from inhouse.db import Base


class ModelVersionRecord(Base):
    """One registered version; never updated after insert (but for the one-time strip of
    non-public lineage fields from rows of older registries, :mod:`inhouse.registry.lineage`).

    ``lineage`` holds only the public fields; the whole lineage is in the version's file.
    """

    __tablename__ = "model_versions"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    path: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(32), default="safetensors")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)


class AliasRecord(Base):
    """A name (``champion``, ``canary``) pointing at one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model", "version"], ["model_versions.model", "model_versions.version"]
        ),
    )

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    alias: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
