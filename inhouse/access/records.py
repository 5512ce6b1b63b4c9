"""Tables of access control and the audit log, registered on :class:`inhouse.db.Base`.

Times are stored as timezone-aware UTC (:class:`inhouse.db.UTCDateTime`) on SQLite and
PostgreSQL alike. Token rows hold only a keyed hash of the secret, never the secret. The audit
chain head row (id 1 of ``audit_chain_head``) is created with its table; appenders lock it to
extend the hash chain one at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, event, insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.schema import Table

from inhouse.db import Base, UTCDateTime, utcnow

GENESIS_HASH = "0" * 64
CHAIN_HEAD_ID = 1


class PrincipalRecord(Base):
    """A user or service account."""

    __tablename__ = "access_principals"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="user")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RoleBindingRecord(Base):
    """A built-in role held by a principal on a resource pattern."""

    __tablename__ = "access_role_bindings"
    __table_args__ = (UniqueConstraint("principal", "role", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(
        String(128), ForeignKey("access_principals.name"), index=True
    )
    role: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GrantRecord(Base):
    """A direct grant of one action on a resource pattern."""

    __tablename__ = "access_grants"
    __table_args__ = (UniqueConstraint("principal", "action", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(
        String(128), ForeignKey("access_principals.name"), index=True
    )
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TokenRecord(Base):
    """An API token: its public id and a keyed hash of its secret."""

    __tablename__ = "access_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal: Mapped[str] = mapped_column(
        String(128), ForeignKey("access_principals.name"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(128))
    hash_scheme: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRecord(Base):
    """One append-only audit entry, chained to the previous one by ``prev_hash``.

    ``id`` is assigned from the chain head under its lock, so ids are gapless and a
    deleted row shows as a gap as well as a broken link.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    principal: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Unique: two writers racing past the lock could never fork the chain.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainHead(Base):
    """The single row appenders lock: last sequence number and hash of the chain."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def _create_head(target: Table, connection: Connection, **_kw: Any) -> None:
    connection.execute(insert(target).values(id=CHAIN_HEAD_ID, seq=0, hash=GENESIS_HASH))


event.listen(AuditChainHead.__table__, "after_create", _create_head)

ACCESS_TABLES: list[Table] = [
    PrincipalRecord.__table__,  # type: ignore[list-item]
    RoleBindingRecord.__table__,  # type: ignore[list-item]
    GrantRecord.__table__,  # type: ignore[list-item]
    TokenRecord.__table__,  # type: ignore[list-item]
    AuditRecord.__table__,  # type: ignore[list-item]
    AuditChainHead.__table__,  # type: ignore[list-item]
]
"""Every table of this package, for ``Base.metadata.create_all(engine, tables=...)``."""
