"""`jobctl credentials ...`: a tenant's provider credentials. Secrets are read from stdin or a
hidden prompt, never from an argument (arguments end up in shell history and `ps`), and are
never printed: listings show the mask."""

from __future__ import annotations

import sys
import uuid

import click

from pgjobs.cli.common import (
    echo_result,
    echo_rows,
    json_option,
    read_text,
    tenant_id,
    tenant_option,
)
from pgjobs.cli.groups import JobsGroup
from pgjobs.cli.seed import import_env_credentials
from pgjobs.db.models import CredentialStatus, Provider
from pgjobs.db.schemas.credential import CredentialRead
from pgjobs.vault import credentials as api

COLUMNS = {
    "ID": lambda c: c.id,
    "PROVIDER": lambda c: c.provider.value,
    "NAME": lambda c: c.name,
    "SECRET": lambda c: c.secret_mask,
    "STATUS": lambda c: c.status.value,
    "VALIDATED": lambda c: c.last_validated_at,
    "KEY": lambda c: c.key_id,
}
credential_argument = click.argument("credential", metavar="CREDENTIAL")
SECRET_INPUT_BYTES = 64 * 1024
"""Standard input read for a secret, at most (a secret is at most 8,192 characters)."""


def resolve_credential(tenant: uuid.UUID, ref: str) -> CredentialRead:
    """CREDENTIAL as given on the command line: an id, or ``provider/name``."""
    try:
        return api.get_credential(tenant, uuid.UUID(ref))
    except ValueError:
        pass
    provider, sep, name = ref.partition("/")
    if not sep:
        raise click.BadParameter("give a credential id or provider/name", param_hint="CREDENTIAL")
    return api.find_credential(tenant, provider, name)


def read_secret(prompt: str) -> str:
    """The secret from piped stdin (one trailing newline dropped), else a hidden prompt."""
    if sys.stdin.isatty():
        value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
        return value
    secret = read_text(sys.stdin.buffer, "standard input", SECRET_INPUT_BYTES)
    return secret.removesuffix("\n").removesuffix("\r")


def _show(verb: str, credential: CredentialRead, as_json: bool) -> None:
    echo_result(
        as_json,
        credential.model_dump(mode="json"),
        f"{verb} {credential.provider.value}/{credential.name} ({credential.id}): "
        f"secret {credential.secret_mask}, status {credential.status.value}",
    )


@click.group(cls=JobsGroup)
def credentials() -> None:
    """Provider credentials, encrypted at rest and shown masked."""


@credentials.command("add")
@tenant_option
@click.option("--provider", required=True, type=click.Choice([p.value for p in Provider]))
@click.option("--name", default="default", show_default=True)
@json_option
def credentials_add(tenant: str, provider: str, name: str, as_json: bool) -> None:
    """Store a new credential; the secret is read from stdin or a hidden prompt."""
    owner = tenant_id(tenant)
    secret = read_secret("Secret")
    _show(
        "created",
        api.create_credential(owner, provider=provider, name=name, secret=secret),
        as_json,
    )


@credentials.command("list")
@tenant_option
@click.option("--provider", type=click.Choice([p.value for p in Provider]))
@json_option
def credentials_list(tenant: str, provider: str | None, as_json: bool) -> None:
    """List the tenant's credentials (masked)."""
    echo_rows(api.list_credentials(tenant_id(tenant), provider=provider), COLUMNS, as_json)


@credentials.command("show")
@tenant_option
@credential_argument
@json_option
def credentials_show(tenant: str, credential: str, as_json: bool) -> None:
    """Show one credential's metadata (masked)."""
    echo_rows([resolve_credential(tenant_id(tenant), credential)], COLUMNS, as_json)


@credentials.command("rename")
@tenant_option
@credential_argument
@click.argument("new_name")
@json_option
def credentials_rename(tenant: str, credential: str, new_name: str, as_json: bool) -> None:
    """Rename a credential."""
    owner = tenant_id(tenant)
    found = resolve_credential(owner, credential)
    _show("renamed", api.rename_credential(owner, found.id, new_name), as_json)


@credentials.command("rotate-secret")
@tenant_option
@credential_argument
@json_option
def credentials_rotate_secret(tenant: str, credential: str, as_json: bool) -> None:
    """Replace a credential's secret (read from stdin or a hidden prompt); status -> unknown."""
    owner = tenant_id(tenant)
    found = resolve_credential(owner, credential)
    secret = read_secret("New secret")
    _show("updated", api.update_secret(owner, found.id, secret), as_json)


@credentials.command("mark")
@tenant_option
@credential_argument
@click.argument(
    "status", type=click.Choice([CredentialStatus.VALID.value, CredentialStatus.INVALID.value])
)
@json_option
def credentials_mark(tenant: str, credential: str, status: str, as_json: bool) -> None:
    """Record that a credential was checked and found valid or invalid."""
    owner = tenant_id(tenant)
    found = resolve_credential(owner, credential)
    _show("marked", api.mark_validated(owner, found.id, status), as_json)


@credentials.command("delete")
@tenant_option
@credential_argument
@click.confirmation_option(prompt="Delete this credential?")
@json_option
def credentials_delete(tenant: str, credential: str, as_json: bool) -> None:
    """Delete a credential (refused while an MCP server uses it)."""
    owner = tenant_id(tenant)
    found = resolve_credential(owner, credential)
    api.delete_credential(owner, found.id)
    echo_result(
        as_json,
        {"deleted": str(found.id)},
        f"deleted {found.provider.value}/{found.name} ({found.id})",
    )


@credentials.command("import-env")
@tenant_option
@click.option("--replace", is_flag=True, help="Overwrite the secret of credentials that exist.")
@json_option
def credentials_import_env(tenant: str, replace: bool, as_json: bool) -> None:
    """Import OPENAI_API_KEY, ESPN_API_KEY, CFBD_API_KEY and CUSTOM_API_KEY_<NAME> as
    credentials with status unknown (re-validate them). Safe to run again."""
    outcome = import_env_credentials(tenant_id(tenant), replace=replace)
    lines = [
        f"{verb}: {name}"
        for verb, names in (
            ("created", outcome.created),
            ("replaced", outcome.replaced),
            ("kept (exists; --replace overwrites)", outcome.kept),
        )
        for name in names
    ]
    echo_result(
        as_json,
        {"created": outcome.created, "replaced": outcome.replaced, "kept": outcome.kept},
        "\n".join(lines) or "no provider keys found in the environment",
    )
