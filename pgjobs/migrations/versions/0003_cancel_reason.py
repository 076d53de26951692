"""The reason a running job was asked to stop: content_jobs.cancel_reason

A running job stops at its next checkpoint, in the worker; the reason given with the request
has to wait in the row until then, for the job's ``cancelled`` event. A nullable column
without a default: adding it rewrites nothing, on any size of table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 10:36:42
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("content_jobs", sa.Column("cancel_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("content_jobs", "cancel_reason")
