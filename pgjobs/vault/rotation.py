"""Key rotation and retirement: old rows re-encrypted to the active key, keys retired when unused.

Rotation re-encrypts rows to the active key in batches. Each batch is its own transaction that
locks its rows (``FOR UPDATE SKIP LOCKED``), so a reader always sees a row either entirely under
its old key or entirely under the new one, and both keys stay configured until rotation is done:
no row is ever unreadable. An interrupted rotation loses at most its current batch (rolled back,
still under the old key); running it again finishes the job. See docs/security.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update

from pgjobs.db.engine import transaction
from pgjobs.db.errors import InvalidInput, JobsError, NotFound
from pgjobs.db.models import AppCredential
from pgjobs.logs import get_logger
from pgjobs.vault.cipher import KEY_ID_PATTERN, CredentialCryptoError, EncryptedSecret, SecretCipher
from pgjobs.vault.keys import get_keys, keys_and_cipher

log = get_logger(__name__)

_credentials = cast(Table, AppCredential.__table__)

DEFAULT_BATCH_SIZE = 100
"""Rows re-encrypted per transaction by :func:`rotate`."""


class KeyInUse(JobsError):
    """A key cannot be retired: it is active, or rows are still encrypted with it."""


class UnknownKey(NotFound):
    """No key of that id is configured, and no credential is encrypted with one."""


# --- Rotation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationResult:
    active_key_id: str
    rotated: int
    """Rows re-encrypted to the active key by this run."""
    batches: int
    failed: tuple[uuid.UUID, ...]
    """Rows that did not decrypt (their key is not configured, or the row is damaged): left as
    they were."""
    remaining: int
    """Rows still not under the active key after this run (failed, locked, or not reached)."""


_REENCRYPT = (
    update(_credentials)
    .where(_credentials.c.id == bindparam("row_id"))
    .values(
        secret_ciphertext=bindparam("new_ciphertext"),
        secret_nonce=bindparam("new_nonce"),
        key_id=bindparam("new_key_id"),
        # The credential itself did not change: keep updated_at meaningful.
        updated_at=_credentials.c.updated_at,
    )
)


def _rotate_batch(
    cipher: SecretCipher, active: str, after: uuid.UUID | None, size: int
) -> tuple[uuid.UUID | None, int, list[uuid.UUID]]:
    """One transaction: lock the next rows not under ``active``, re-encrypt them, write back.

    Returns the last id seen (None when there was nothing left), rows rotated, rows failed.
    """
    t = _credentials
    query = select(t.c.id, t.c.tenant_id, t.c.secret_ciphertext, t.c.secret_nonce, t.c.key_id)
    query = query.where(t.c.key_id != active)
    if after is not None:
        query = query.where(t.c.id > after)
    query = query.order_by(t.c.id).limit(size).with_for_update(skip_locked=True)
    with transaction() as conn:
        rows = conn.execute(query).all()
        if not rows:
            return None, 0, []
        updates: list[dict[str, Any]] = []
        failed: list[uuid.UUID] = []
        for row in rows:
            old = EncryptedSecret(row.secret_ciphertext, row.secret_nonce, row.key_id)
            try:
                new = cipher.reencrypt(old, tenant_id=row.tenant_id, credential_id=row.id)
            except CredentialCryptoError as exc:
                log.warning("keys.rotation_row_failed", credential_id=str(row.id), error=str(exc))
                failed.append(row.id)
                continue
            updates.append(
                {
                    "row_id": row.id,
                    "new_ciphertext": new.ciphertext,
                    "new_nonce": new.nonce,
                    "new_key_id": new.key_id,
                }
            )
        if updates:
            conn.execute(_REENCRYPT, updates)
    return rows[-1].id, len(updates), failed


def rotate(
    batch_size: int = DEFAULT_BATCH_SIZE, *, max_batches: int | None = None
) -> RotationResult:
    """Re-encrypt every row not under the active key, ``batch_size`` rows per transaction.

    Safe to interrupt and to run again (it resumes: only rows off the active key are selected).
    ``max_batches`` stops early (a bounded maintenance slot; tests).
    """
    if batch_size < 1:
        raise InvalidInput("invalid input: batch_size must be at least 1", ("batch_size",))
    keys, cipher = keys_and_cipher()
    active = keys.active_key_id()
    after: uuid.UUID | None = None
    rotated, batches, failed = 0, 0, []
    while max_batches is None or batches < max_batches:
        after, done, bad = _rotate_batch(cipher, active, after, batch_size)
        if after is None:
            break
        batches += 1
        rotated += done
        failed.extend(bad)
        log.info("keys.rotation_batch", batch=batches, rotated=done, failed=len(bad))
    remaining = sum(n for key_id, n in status().items() if key_id != active)
    log.info("keys.rotation_done", active_key_id=active, rotated=rotated, remaining=remaining)
    return RotationResult(active, rotated, batches, tuple(failed), remaining)


def status() -> dict[str, int]:
    """How many credential rows each key id encrypts."""
    t = _credentials
    with transaction() as conn:
        rows = conn.execute(
            select(t.c.key_id, func.count()).group_by(t.c.key_id).order_by(t.c.key_id)
        ).all()
    return {key_id: count for key_id, count in rows}


def check_retirable(key_id: str) -> None:
    """Raise KeyInUse unless ``key_id`` could be removed from the configuration now, and
    UnknownKey when there is no such key to remove.

    Keys live in the environment or a key file, not in the database: retiring is the operator
    deleting the entry after this check passes.
    """
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise InvalidInput("invalid input: key_id is malformed", ("key_id",))
    if key_id == get_keys().active_key_id():
        raise KeyInUse(f"key {key_id!r} is the active key: make another key active first")
    in_use = status().get(key_id, 0)
    if in_use:
        raise KeyInUse(
            f"key {key_id!r} still encrypts {in_use} credential(s): run `jobctl keys rotate`"
        )
    if key_id not in get_keys().key_ids():
        raise UnknownKey(
            f"key {key_id!r} does not exist: no key of that id is configured "
            "and no credential uses one"
        )
