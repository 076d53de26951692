"""rate limits: the rate_windows table and content_jobs.rate_key (docs/limits.md)

A rate key's window keeps the start times of its jobs within the last ``per`` seconds; a claim
over the rate parks the job ``waiting`` with ``rate_key`` set and ``run_at`` at the time its
window has room (no new status: ``waiting`` already exists, revision 0007).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 16:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RATE_INDEX_WHERE = sa.text("rate_key IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "rate_windows",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("starts", postgresql.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_windows")),
    )
    op.add_column("content_jobs", sa.Column("rate_key", sa.String(length=300)))
    op.create_index(
        "ix_content_jobs_rate_key",
        "content_jobs",
        ["rate_key", "status"],
        unique=False,
        postgresql_where=_RATE_INDEX_WHERE,
    )


def downgrade() -> None:
    # Jobs waiting for a rate become queued: the relay re-sends them.
    op.execute(
        "UPDATE content_jobs SET status = 'queued' WHERE status = 'waiting' AND rate_key IS NOT NULL"
    )
    op.drop_index(
        "ix_content_jobs_rate_key", table_name="content_jobs", postgresql_where=_RATE_INDEX_WHERE
    )
    op.drop_column("content_jobs", "rate_key")
    op.drop_table("rate_windows")
