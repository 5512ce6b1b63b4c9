"""The schema of the last release without migrations (``db.create_all`` at commit 7a7d38b).

A table that already exists is left as it is, so a database made by that release (or one
whose older release made only some of these tables) is adopted: the missing tables are made
and the database is stamped at this revision. Data-set row tables (``ds_*``) are not here.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)
GENESIS_HASH = "0" * 64
INDEXED = {  # ix_<table>_<column>
    "audit_log": ["ts"],
    "canary_traffic": ["model", "at"],
    "coordinator_events": ["model", "kind"],
    "privacy_charges": ["dataset", "status"],
    "privacy_non_dp_runs": ["dataset"],
    "access_role_bindings": ["principal"],
    "access_grants": ["principal"],
    "access_tokens": ["principal"],
}
AUTOINCREMENT = {"canary_traffic", "coordinator_events"}  # ids never reused on SQLite either


def Col(name: str, type_: Any, null: bool = False, **kw: Any) -> sa.Column[Any]:
    """A column, NOT NULL unless ``null``."""
    return sa.Column(name, type_, nullable=null, **kw)


def _created(name: str = "created_at") -> sa.Column[Any]:
    return Col(name, UTC, server_default=sa.func.now())


def _access(what: str, length: int) -> list[Any]:
    """``access_role_bindings`` (role) and ``access_grants`` (action) share one shape."""
    return [
        Col("id", sa.Integer()),
        Col("principal", sa.String(128)),
        Col(what, sa.String(length)),
        Col("resource", sa.String(128)),
        Col("created_at", UTC),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("principal", what, "resource"),
        sa.ForeignKeyConstraint(["principal"], ["access_principals.name"]),
    ]


def _tables() -> dict[str, list[Any]]:
    """Every table's columns and constraints, in the order ``create_all`` made them."""
    return {
        "access_principals": [
            Col("name", sa.String(128)),
            Col("kind", sa.String(16)),
            Col("disabled", sa.Boolean()),
            Col("created_at", UTC),
            sa.PrimaryKeyConstraint("name"),
        ],
        "audit_log": [
            Col("id", sa.Integer()),
            Col("ts", UTC),
            Col("principal", sa.String(128)),
            Col("action", sa.String(64)),
            Col("resource", sa.String(128)),
            Col("outcome", sa.String(8)),
            Col("request_id", sa.String(128), True),
            Col("detail", sa.Text(), True),
            Col("prev_hash", sa.String(64)),
            Col("hash", sa.String(64)),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("prev_hash"),
            sa.UniqueConstraint("hash"),
        ],
        "audit_chain_head": [
            Col("id", sa.Integer(), autoincrement=False),
            Col("seq", sa.Integer()),
            Col("hash", sa.String(64)),
            sa.PrimaryKeyConstraint("id"),
        ],
        "canary_traffic": [
            Col("id", BIG_ID),
            Col("model", sa.String(64)),
            Col("version", sa.Integer()),
            Col("at", sa.Float()),
            Col("requests", sa.Integer()),
            Col("errors", sa.Integer()),
            Col("latency_ms_sum", sa.Float()),
            Col("buckets", sa.JSON()),
            sa.PrimaryKeyConstraint("id"),
        ],
        "coordinator_canary": [
            Col("model", sa.String(64)),
            Col("version", sa.Integer()),
            Col("champion_version", sa.Integer()),
            Col("share", sa.Float()),
            Col("started_at", sa.Float()),
            Col("ends_at", sa.Float()),
            sa.PrimaryKeyConstraint("model"),
        ],
        "model_versions": [
            Col("model", sa.String(64)),
            Col("version", sa.Integer(), autoincrement=False),
            _created(),
            Col("path", sa.String(512)),
            Col("format", sa.String(32)),
            Col("encrypted", sa.Boolean()),
            Col("sha256", sa.String(64)),
            Col("size_bytes", sa.Integer()),
            Col("spec", sa.JSON()),
            Col("metrics", sa.JSON()),
            Col("lineage", sa.JSON()),
            sa.PrimaryKeyConstraint("model", "version"),
        ],
        "coordinator_state": [
            Col("model", sa.String(64)),
            Col("dataset", sa.String(48)),
            Col("settings", sa.JSON()),
            Col("status", sa.String(16)),
            Col("watermark", sa.BigInteger()),
            Col("last_run_at", sa.Float()),
            Col("champion_version", sa.Integer(), True),
            Col("candidate_version", sa.Integer(), True),
            Col("job", sa.JSON(), True),
            Col("failures", sa.Integer()),
            Col("next_attempt_at", sa.Float()),
            Col("manual_seen_id", sa.BigInteger()),
            Col("revision", sa.Integer()),
            Col("updated_at", sa.Float()),
            sa.PrimaryKeyConstraint("model"),
        ],
        "coordinator_events": [
            Col("id", BIG_ID),
            Col("model", sa.String(64)),
            Col("at", sa.Float()),
            Col("kind", sa.String(32)),
            Col("detail", sa.JSON()),
            sa.PrimaryKeyConstraint("id"),
        ],
        "datasets": [
            Col("name", sa.String(48)),
            Col("kind", sa.String(16)),
            Col("n_features", sa.Integer()),
            Col("feature_names", sa.JSON()),
            Col("class_names", sa.JSON()),
            Col("description", sa.Text()),
            _created(),
            sa.PrimaryKeyConstraint("name"),
        ],
        "privacy_budgets": [
            Col("dataset", sa.String(48)),
            Col("epsilon", sa.Float(), True),
            Col("delta", sa.Float(), True),
            Col("accountant", sa.String(16)),
            Col("set_by", sa.String(128), True),
            Col("updated_at", UTC),
            Col("non_dp_allowed", sa.Boolean()),
            Col("non_dp_reason", sa.Text(), True),
            Col("non_dp_by", sa.String(128), True),
            Col("non_dp_at", UTC, True),
            Col("seq", sa.Integer()),
            sa.PrimaryKeyConstraint("dataset"),
        ],
        "privacy_charges": [
            Col("id", sa.Integer()),
            Col("dataset", sa.String(48)),
            Col("first_id", BIG_ID),
            Col("up_to_id", BIG_ID),
            Col("noise_multiplier", sa.Float()),
            Col("sample_rate", sa.Float()),
            Col("planned_steps", sa.Integer()),
            Col("steps", sa.Integer()),
            Col("clipping", sa.Float()),
            Col("accountant", sa.String(16)),
            Col("delta", sa.Float()),
            Col("epsilon", sa.Float()),
            Col("model", sa.String(64)),
            Col("run", sa.String(256)),
            Col("version", sa.Integer(), True),
            Col("status", sa.String(16)),
            Col("created_at", UTC),
            Col("settled_at", UTC, True),
            Col("refunded_by", sa.String(128), True),
            Col("refund_reason", sa.Text(), True),
            sa.PrimaryKeyConstraint("id"),
        ],
        "privacy_non_dp_runs": [
            Col("id", sa.Integer()),
            Col("dataset", sa.String(48)),
            Col("model", sa.String(64)),
            Col("run", sa.String(256)),
            Col("allowed_by", sa.String(128), True),
            Col("reason", sa.Text(), True),
            Col("created_at", UTC),
            sa.PrimaryKeyConstraint("id"),
        ],
        "access_role_bindings": _access("role", 32),
        "access_grants": _access("action", 64),
        "access_tokens": [
            Col("token_id", sa.String(32)),
            Col("principal", sa.String(128)),
            Col("secret_hash", sa.String(128)),
            Col("hash_scheme", sa.String(32)),
            Col("description", sa.String(256)),
            Col("created_at", UTC),
            Col("expires_at", UTC),
            Col("revoked_at", UTC, True),
            Col("last_used_at", UTC, True),
            sa.PrimaryKeyConstraint("token_id"),
            sa.ForeignKeyConstraint(["principal"], ["access_principals.name"]),
        ],
        "model_aliases": [
            Col("model", sa.String(64)),
            Col("alias", sa.String(32)),
            Col("version", sa.Integer()),
            _created("updated_at"),
            sa.PrimaryKeyConstraint("model", "alias"),
            sa.ForeignKeyConstraint(
                ["model", "version"], ["model_versions.model", "model_versions.version"]
            ),
        ],
    }


def upgrade() -> None:
    existing: set[str] = set()
    if not context.is_offline_mode():
        existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, items in _tables().items():
        if name in existing:
            continue
        table = op.create_table(name, *items, sqlite_autoincrement=name in AUTOINCREMENT)
        for column in INDEXED.get(name, []):
            op.create_index(f"ix_{name}_{column}", name, [column])
        if name == "audit_chain_head":  # the row appenders lock; made with its table
            op.bulk_insert(table, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    for name in reversed(_tables()):
        op.drop_table(name)
