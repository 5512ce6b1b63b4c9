"""Sealing: give committed rows their place in commit order (``seq``), one sealer at a time.

Row ids come from a sequence when a transaction inserts, not when it commits: a transaction
holding id 5 can commit after another's id 6 was already read, so a ``max(id)`` watermark
would skip row 5 for ever. The stream therefore counts in ``seq`` instead. A sealer numbers
the committed rows that have none, in id order, after the largest ``seq`` so far::

    UPDATE t SET seq = base + row_number() OVER (ORDER BY id) WHERE seq IS NULL

Sealers run one at a time per data set (PostgreSQL: a transaction-scoped advisory lock taken
before the statement reads anything, so each sealer sees every earlier sealer's commit;
SQLite: the database's single write lock). A row committed late is sealed later, with a
``seq`` above every watermark already handed out: nothing is skipped and nothing is renumbered.
Readers see only sealed rows (``seq`` not null); every watermark, row window and privacy-ledger
span is a ``seq`` range (rows made before sealing existed have ``seq = id``, migration 0003).

inhouse's own writers number their rows in their inserting transaction, under the lock
(:func:`reserve_seqs`: no UPDATE, so bulk imports pay nothing for it); rows that other
systems INSERT with plain SQL are sealed when inhouse next looks (:func:`seal`, called by
``describe`` and the coordinator's poll).
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from inhouse.data.table import validate_name

LOCK_CLASS = 0x1F5E  # advisory lock key space of the sealers (the second key is the table's)


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def lock_sealer(conn: Connection, table_name: str) -> None:
    """Hold this data set's sealer lock until the transaction ends: PostgreSQL's advisory lock;
    on SQLite the database's write lock, taken now by a write that changes nothing (a plain
    SELECT would run before pysqlite's implicit BEGIN)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:cls, hashtext(:name))"),
            {"cls": LOCK_CLASS, "name": table_name},
        )
    else:
        conn.execute(text(f"UPDATE {_quote(conn, table_name)} SET seq = seq WHERE 0 = 1"))


def reserve_seqs(conn: Connection, table_name: str) -> int:
    """For a writer about to insert rows with explicit ``seq`` values: take the sealer lock
    (kept until the caller's transaction ends) and return the first free ``seq``; give the
    rows ``first, first + 1, ...`` in the same transaction. No UPDATE afterwards."""
    lock_sealer(conn, table_name)
    t = _quote(conn, table_name)
    return int(conn.execute(text(f"SELECT COALESCE(MAX(seq), 0) FROM {t}")).scalar_one()) + 1


def seal_in(conn: Connection, table_name: str) -> int:
    """Seal the unsealed rows visible to ``conn``'s transaction (its own included); returns
    how many. Takes the sealer lock, kept until the caller's transaction ends."""
    lock_sealer(conn, table_name)
    t = _quote(conn, table_name)
    result = conn.execute(
        text(
            f"UPDATE {t} SET seq = s.base + s.rn FROM ("
            f"SELECT id AS sid, row_number() OVER (ORDER BY id) AS rn, "
            f"(SELECT COALESCE(MAX(seq), 0) FROM {t}) AS base "
            f"FROM {t} WHERE seq IS NULL) AS s WHERE {t}.id = s.sid"
        )
    )
    return int(result.rowcount or 0)


def unsealed(conn: Connection, table_name: str) -> bool:
    """Whether any committed row still waits for its ``seq`` (one indexed probe)."""
    t = _quote(conn, table_name)
    found = conn.execute(text(f"SELECT 1 FROM {t} WHERE seq IS NULL LIMIT 1")).first()
    return found is not None


def seal(engine: Engine, dataset: str) -> int:
    """Seal the rows of inhouse's own table of ``dataset`` that others inserted; returns how
    many were sealed (0 costs one indexed probe and no lock)."""
    table_name = f"ds_{validate_name(dataset)}"
    with engine.connect() as conn:
        if not unsealed(conn, table_name):
            return 0
    with engine.begin() as conn:
        return seal_in(conn, table_name)
