"""limits: concurrency keys on content_jobs, the waiting status and event (docs/limits.md)

A job type with a concurrency limit stores its key and maximum on each job at enqueue; a claim
that finds every slot of the key taken parks the job as ``waiting`` with a ``waiting`` event.
The status and event CHECK constraints are swapped to admit the new values (Alembic's
autogenerate does not compare CHECK constraints: reviewed by hand).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'pending', 'queued', 'active', 'succeeded', 'failed', 'cancelled'"
_EVENTS = (
    "'enqueued', 'started', 'progress', 'retry', 'completed', 'failed', 'cancelled', 'rescued'"
)


def upgrade() -> None:
    op.add_column("content_jobs", sa.Column("concurrency_key", sa.String(length=300)))
    op.add_column("content_jobs", sa.Column("concurrency_max", sa.SmallInteger()))
    op.create_check_constraint(
        op.f("ck_content_jobs_concurrency_pair"),
        "content_jobs",
        "(concurrency_key IS NULL) = (concurrency_max IS NULL)",
    )
    op.create_index(
        "ix_content_jobs_concurrency_key",
        "content_jobs",
        ["concurrency_key", "status"],
        unique=False,
        postgresql_where=sa.text("concurrency_key IS NOT NULL"),
    )
    _swap("content_jobs", "ck_content_jobs_status", f"status IN ({_STATUSES}, 'waiting')")
    _swap("job_events", "ck_job_events_event_type", f"event_type IN ({_EVENTS}, 'waiting')")


def downgrade() -> None:
    # Waiting jobs go back to queued (the relay re-sends them); their events stay as 'rescued'.
    op.execute("UPDATE content_jobs SET status = 'queued' WHERE status = 'waiting'")
    op.execute("UPDATE job_events SET event_type = 'rescued' WHERE event_type = 'waiting'")
    _swap("job_events", "ck_job_events_event_type", f"event_type IN ({_EVENTS})")
    _swap("content_jobs", "ck_content_jobs_status", f"status IN ({_STATUSES})")
    op.drop_index(
        "ix_content_jobs_concurrency_key",
        table_name="content_jobs",
        postgresql_where=sa.text("concurrency_key IS NOT NULL"),
    )
    op.drop_constraint(op.f("ck_content_jobs_concurrency_pair"), "content_jobs", type_="check")
    op.drop_column("content_jobs", "concurrency_max")
    op.drop_column("content_jobs", "concurrency_key")


def _swap(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(name), table, type_="check")
    op.create_check_constraint(op.f(name), table, condition)
