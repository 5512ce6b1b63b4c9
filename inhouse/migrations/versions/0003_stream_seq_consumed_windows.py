"""The stream counts in commit order: ``seq`` on every row table, and consumed windows.

Row tables (``ds_<name>``, one per data set the catalog lists without a ``source``) get a
nullable ``seq`` column with a unique index (:mod:`inhouse.data.seal`); their existing rows
get ``seq = id``, so every watermark, lineage row window and privacy-ledger span recorded in
ids before stays valid. ``consumed_windows`` records a row count and checksum per consumed
``seq`` window (:mod:`inhouse.data.consumed`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _row_tables() -> list[str]:
    bind = op.get_bind()
    names = bind.execute(sa.text("SELECT name FROM datasets WHERE source IS NULL")).scalars()
    existing = set(sa.inspect(bind).get_table_names())
    return [f"ds_{n}" for n in names if f"ds_{n}" in existing]


def upgrade() -> None:
    bind = op.get_bind()
    for table in _row_tables():
        columns = {c["name"] for c in sa.inspect(bind).get_columns(table)}
        if "seq" in columns:
            continue
        op.add_column(table, sa.Column("seq", sa.BigInteger(), nullable=True))
        quoted = bind.dialect.identifier_preparer.quote(table)
        op.execute(sa.text(f"UPDATE {quoted} SET seq = id"))
        op.create_index(f"ux_{table}_seq", table, ["seq"], unique=True)
    op.create_table(
        "consumed_windows",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("dataset", sa.String(48), nullable=False),
        sa.Column("after_seq", sa.BigInteger(), nullable=False),
        sa.Column("up_to_seq", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", "after_seq"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_consumed_windows_dataset", "consumed_windows", ["dataset"])


def downgrade() -> None:
    op.drop_index("ix_consumed_windows_dataset", table_name="consumed_windows")
    op.drop_table("consumed_windows")
    for table in _row_tables():
        op.drop_index(f"ux_{table}_seq", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("seq")
