"""fair shares: share keys on content_jobs, the held status, tenants' weights (docs/limits.md)

A job of a fair queue stores its share (``<queue>:<tenant id>``) and the share's size at
enqueue; a due job beyond it is written ``held`` and sent when the tenant's earlier jobs
finish. The status CHECK constraint is swapped to admit ``held`` (Alembic's autogenerate does
not compare CHECK constraints: reviewed by hand).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'pending', 'queued', 'active', 'succeeded', 'failed', 'cancelled', 'waiting'"
_SHARE_INDEX_WHERE = sa.text("share_key IS NOT NULL")


def upgrade() -> None:
    op.add_column(
        "tenants",
        sa.Column("share_weight", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_tenants_share_weight_range"), "tenants", "share_weight BETWEEN 1 AND 100"
    )
    op.add_column("content_jobs", sa.Column("share_key", sa.String(length=300)))
    op.add_column("content_jobs", sa.Column("share_max", sa.Integer()))
    op.create_check_constraint(
        op.f("ck_content_jobs_share_pair"),
        "content_jobs",
        "(share_key IS NULL) = (share_max IS NULL)",
    )
    op.create_index(
        "ix_content_jobs_share_key",
        "content_jobs",
        ["share_key", "status"],
        unique=False,
        postgresql_where=_SHARE_INDEX_WHERE,
    )
    _set_statuses(f"status IN ({_STATUSES}, 'held')")


def downgrade() -> None:
    # Held jobs become pending: the relay sends them.
    op.execute("UPDATE content_jobs SET status = 'pending' WHERE status = 'held'")
    _set_statuses(f"status IN ({_STATUSES})")
    op.drop_index(
        "ix_content_jobs_share_key", table_name="content_jobs", postgresql_where=_SHARE_INDEX_WHERE
    )
    op.drop_constraint(op.f("ck_content_jobs_share_pair"), "content_jobs", type_="check")
    op.drop_column("content_jobs", "share_max")
    op.drop_column("content_jobs", "share_key")
    op.drop_constraint(op.f("ck_tenants_share_weight_range"), "tenants", type_="check")
    op.drop_column("tenants", "share_weight")


def _set_statuses(condition: str) -> None:
    op.drop_constraint(op.f("ck_content_jobs_status"), "content_jobs", type_="check")
    op.create_check_constraint(op.f("ck_content_jobs_status"), "content_jobs", condition)
