"""`jobctl tokens create|list|revoke`: a tenant's API tokens. The raw token is printed once,
by create, and can never be shown again (only its hash is stored)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from pgjobs.auth.store import create_token, list_tokens, revoke_token
from pgjobs.auth.tokens import display_prefix
from pgjobs.cli.common import echo_rows, json_option, tenant_id, tenant_option
from pgjobs.cli.groups import JobsGroup
from pgjobs.db.models import TokenScope
from pgjobs.db.models.api_token import GRANTABLE_SCOPES

COLUMNS = {
    "ID": lambda t: t.id,
    "NAME": lambda t: t.name,
    "TOKEN": lambda t: display_prefix(t.prefix),
    "SCOPES": lambda t: ",".join(s.value for s in t.scopes),
    "CREATED": lambda t: t.created_at,
    "EXPIRES": lambda t: t.expires_at,
    "LAST USED": lambda t: t.last_used_at,
    "REVOKED": lambda t: t.revoked_at,
}


@click.group(cls=JobsGroup)
def tokens() -> None:
    """API tokens: programmatic access to one tenant over HTTP."""


@tokens.command("create")
@tenant_option
@click.option("--name", required=True, help="What the token is for (shown in listings).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice([s.value for s in GRANTABLE_SCOPES]),
    default=(TokenScope.JOBS_READ.value, TokenScope.JOBS_WRITE.value),
    show_default=True,
    help="Repeat for several.",
)
@click.option("--expires-in-days", type=float, default=None, help="Default: never expires.")
@click.option(
    "--operator",
    is_flag=True,
    help="An operator token: signs in to the dashboard and may switch it to any tenant, "
    "acting there with its scopes (docs/ui.md).",
)
def tokens_create(
    tenant: str, name: str, scopes: tuple[str, ...], expires_in_days: float | None, operator: bool
) -> None:
    """Create a token and print it: copy it now, it is not shown again."""
    expires_at = None
    if expires_in_days is not None:
        if not 0 < expires_in_days <= 3650:
            raise click.BadParameter("must be between 0 and 3650", param_hint="--expires-in-days")
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    made = create_token(
        tenant_id(tenant), name=name, scopes=list(scopes), expires_at=expires_at, operator=operator
    )
    record = made.record
    click.echo(
        f"created token {record.name} ({record.id}), scopes {','.join(record.scopes)}; "
        "it is shown once:",
        err=True,
    )
    click.echo(made.token)


@tokens.command("list")
@tenant_option
@json_option
def tokens_list(tenant: str, as_json: bool) -> None:
    """List the tenant's tokens (their public prefix only)."""
    echo_rows(list_tokens(tenant_id(tenant)), COLUMNS, as_json)


@tokens.command("revoke")
@tenant_option
@click.argument("token", metavar="TOKEN_ID_OR_PREFIX")
def tokens_revoke(tenant: str, token: str) -> None:
    """Revoke a token at once (API processes stop accepting it within
    JOBS_API_TOKEN_CACHE_SECONDS)."""
    revoked = revoke_token(tenant_id(tenant), token)
    click.echo(f"revoked {revoked.name} ({revoked.id})")
