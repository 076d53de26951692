"""job_schedules: periodic job definitions (docs/schedules.md)

One row per schedule, tenant-scoped, its name unique per tenant. The partial index on
``next_run_at`` of active schedules serves the scheduler's scan of due schedules.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 10:35:39
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_schedules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("job_type", sa.String(length=100), nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column(
            "timezone", sa.String(length=64), server_default=sa.text("'UTC'"), nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "paused",
                "archived",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "misfire_policy",
            sa.Enum(
                "skip",
                "run_once",
                "catch_up",
                name="misfire_policy",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("catch_up_limit", sa.SmallInteger(), nullable=True),
        sa.Column("jitter_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("declared", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(misfire_policy = 'catch_up') = (catch_up_limit IS NOT NULL)",
            name=op.f("ck_job_schedules_catch_up_limit"),
        ),
        sa.CheckConstraint(
            "(status = 'active') = (next_run_at IS NOT NULL)",
            name=op.f("ck_job_schedules_active_next_run"),
        ),
        sa.CheckConstraint(
            "(cron IS NULL) <> (interval_seconds IS NULL)", name=op.f("ck_job_schedules_one_timing")
        ),
        sa.CheckConstraint(
            "catch_up_limit >= 1", name=op.f("ck_job_schedules_catch_up_limit_positive")
        ),
        sa.CheckConstraint(
            "interval_seconds >= 1", name=op.f("ck_job_schedules_interval_positive")
        ),
        sa.CheckConstraint("jitter_seconds >= 0", name=op.f("ck_job_schedules_jitter_nonnegative")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_job_schedules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_schedules")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_job_schedules_tenant_id_name")),
    )
    op.create_index(
        "ix_job_schedules_due",
        "job_schedules",
        ["next_run_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_job_schedules_due",
        table_name="job_schedules",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("job_schedules")
