"""tenant_quotas: jobs per day per tenant, and today's counts (docs/producer.md, "Quotas")

``tenant_quotas`` holds a tenant's daily maximum, for all its job types (``job_type = '*'``) or
for one; ``tenant_quota_usage`` counts the jobs created per UTC day of the database clock, and
its CHECK ``used <= per_day`` is what refuses an enqueue over the quota.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 13:45:17
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_quota_usage",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("job_type", sa.String(length=100), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("per_day", sa.Integer(), nullable=False),
        sa.CheckConstraint("used <= per_day", name=op.f("ck_tenant_quota_usage_quota_within")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_quota_usage_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "day", "job_type", name=op.f("pk_tenant_quota_usage")),
    )
    op.create_table(
        "tenant_quotas",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("job_type", sa.String(length=100), nullable=False),
        sa.Column("per_day", sa.Integer(), nullable=False),
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
        sa.CheckConstraint("per_day >= 0", name=op.f("ck_tenant_quotas_per_day_not_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_quotas_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "job_type", name=op.f("pk_tenant_quotas")),
    )


def downgrade() -> None:
    op.drop_table("tenant_quotas")
    op.drop_table("tenant_quota_usage")
