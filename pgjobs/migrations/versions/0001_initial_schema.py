"""initial schema: tenants, app_credentials, mcp_servers, content_jobs, job_events

Revision ID: 0001
Revises:
Create Date: 2026-11-23 08:40:49.898502
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
    )
    op.create_table(
        "app_credentials",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column(
            "provider",
            sa.Enum(
                "openai",
                "espn",
                "cfbd",
                "custom",
                name="provider",
                native_enum=False,
                create_constraint=True,
                length=14,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("secret_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("secret_mask", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "valid",
                "invalid",
                "unknown",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            nullable=False,
        ),
        sa.Column("last_validated_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_app_credentials_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_credentials")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_app_credentials_tenant_id_id")),
        sa.UniqueConstraint(
            "tenant_id", "provider", "name", name=op.f("uq_app_credentials_tenant_id_provider_name")
        ),
    )
    op.create_index("ix_app_credentials_key_id", "app_credentials", ["key_id"], unique=False)
    op.create_table(
        "content_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "queued",
                "active",
                "succeeded",
                "failed",
                "cancelled",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=17,
            ),
            nullable=False,
        ),
        sa.Column("queue_job_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.SmallInteger(), server_default=sa.text("3"), nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "run_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("progress", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("progress_message", sa.String(length=500), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
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
            "(status IN ('succeeded', 'failed', 'cancelled')) = (completed_at IS NOT NULL)",
            name=op.f("ck_content_jobs_finalized"),
        ),
        sa.CheckConstraint(
            "status <> 'active' OR lease_expires_at IS NOT NULL",
            name=op.f("ck_content_jobs_active_lease"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_content_jobs_attempts_nonnegative")),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_content_jobs_max_attempts_positive")),
        sa.CheckConstraint(
            "progress BETWEEN 0 AND 100", name=op.f("ck_content_jobs_progress_range")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_content_jobs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_jobs")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_content_jobs_tenant_id_idempotency_key")
        ),
    )
    op.create_index(
        "ix_content_jobs_active_lease",
        "content_jobs",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_content_jobs_completed_at",
        "content_jobs",
        ["completed_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    )
    op.create_index(
        "ix_content_jobs_live_run_at",
        "content_jobs",
        ["run_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'queued')"),
    )
    op.create_index(
        "ix_content_jobs_tenant_id_id", "content_jobs", ["tenant_id", "id"], unique=False
    )
    op.create_index(
        "ix_content_jobs_tenant_id_status_id",
        "content_jobs",
        ["tenant_id", "status", "id"],
        unique=False,
    )
    op.create_index(
        "ix_content_jobs_tenant_id_type_id",
        "content_jobs",
        ["tenant_id", "type", "id"],
        unique=False,
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column(
            "event_type",
            sa.Enum(
                "enqueued",
                "started",
                "progress",
                "retry",
                "completed",
                "failed",
                "cancelled",
                "rescued",
                name="event_type",
                native_enum=False,
                create_constraint=True,
                length=17,
            ),
            nullable=False,
        ),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["content_jobs.id"],
            name=op.f("fk_job_events_job_id_content_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_job_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"], unique=False)
    op.create_table(
        "mcp_servers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("base_url", sa.String(length=2048), nullable=False),
        sa.Column(
            "auth_type",
            sa.Enum(
                "none",
                "token",
                "basic",
                name="auth_type",
                native_enum=False,
                create_constraint=True,
                length=13,
            ),
            nullable=False,
        ),
        sa.Column("auth_ref", sa.UUID(), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "unknown",
                "online",
                "offline",
                "error",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            nullable=False,
        ),
        sa.Column("last_ping_at", sa.DateTime(timezone=True), nullable=True),
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
            "auth_type = 'none' OR auth_ref IS NOT NULL",
            name=op.f("ck_mcp_servers_auth_ref_required"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "auth_ref"],
            ["app_credentials.tenant_id", "app_credentials.id"],
            name="fk_mcp_servers_auth_ref_app_credentials",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_mcp_servers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_servers")),
        sa.UniqueConstraint("tenant_id", "label", name=op.f("uq_mcp_servers_tenant_id_label")),
    )


def downgrade() -> None:
    op.drop_table("mcp_servers")
    op.drop_index("ix_job_events_job_id_id", table_name="job_events")
    op.drop_table("job_events")
    op.drop_index("ix_content_jobs_tenant_id_type_id", table_name="content_jobs")
    op.drop_index("ix_content_jobs_tenant_id_status_id", table_name="content_jobs")
    op.drop_index("ix_content_jobs_tenant_id_id", table_name="content_jobs")
    op.drop_index(
        "ix_content_jobs_live_run_at",
        table_name="content_jobs",
        postgresql_where=sa.text("status IN ('pending', 'queued')"),
    )
    op.drop_index(
        "ix_content_jobs_completed_at",
        table_name="content_jobs",
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    )
    op.drop_index(
        "ix_content_jobs_active_lease",
        table_name="content_jobs",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("content_jobs")
    op.drop_index("ix_app_credentials_key_id", table_name="app_credentials")
    op.drop_table("app_credentials")
    op.drop_table("tenants")
