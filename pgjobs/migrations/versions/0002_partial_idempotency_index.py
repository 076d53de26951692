"""Idempotency keys: a partial unique index instead of a unique constraint

Most jobs carry no idempotency key. A unique constraint indexes every row anyway (NULLs
included), and every row version a job's transitions write adds an entry to it. The partial
index keeps the same guarantee, unique (tenant_id, idempotency_key) where a key is given, for
the rows that have one only. Same name, so errors still name it.

On a large content_jobs table, build the index by hand first with CREATE UNIQUE INDEX
CONCURRENTLY under another name, then run this revision in a maintenance window.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:40:49
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(
        op.f("uq_content_jobs_tenant_id_idempotency_key"), "content_jobs", type_="unique"
    )
    op.create_index(
        "uq_content_jobs_tenant_id_idempotency_key",
        "content_jobs",
        ["tenant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_content_jobs_tenant_id_idempotency_key",
        table_name="content_jobs",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_unique_constraint(
        op.f("uq_content_jobs_tenant_id_idempotency_key"),
        "content_jobs",
        ["tenant_id", "idempotency_key"],
    )
