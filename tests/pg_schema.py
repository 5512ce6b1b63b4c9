"""Dropping a test's PostgreSQL schema: dispose the engines that point at it, then drop it,
retrying while a just-killed process (an actor, a replica) still holds one of its locks."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError


def drop_schema(admin: Any, schema: str, *, attempts: int = 10) -> None:
    from inhouse import db

    for url in [u for u in db._engines if schema in u]:
        db._engines.pop(url).dispose()
    for attempt in range(attempts):
        try:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            return
        except OperationalError:  # deadlock or lock timeout with a dying process
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
