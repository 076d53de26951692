"""`jobctl keys ...`: credential encryption keys. Keys live in JOBS_ENCRYPTION_KEYS or a key
file, not in the database: these commands make, count, rotate to and check keys; adding or
removing one is an edit of that configuration (docs/security.md, "Rotating keys")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from pgjobs.cli.common import connect, echo_result, json_option
from pgjobs.cli.groups import JobsGroup
from pgjobs.vault import rotation as key_rotation
from pgjobs.vault.cipher import KEY_ID_PATTERN
from pgjobs.vault.keys import generate_key, get_keys, new_key_id


@click.group(cls=JobsGroup)
def keys() -> None:
    """Credential encryption keys: generate, status, rotate, retire."""


@keys.command("generate")
@click.option("--id", "key_id", help="Key id (default: k<date>-<random>).")
@json_option
def keys_generate(key_id: str | None, as_json: bool) -> None:
    """Print a new 'key_id:base64' entry for JOBS_ENCRYPTION_KEYS or the key file."""
    key_id = key_id or new_key_id()
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise click.BadParameter("use 1-64 of A-Z a-z 0-9 _ . -", param_hint="--id")
    entry = f"{key_id}:{generate_key()}"
    echo_result(as_json, {"key_id": key_id, "entry": entry}, entry)


@keys.command("status")
@json_option
def keys_status(as_json: bool) -> None:
    """Count credential rows per key id, and show which keys are configured and active."""
    connect()
    provider = get_keys()
    active, configured = provider.active_key_id(), provider.key_ids()
    counts = key_rotation.status()
    rows: list[dict[str, Any]] = []
    for key_id in dict.fromkeys([*configured, *counts]):
        if key_id == active:
            state = "active"
        elif key_id in configured:
            state = "configured"
        else:
            state = "not configured"
        rows.append({"key_id": key_id, "rows": counts.get(key_id, 0), "state": state})
    shown = {"not configured": "NOT CONFIGURED: these rows cannot be decrypted"}
    lines = [
        f"{row['key_id']:<24} {row['rows']:>8} rows  {shown.get(row['state'], row['state'])}"
        for row in rows
    ]
    echo_result(as_json, {"active": active, "keys": rows}, "\n".join(lines))


@keys.command("rotate")
@click.option("--batch-size", default=key_rotation.DEFAULT_BATCH_SIZE, show_default=True)
@click.option("--max-batches", type=int, help="Stop after this many batches (run again later).")
@json_option
def keys_rotate(batch_size: int, max_batches: int | None, as_json: bool) -> None:
    """Re-encrypt every credential to the active key (resumable: just run it again)."""
    connect()
    result = key_rotation.rotate(batch_size, max_batches=max_batches)
    echo_result(
        as_json,
        asdict(result),
        f"rotated {result.rotated} row(s) to {result.active_key_id} in {result.batches} "
        f"batch(es); {result.remaining} row(s) not yet on the active key",
    )
    for credential_id in result.failed:
        click.echo(f"could not decrypt credential {credential_id} (left unchanged)", err=True)
    if result.failed:
        raise click.exceptions.Exit(1)


@keys.command("retire")
@click.argument("key_id")
@json_option
def keys_retire(key_id: str, as_json: bool) -> None:
    """Check that KEY_ID is no longer used, so its entry can be removed from the configuration."""
    connect()
    key_rotation.check_retirable(key_id)
    echo_result(
        as_json,
        {"key_id": key_id, "retirable": True},
        f"no credential uses key {key_id}: remove it from JOBS_ENCRYPTION_KEYS or the key file "
        "of every process",
    )
