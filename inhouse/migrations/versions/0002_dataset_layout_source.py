"""Data sets stored compactly or used in place: the catalog's ``layout`` and ``source``.

``layout`` (JSON, null for data sets made before it): how an inhouse-owned row table stores
its features (for example packed float32/uint8 bytes) and what the import recorded (the
schema, categorical encodings, the held-out split). ``source`` (JSON, null for inhouse's own
``ds_<name>`` tables): an existing table or view of the user's, registered in place.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("layout", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("source", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("source")
        batch.drop_column("layout")
