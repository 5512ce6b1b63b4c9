"""The one door to the ``model_aliases`` table: names (``champion``, ``previous``,
``candidate``) that point at one version of a model.

Every function works in the caller's session, so an alias moves in the same transaction as
whatever decided the move: the coordinator commits a promotion (state, history, aliases)
atomically, and :meth:`inhouse.registry.Registry.set_alias` wraps a move in its own.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.errors import InvalidInputError, NotFoundError
from inhouse.registry.records import AliasRecord, ModelVersionRecord

ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def validate_alias(alias: str) -> str:
    """Refuse alias names that are not short lowercase words, and ``latest`` (a reference)."""
    if not isinstance(alias, str) or not ALIAS_NAME.fullmatch(alias) or alias == "latest":
        raise InvalidInputError(f"invalid alias {alias!r}")
    return alias


def read_alias(session: Session, model: str, alias: str) -> int | None:
    """The version ``alias`` of ``model`` points at, or None."""
    record = session.get(AliasRecord, (model, alias))
    return None if record is None else record.version


def read_aliases(session: Session, model: str) -> dict[str, int]:
    """Every alias of ``model`` and its version."""
    rows = session.scalars(select(AliasRecord).where(AliasRecord.model == model)).all()
    return {row.alias: row.version for row in rows}


def move_alias(session: Session, model: str, alias: str, version: int | None) -> None:
    """Point ``alias`` of ``model`` at ``version`` in the caller's transaction; None removes it.

    Raises:
        InvalidInputError: ``alias`` is not a valid alias name.
        NotFoundError: ``model`` has no version ``version``.
    """
    validate_alias(alias)
    record = session.get(AliasRecord, (model, alias))
    if version is None:
        if record is not None:
            session.delete(record)
        return
    if session.get(ModelVersionRecord, (model, version)) is None:
        raise NotFoundError(f"model {model!r} has no version {version} to point {alias!r} at")
    if record is None:
        session.add(AliasRecord(model=model, alias=alias, version=version))
    else:
        record.version = version
