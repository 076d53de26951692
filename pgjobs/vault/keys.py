"""Where the encryption keys come from, and the process's keys and cipher.

Keys are base64 of 32 bytes, named by a key id: from ``JOBS_ENCRYPTION_KEYS`` ('id:b64,...'),
from a key file (``JOBS_KEY_FILE``, one per line, '*' marks the active key), or, in development
with neither set, from the development key file under ``.dev/`` (created on first use). Errors
name a key id or a position, never key material.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from pgjobs.logs import get_logger
from pgjobs.settings import Settings, get_settings
from pgjobs.vault.cipher import (
    KEY_BYTES,
    KEY_ID_PATTERN,
    CredentialCryptoError,
    KeyProvider,
    SecretCipher,
    safe_key_id,
)

log = get_logger(__name__)

DEV_KEY_FILE = "keys.txt"
"""Name of the development key file under ``settings.dev_dir``."""


# --- Key providers --------------------------------------------------------------------------


class _MappingKeyProvider:
    """Shared storage and validation; subclasses only parse their source."""

    def __init__(self, keys: dict[str, bytes], active: str | None) -> None:
        if not keys:
            raise CredentialCryptoError(
                "no encryption keys configured: set JOBS_ENCRYPTION_KEYS (jobctl keys generate)"
            )
        for key_id, key in keys.items():
            if not KEY_ID_PATTERN.fullmatch(key_id):
                raise CredentialCryptoError("encryption key id is malformed")
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise CredentialCryptoError(
                    f"encryption key {key_id!r} must be exactly {KEY_BYTES} bytes"
                )
        active = next(iter(keys)) if active is None else active
        if active not in keys:
            raise CredentialCryptoError(
                f"active key id {safe_key_id(active)!r} is not among the configured keys"
            )
        self._keys = dict(keys)
        self._active = active

    def active_key_id(self) -> str:
        return self._active

    def get(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise CredentialCryptoError(
                f"unknown encryption key id {safe_key_id(key_id)!r}"
            ) from None

    def key_ids(self) -> list[str]:
        return list(self._keys)

    def __repr__(self) -> str:
        # Keys never appear in a repr: only ids.
        return f"{type(self).__name__}(key_ids={self.key_ids()!r}, active={self._active!r})"


def _parse_entry(entry: str, where: str) -> tuple[str, bytes]:
    """Parse one 'key_id:base64' entry; errors name the id or `where`, never the value."""
    key_id, sep, encoded = entry.partition(":")
    key_id = key_id.strip()
    if not sep:
        raise CredentialCryptoError(f"encryption key {where} is not of the form 'key_id:base64'")
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise CredentialCryptoError(
            f"encryption key {where} has a malformed key id (allowed: [A-Za-z0-9_.-]{{1,64}})"
        )
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialCryptoError(f"encryption key {key_id!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise CredentialCryptoError(
            f"encryption key {key_id!r} must decode to exactly {KEY_BYTES} bytes"
        )
    return key_id, key


def _collect(entries: Iterable[tuple[str, str]]) -> dict[str, bytes]:
    """Parse (where, entry) pairs into an ordered dict, refusing duplicate ids."""
    keys: dict[str, bytes] = {}
    for where, entry in entries:
        key_id, key = _parse_entry(entry, where)
        if key_id in keys:
            raise CredentialCryptoError(f"encryption key id {key_id!r} is listed twice")
        keys[key_id] = key
    return keys


class EnvKeyProvider(_MappingKeyProvider):
    """Keys from a 'id:b64,id:b64' string (JOBS_ENCRYPTION_KEYS); active: explicit or first."""

    def __init__(self, spec: str, active_key_id: str | None = None) -> None:
        entries = [
            (f"entry {position}", entry)
            for position, entry in enumerate(spec.split(","), start=1)
            if entry.strip()
        ]
        super().__init__(_collect(entries), active_key_id)


class FileKeyProvider(_MappingKeyProvider):
    """Keys from a file: one 'id:b64' per line, '#' comments, '*id:b64' marks the active key.

    Without a '*' line the first key is active. An explicit `active_key_id` that disagrees with
    the '*' line is refused rather than silently picking one (a half-done rotation).
    """

    def __init__(self, path: Path, active_key_id: str | None = None) -> None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise CredentialCryptoError(
                f"encryption key file {str(path)!r} is unreadable"
            ) from None
        entries: list[tuple[str, str]] = []
        starred: list[tuple[int, str]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                line = line[1:].strip()
                starred.append((number, line.partition(":")[0].strip()))
            entries.append((f"on line {number}", line))
        keys = _collect(entries)
        if len(starred) > 1:
            lines = ", ".join(str(number) for number, _ in starred)
            raise CredentialCryptoError(
                f"encryption key file marks several active keys (lines {lines})"
            )
        marked = starred[0][1] if starred else None
        if active_key_id is not None and marked is not None and active_key_id != marked:
            raise CredentialCryptoError(
                f"active key id {safe_key_id(active_key_id)!r} disagrees with the key file's "
                f"active key {marked!r}"
            )
        super().__init__(keys, active_key_id if active_key_id is not None else marked)


class StaticKeyProvider(_MappingKeyProvider):
    """Keys given directly (tests, tools)."""

    def __init__(self, keys: dict[str, bytes], active: str) -> None:
        super().__init__(keys, active)


def key_provider_from_settings(settings: Settings) -> KeyProvider:
    """The configured provider: `key_file` when set, else `encryption_keys`."""
    if settings.key_file is not None:
        return FileKeyProvider(settings.key_file, settings.active_key_id)
    if settings.encryption_keys is not None:
        spec = settings.encryption_keys.get_secret_value()
        if spec.strip():
            return EnvKeyProvider(spec, settings.active_key_id)
    raise CredentialCryptoError(
        "no encryption keys configured: set JOBS_ENCRYPTION_KEYS (jobctl keys generate)"
    )


def generate_key() -> str:
    """A new key, base64 of 32 random bytes (what `jobctl keys generate` prints)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


# --- The process's keys and cipher ------------------------------------------------------------


def new_key_id() -> str:
    """A fresh, sortable key id such as ``k20250301-9f2c``."""
    return f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"


def _keys_configured(settings: Settings) -> bool:
    spec = settings.encryption_keys
    return settings.key_file is not None or bool(spec and spec.get_secret_value().strip())


def dev_key_provider(path: Path) -> FileKeyProvider:
    """Keys from the development key file, created (mode 0600, one new key) when missing.

    The file is written aside and hard-linked into place, so concurrent first runs agree on
    one key and no process ever reads a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(
                    "# Development credential keys (created by pgjobs). Not for production.\n"
                    f"*{new_key_id()}:{generate_key()}\n"
                )
            os.link(temp, path)
            log.warning("keys.dev_key_created", path=str(path))
        except FileExistsError:
            pass
        finally:
            os.unlink(temp)
    return FileKeyProvider(path)


def key_provider(settings: Settings) -> KeyProvider:
    """The configured keys; in development with none configured, the dev key file."""
    if _keys_configured(settings) or settings.environment != "development":
        return key_provider_from_settings(settings)
    path = settings.dev_dir / DEV_KEY_FILE
    provider = dev_key_provider(path)
    log.warning("keys.dev_keys_in_use", path=str(path), hint="set JOBS_ENCRYPTION_KEYS")
    return provider


_lock = threading.Lock()
_current: tuple[Settings, KeyProvider, SecretCipher] | None = None


def keys_and_cipher() -> tuple[KeyProvider, SecretCipher]:
    """Built once per settings object: clearing the settings cache also renews the keys."""
    global _current
    settings = get_settings()
    with _lock:
        if _current is None or _current[0] is not settings:
            provider = key_provider(settings)
            _current = (settings, provider, SecretCipher(provider))
        return _current[1], _current[2]


def get_keys() -> KeyProvider:
    """The process's key provider (which keys exist, which is active)."""
    return keys_and_cipher()[0]


def get_cipher() -> SecretCipher:
    """The process's cipher over :func:`get_keys`."""
    return keys_and_cipher()[1]


def reset_cipher() -> None:
    """Forget the cached keys: the next use reads the configuration again (tests, reloads)."""
    global _current
    with _lock:
        _current = None
