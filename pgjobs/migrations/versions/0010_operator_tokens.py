"""operator tokens: the ``operator`` scope on api_tokens (docs/ui.md)

An operator token signs in to the dashboard and may switch it to any tenant; it is made by
``jobctl tokens create --operator`` only. The scopes CHECK constraint is swapped to admit the
new value (Alembic's autogenerate does not compare CHECK constraints: reviewed by hand).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCOPES = "'jobs:read', 'jobs:write', 'admin'"
_NAME = "ck_api_tokens_scopes_known"


def upgrade() -> None:
    _swap(f"{_SCOPES}, 'operator'")


def downgrade() -> None:
    # An operator token is not turned into an ordinary token of its tenant: it is deleted.
    op.execute("DELETE FROM api_tokens WHERE 'operator' = ANY(scopes)")
    _swap(_SCOPES)


def _swap(scopes: str) -> None:
    op.drop_constraint(op.f(_NAME), "api_tokens", type_="check")
    op.create_check_constraint(
        op.f(_NAME),
        "api_tokens",
        f"cardinality(scopes) >= 1 AND scopes <@ ARRAY[{scopes}]::varchar[]",
    )
