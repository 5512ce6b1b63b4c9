"""Schema migrations: a fresh database, one made by the last release without migrations
(7a7d38b's ``create_all``, kept as the DDL it ran in ``schema_7a7d38b/``), an up-to-date one,
and processes starting at once; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text

from inhouse import schema
from inhouse.data.table import rows_table
from inhouse.db import connect
from inhouse.errors import InhouseError
from inhouse.migrations.metadata import model_metadata
from inhouse.registry import Registry
from inhouse.schema import HEAD, alembic_config, current_revision, get_engine
from tests.polling import wait_for

BASELINE = Path(__file__).parent / "schema_7a7d38b"
REPO = Path(__file__).resolve().parents[2]


def _run_baseline(engine: Engine, *, skip: tuple[str, ...] = ()) -> None:
    """Make the schema exactly as 7a7d38b's ``create_all`` did (minus the ``skip`` tables)."""
    script = (BASELINE / f"{engine.dialect.name}.sql").read_text()
    statements = [s.strip() for s in script.split(";\n") if s.strip()]
    with engine.begin() as conn:
        for statement in statements:
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
            if not any(re.search(rf"\b{name}\b", body.split("(")[0]) for name in skip):
                conn.exec_driver_sql(body)


def _shape(engine: Engine) -> dict[str, Any]:
    """Everything the schema says about each table but alembic_version."""
    found: dict[str, Any] = {}
    insp = inspect(engine)
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        found[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": [
                (f["constrained_columns"], f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ],
            "indexes": sorted(
                (i["name"], i["column_names"], i["unique"]) for i in insp.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], u["column_names"]) for u in insp.get_unique_constraints(table)
            ),
        }
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            found["sqlite_master"] = [
                (kind, name, re.sub(r"\s+", " ", sql or ""))
                for kind, name, sql in conn.exec_driver_sql(
                    "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '%alembic%' "
                    "ORDER BY name"
                )
            ]
    return found


def test_head_is_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_the_baseline_migration_makes_7a7d38bs_schema_exactly(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:  # revision 0001 alone: later ones change the schema
            command.upgrade(alembic_config(connection=conn), "0001")
            conn.commit()
        migrated = _shape(engine)
        with engine.connect() as conn:
            head = conn.execute(text("SELECT id, seq, hash FROM audit_chain_head")).all()
            command.downgrade(alembic_config(connection=conn), "base")
            conn.commit()
        assert set(inspect(engine).get_table_names()) - {"sqlite_sequence"} == {"alembic_version"}
        _run_baseline(engine)
        assert migrated == _shape(engine)
        assert head == [(1, 0, "0" * 64)]  # the chain head row is made with its table
    finally:
        schema._migrated.discard(engine)
        engine.dispose()


def test_the_migrations_match_the_models_and_leave_other_tables_alone(db_url: str) -> None:
    engine = get_engine(db_url)
    with engine.begin() as conn:  # a data set's rows and a table of the user's own
        rows_table("digits").create(conn)
        conn.exec_driver_sql("CREATE TABLE customer_orders (id INTEGER PRIMARY KEY)")
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": schema.include_name, "compare_type": True}
        )
        assert compare_metadata(context, model_metadata()) == []


def test_a_database_made_before_migrations_is_adopted_with_its_rows(
    db_url: str, tmp_path: Path
) -> None:
    legacy = create_engine(db_url)
    _run_baseline(legacy)
    with legacy.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_versions (model, version, path, format, encrypted, sha256, "
                "size_bytes, spec, metrics, lineage) VALUES ('digits', 1, 'digits/v1', "
                "'safetensors', false, :sha, 10, '{}', '{}', '{}')"
            ),
            {"sha": "a" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO model_aliases (model, alias, version) VALUES ('digits', 'champion', 1)"
            )
        )
    legacy.dispose()

    engine = get_engine(db_url)
    assert current_revision(engine) == HEAD
    assert Registry(engine=engine, root=tmp_path).aliases("digits") == {"champion": 1}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_chain_head")).scalar() == 1


def test_a_database_missing_some_tables_gets_them(db_url: str) -> None:
    legacy = create_engine(db_url)
    _run_baseline(legacy, skip=("coordinator_canary", "canary_traffic"))
    legacy.dispose()
    engine = get_engine(db_url)
    assert {"coordinator_canary", "canary_traffic"} <= set(inspect(engine).get_table_names())
    assert current_revision(engine) == HEAD


def test_a_database_from_a_newer_inhouse_is_refused(db_url: str) -> None:
    newer = create_engine(db_url)
    schema.upgrade(newer)
    with newer.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    schema._migrated.discard(newer)
    newer.dispose()
    with pytest.raises(InhouseError, match="newer inhouse"):
        get_engine(db_url)


def test_an_up_to_date_start_is_one_check_then_none(db_url: str) -> None:
    get_engine(db_url)
    engine = connect(db_url)
    schema._migrated.discard(engine)  # as a new process finds it
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    get_engine(db_url)
    assert len(statements) <= 2 and "alembic_version" in statements[-1]
    get_engine(db_url)
    assert len(statements) <= 2  # cached for the process


_CHILD = """
import sys, time
from pathlib import Path
from inhouse.schema import current_revision, get_engine
url, go, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():  # all start migrating together
    time.sleep(0.005)
print(current_revision(get_engine(url)), "alembic" in sys.modules)
"""


def _run_together(url: str, tmp_path: Path, n: int) -> list[str]:
    """Start ``n`` processes that open ``url`` at the same moment; returns what they print."""
    paths = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(n)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, str(go), str(path)],
            env={**os.environ, "PYTHONPATH": paths},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in ready
    ]
    wait_for(lambda: all(p.exists() for p in ready), timeout_s=120, what="children imported")
    go.touch()
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * n, outputs
    return [out.strip() for out, _err in outputs]


def test_processes_starting_at_once_all_come_up(db_url: str, tmp_path: Path) -> None:
    printed = _run_together(db_url, tmp_path, 3)
    assert [line.split()[0] for line in printed] == [HEAD] * 3
    assert current_revision(get_engine(db_url)) == HEAD


def test_a_process_finding_the_database_up_to_date_never_loads_alembic(
    db_url: str, tmp_path: Path
) -> None:
    get_engine(db_url)
    assert _run_together(db_url, tmp_path, 1) == [f"{HEAD} False"]


def test_own_tables_lists_every_table_of_the_models() -> None:
    from inhouse.db import OWN_TABLES

    assert OWN_TABLES == set(model_metadata().tables) | {"alembic_version"}
