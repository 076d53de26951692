"""A canary secret stored, used and listed through every path never shows up in plaintext.

Checked: rendered log lines (JSON, DEBUG, SQL logging included), CLI output, reprs and dumps of
returned objects, exception messages and tracebacks, and the database's rows as text.
"""

from __future__ import annotations

import io
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from helpers import KEY_A, KEY_B, invoke, json_logs, new_tenant, set_keys
from sqlalchemy import text

import pgjobs.cli.seed
import pgjobs.db.query_log
import pgjobs.db.tenants
import pgjobs.mcp.registry
import pgjobs.vault.credentials
import pgjobs.vault.keys
import pgjobs.vault.rotation
import pgjobs.worker.credentials
from pgjobs.cli.credential_commands import credentials as credentials_cli
from pgjobs.cli.key_commands import keys as keys_cli
from pgjobs.cli.mcp_commands import mcp as mcp_cli
from pgjobs.db.engine import transaction
from pgjobs.db.errors import InvalidInput
from pgjobs.mcp.registry import create_mcp_server, list_mcp_servers
from pgjobs.vault.cipher import CredentialCryptoError
from pgjobs.vault.credentials import (
    CredentialNotFound,
    create_credential,
    find_credential,
    get_credential,
    list_credentials,
    mark_validated,
    rename_credential,
    update_secret,
)
from pgjobs.worker.credentials import mcp_headers, use_credential

CANARIES = {
    name: f"CANARY-{uuid.uuid4().hex}" for name in ("api", "rotated", "cli", "cli_rotated", "env")
}
TABLES = ("tenants", "app_credentials", "mcp_servers", "content_jobs", "job_events")
_LOGGING_MODULES = (
    pgjobs.vault.credentials,
    pgjobs.vault.keys,
    pgjobs.vault.rotation,
    pgjobs.mcp.registry,
    pgjobs.cli.seed,
    pgjobs.db.tenants,
)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch, use_fresh_db: str) -> Iterator[io.StringIO]:
    """Production logging (JSON) at DEBUG, SQL statements included, rendered into a buffer."""
    modules = (*_LOGGING_MODULES, pgjobs.db.query_log, pgjobs.worker.credentials)
    with json_logs(monkeypatch, *modules) as buffer:
        yield buffer


def shown(exc: BaseException) -> str:
    """Everything an exception can show: message, repr and formatted traceback."""
    return f"{exc}\n{exc!r}\n{''.join(traceback.format_exception(exc))}"


def raised(call: Callable[[], Any], expected: type[BaseException]) -> str:
    with pytest.raises(expected) as info:
        call()
    return shown(info.value)


def database_text() -> str:
    """Every row of every table as PostgreSQL renders it (record text and JSON)."""
    parts = []
    with transaction() as conn:
        for table in TABLES:
            for form in ("t::text", "row_to_json(t)::text"):
                query = f"SELECT coalesce(string_agg({form}, E'\\n'), '') FROM {table} t"
                parts.append(conn.execute(text(query)).scalar_one())
    return "\n".join(parts)


def test_canary_never_leaks(
    logs: io.StringIO, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_keys(monkeypatch, f"ka:{KEY_A}")
    log = structlog.get_logger("handler")
    seen: list[str] = []
    tenant, other = new_tenant(), new_tenant()

    # Python API: every call, every returned object.
    created = create_credential(tenant, provider="openai", name="canary", secret=CANARIES["api"])
    server = create_mcp_server(
        tenant, label="srv", base_url="https://mcp.example", auth_type="token", auth_ref=created.id
    )
    results: list[Any] = [
        created,
        server,
        list_credentials(tenant),
        get_credential(tenant, created.id),
        find_credential(tenant, "openai", "canary"),
        rename_credential(tenant, created.id, "renamed"),
        mark_validated(tenant, created.id, "valid"),
        list_mcp_servers(tenant),
    ]

    # The worker's path, with a handler logging carelessly inside the block.
    with use_credential(tenant, created.id) as secret:
        seen += [repr(secret), str(secret), f"{secret}"]
        log.info("handler.call", value=secret.reveal(), obj=secret, note=f"key={secret.reveal()}")
        try:
            raise RuntimeError(f"provider refused {secret.reveal()}")
        except RuntimeError:
            log.exception("handler.failed")
    with mcp_headers(server) as headers:
        log.debug("mcp.request", headers=headers, rendered=str(headers))

    # Refusals: another tenant, invalid input carrying the secret.
    seen.append(raised(lambda: use_credential(other, created.id).__enter__(), CredentialNotFound))
    seen.append(
        raised(lambda: update_secret(tenant, created.id, CANARIES["api"] * 300), InvalidInput)
    )
    seen.append(
        raised(
            lambda: create_credential(tenant, provider="bogus", name="x", secret=CANARIES["api"]),
            InvalidInput,
        )
    )
    results.append(update_secret(tenant, created.id, CANARIES["rotated"]))

    # CLI paths.
    t = str(tenant)
    monkeypatch.setenv("CFBD_API_KEY", CANARIES["env"])
    outputs = [
        invoke(credentials_cli, "add", "--tenant", t, "--provider", "espn", input=CANARIES["cli"]),
        invoke(credentials_cli, "list", "--tenant", t),
        invoke(credentials_cli, "list", "--tenant", t, "--json"),
        invoke(credentials_cli, "show", "--tenant", t, "espn/default", "--json"),
        invoke(credentials_cli, "rename", "--tenant", t, "espn/default", "espn-main"),
        invoke(
            credentials_cli,
            *("rotate-secret", "--tenant", t, "espn/espn-main"),
            input=CANARIES["cli_rotated"],
        ),
        invoke(credentials_cli, "mark", "--tenant", t, "espn/espn-main", "invalid"),
        invoke(credentials_cli, "import-env", "--tenant", t),
        invoke(credentials_cli, "import-env", "--tenant", t, "--replace"),
        invoke(mcp_cli, "list", "--tenant", t, "--json"),
    ]
    # Key rotation re-encrypts every row.
    set_keys(monkeypatch, f"kb:{KEY_B},ka:{KEY_A}")
    outputs += [invoke(keys_cli, "rotate"), invoke(keys_cli, "status")]
    assert all(result.exit_code == 0 for result in outputs), [
        (r.exit_code, r.output) for r in outputs if r.exit_code
    ]
    with use_credential(tenant, created.id) as secret:
        assert secret.reveal() == CANARIES["rotated"]

    # A decrypt failure: the right key id, the wrong key material.
    set_keys(monkeypatch, f"kb:{KEY_A}")
    seen.append(
        raised(lambda: use_credential(tenant, created.id).__enter__(), CredentialCryptoError)
    )
    seen.append(raised(lambda: mcp_headers(server).__enter__(), CredentialCryptoError))
    failed_cli = invoke(credentials_cli, "list", "--tenant", t)  # listing needs no key
    assert failed_cli.exit_code == 0

    seen += [repr(r) for r in results]
    seen += [r.model_dump_json() for r in results if hasattr(r, "model_dump_json")]
    seen += [r.output for r in (*outputs, failed_cli)]
    captured = capfd.readouterr()
    rendered_logs = logs.getvalue()
    stored = database_text()
    everywhere = "\n".join([*seen, rendered_logs, captured.out, captured.err, stored])

    for name, canary in CANARIES.items():
        assert canary not in everywhere, name
        assert canary.encode().hex() not in stored, name
    # The capture really saw the activity (so the absence above means something).
    for event in ("credential.created", "credential.used", "handler.failed", "db.query"):
        assert event in rendered_logs, event
    assert "[REDACTED]" in rendered_logs
