"""pgjobs/vault/rotation.py and `jobctl keys`: rotation under concurrent reads, resumption,
retirement.

Rotation touches every credential of the database, so each test has a database of its own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import KEY_A, KEY_B, invoke, new_tenant, set_keys

from pgjobs.cli.key_commands import keys as keys_cli
from pgjobs.db.errors import InvalidInput
from pgjobs.vault import keys
from pgjobs.vault import rotation as key_rotation
from pgjobs.vault.credentials import create_credential
from pgjobs.vault.keys import EnvKeyProvider
from pgjobs.worker.credentials import use_credential

ONLY_A = f"ka:{KEY_A}"
BOTH_B_ACTIVE = f"kb:{KEY_B},ka:{KEY_A}"

Row = tuple[uuid.UUID, uuid.UUID, str]


@pytest.fixture
def rows(use_fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Row]]:
    """12 credentials over two tenants, all under key ka; then kb becomes active (ka kept)."""
    set_keys(monkeypatch, ONLY_A)
    made: list[Row] = []
    for tenant in (new_tenant(), new_tenant()):
        for n in range(6):
            secret = f"secret-{tenant.hex[:6]}-{n:04d}"
            made.append(
                (
                    tenant,
                    create_credential(tenant, provider="custom", name=f"c{n}", secret=secret).id,
                    secret,
                )
            )
    set_keys(monkeypatch, BOTH_B_ACTIVE)
    yield made
    keys.reset_cipher()


def read_all(rows: list[Row]) -> int:
    """Decrypt every row; the number that did not decrypt to their secret."""
    failures = 0
    for tenant, credential_id, secret in rows:
        try:
            with use_credential(tenant, credential_id) as plaintext:
                failures += plaintext.reveal() != secret
        except Exception:
            failures += 1
    return failures


def test_rotation_under_concurrent_reads(rows: list[Row], monkeypatch: pytest.MonkeyPatch) -> None:
    """Four readers decrypt every row in a loop before, during and after rotation: no failure."""
    stop = threading.Event()
    phase = {"name": "before"}
    reads: dict[str, int] = {"before": 0, "during": 0, "after": 0}
    failures: list[str] = []
    lock = threading.Lock()

    def reader() -> None:
        while not stop.is_set():
            current = phase["name"]
            bad = read_all(rows)
            with lock:
                reads[current] += len(rows)
                if bad:
                    failures.append(current)

    original = key_rotation._rotate_batch

    def slow_batch(*args: Any) -> Any:
        result = original(*args)
        time.sleep(0.02)  # let readers see the half-rotated table
        return result

    monkeypatch.setattr(key_rotation, "_rotate_batch", slow_batch)
    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.1)
        phase["name"] = "during"
        result = key_rotation.rotate(batch_size=3)
        phase["name"] = "after"
        time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert all(count > 0 for count in reads.values()), reads
    assert (result.rotated, result.batches, result.failed, result.remaining) == (12, 4, (), 0)
    assert key_rotation.status() == {"kb": 12}


def test_interrupted_rotation_resumes(rows: list[Row]) -> None:
    first = key_rotation.rotate(batch_size=5, max_batches=1)
    assert (first.rotated, first.remaining) == (5, 7)
    assert key_rotation.status() == {"ka": 7, "kb": 5}
    assert read_all(rows) == 0
    rest = key_rotation.rotate(batch_size=5)
    assert (rest.rotated, rest.remaining) == (7, 0)
    assert key_rotation.status() == {"kb": 12}
    assert key_rotation.rotate().rotated == 0  # nothing left: a no-op
    assert read_all(rows) == 0


def test_a_crash_mid_batch_leaves_every_row_readable(
    rows: list[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    cipher = keys.get_cipher()
    original, calls = cipher.reencrypt, [0]

    def crash_on_seventh(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 7:
            raise RuntimeError("worker killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(cipher, "reencrypt", crash_on_seventh)
    with pytest.raises(RuntimeError):
        key_rotation.rotate(batch_size=4)
    assert key_rotation.status() == {"ka": 8, "kb": 4}  # the crashed batch rolled back whole
    assert read_all(rows) == 0
    monkeypatch.setattr(cipher, "reencrypt", original)
    assert key_rotation.rotate(batch_size=4).remaining == 0
    assert read_all(rows) == 0


def test_rows_under_a_missing_key_are_reported_not_blocking(
    rows: list[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_rotation.rotate(batch_size=5, max_batches=1)
    set_keys(monkeypatch, f"kc:{KEY_A}")  # ka and kb both gone: nothing decrypts
    result = key_rotation.rotate(batch_size=5)
    assert (result.rotated, len(result.failed), result.remaining) == (0, 12, 12)
    output = invoke(keys_cli, "status").output
    assert "NOT CONFIGURED" in output and "kc" in output


def test_retire(rows: list[Row]) -> None:
    with pytest.raises(key_rotation.KeyInUse, match="still encrypts 12"):
        key_rotation.check_retirable("ka")
    with pytest.raises(key_rotation.KeyInUse, match="active key"):
        key_rotation.check_retirable("kb")
    with pytest.raises(InvalidInput):
        key_rotation.check_retirable("not a key id!")
    refused = invoke(keys_cli, "retire", "ka")
    assert refused.exit_code == 1 and "jobctl keys rotate" in refused.output
    key_rotation.rotate()
    key_rotation.check_retirable("ka")
    allowed = invoke(keys_cli, "retire", "ka")
    assert allowed.exit_code == 0 and "remove it" in allowed.output
    assert json.loads(invoke(keys_cli, "retire", "ka", "--json").output) == {
        "key_id": "ka",
        "retirable": True,
    }


def test_retiring_a_key_that_does_not_exist_says_so(rows: list[Row]) -> None:
    with pytest.raises(key_rotation.UnknownKey, match="key 'nosuch' does not exist"):
        key_rotation.check_retirable("nosuch")
    refused = invoke(keys_cli, "retire", "nosuch")
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: key 'nosuch' does not exist")


def test_cli(rows: list[Row]) -> None:
    generated = invoke(keys_cli, "generate", "--id", "k-new").output.strip()
    assert EnvKeyProvider(generated).key_ids() == ["k-new"]
    assert invoke(keys_cli, "generate").output.startswith("k")
    assert invoke(keys_cli, "generate", "--id", "bad id").exit_code == 2
    before = invoke(keys_cli, "status").output.splitlines()
    assert before[0].split()[:3] == ["kb", "0", "rows"] and "active" in before[0]
    assert before[1].split()[:2] == ["ka", "12"] and "configured" in before[1]
    rotated = invoke(keys_cli, "rotate", "--batch-size", "5")
    assert rotated.exit_code == 0 and "rotated 12 row(s) to kb in 3 batch(es)" in rotated.output
    assert invoke(keys_cli, "status").output.split()[:2] == ["kb", "12"]
    status = json.loads(invoke(keys_cli, "status", "--json").output)
    assert status == {
        "active": "kb",
        "keys": [
            {"key_id": "kb", "rows": 12, "state": "active"},
            {"key_id": "ka", "rows": 0, "state": "configured"},
        ],
    }
    rotated_again = json.loads(invoke(keys_cli, "rotate", "--json").output)
    assert rotated_again["rotated"] == 0 and rotated_again["active_key_id"] == "kb"
    new_key = json.loads(invoke(keys_cli, "generate", "--id", "k-json", "--json").output)
    assert new_key["key_id"] == "k-json" and new_key["entry"].startswith("k-json:")
