"""AES-256-GCM for provider credential secrets (DESIGN.md, section Credentials).

Every ciphertext is bound by its associated data to (tenant_id, credential id, key_id), so a row
copied to another tenant or another credential does not decrypt. Each row stores its key id, so
keys rotate: new rows use the active key, `SecretCipher.reencrypt` moves old rows over.

Every failure is one `CredentialCryptoError` whose message names at most a key id or a position,
never key material or plaintext, and whose cause chain is cut (``from None``) so tracebacks do not
carry the underlying library's exception either.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from db.settings import Settings

KEY_BYTES = 32
"""AES-256: every key decodes to exactly this many bytes."""
NONCE_BYTES = 12
"""96-bit GCM nonce, random per encryption."""
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Key ids are stored in `app_credentials.key_id` (String(64)) and shown in error messages."""
_AAD_PREFIX = b"cred:v1|"


class CredentialCryptoError(Exception):
    """The one error for every key or ciphertext failure; its message never holds secrets."""


@dataclass(frozen=True)
class EncryptedSecret:
    """What a credential row stores: ciphertext (with GCM tag), nonce and the key id used."""

    ciphertext: bytes
    nonce: bytes
    key_id: str


def _safe_key_id(key_id: object) -> str:
    """A key id fit for an error message: well-formed ids only, anything else is hidden."""
    if isinstance(key_id, str) and KEY_ID_PATTERN.fullmatch(key_id):
        return key_id
    return "<invalid>"


# --- Key providers --------------------------------------------------------------------------


class KeyProvider(Protocol):
    """Where keys come from; the cipher only needs these three calls."""

    def active_key_id(self) -> str:
        """The key id new ciphertexts use."""
        ...

    def get(self, key_id: str) -> bytes:
        """The 32-byte key for `key_id`; raises CredentialCryptoError when unknown."""
        ...

    def key_ids(self) -> list[str]:
        """Every known key id, in configuration order."""
        ...


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
                f"active key id {_safe_key_id(active)!r} is not among the configured keys"
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
                f"unknown encryption key id {_safe_key_id(key_id)!r}"
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
                f"active key id {_safe_key_id(active_key_id)!r} disagrees with the key file's "
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


# --- Cipher ---------------------------------------------------------------------------------


def associated_data(tenant_id: uuid.UUID, credential_id: uuid.UUID, key_id: str) -> bytes:
    """Bind a ciphertext to its row: fixed-width UUIDs first, so the encoding is unambiguous."""
    return _AAD_PREFIX + tenant_id.bytes + credential_id.bytes + key_id.encode("utf-8")


class SecretCipher:
    """Encrypts with the provider's active key; decrypts with whichever key the row names."""

    def __init__(self, provider: KeyProvider) -> None:
        self._provider = provider
        self._aeads: dict[str, AESGCM] = {}

    def __repr__(self) -> str:
        return f"SecretCipher({self._provider!r})"

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._aeads.get(key_id)
        if aead is None:
            key = self._provider.get(key_id)
            try:
                aead = AESGCM(key)
            except (ValueError, TypeError):
                raise CredentialCryptoError(
                    f"encryption key {_safe_key_id(key_id)!r} is unusable"
                ) from None
            self._aeads[key_id] = aead
        return aead

    def encrypt(
        self, plaintext: str | bytes, *, tenant_id: uuid.UUID, credential_id: uuid.UUID
    ) -> EncryptedSecret:
        """Encrypt under the active key with a fresh random nonce."""
        key_id = self._provider.active_key_id()
        aead = self._aead(key_id)
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        nonce = os.urandom(NONCE_BYTES)
        try:
            ciphertext = aead.encrypt(
                nonce, data, associated_data(tenant_id, credential_id, key_id)
            )
        except Exception:  # noqa: BLE001 - whatever failed, one typed error that reveals nothing
            raise CredentialCryptoError(
                f"credential could not be encrypted (key_id={_safe_key_id(key_id)})"
            ) from None
        return EncryptedSecret(ciphertext=ciphertext, nonce=nonce, key_id=key_id)

    def decrypt(
        self, secret: EncryptedSecret, *, tenant_id: uuid.UUID, credential_id: uuid.UUID
    ) -> bytes:
        """Decrypt with the row's key; any tampering or mismatch is CredentialCryptoError."""
        failure = f"credential could not be decrypted (key_id={_safe_key_id(secret.key_id)})"
        if not isinstance(secret.key_id, str) or not KEY_ID_PATTERN.fullmatch(secret.key_id):
            raise CredentialCryptoError(failure)
        aead = self._aead(secret.key_id)
        if len(secret.nonce) != NONCE_BYTES:
            raise CredentialCryptoError(failure)
        try:
            return aead.decrypt(
                secret.nonce,
                secret.ciphertext,
                associated_data(tenant_id, credential_id, secret.key_id),
            )
        except (InvalidTag, ValueError, TypeError, OverflowError):
            raise CredentialCryptoError(failure) from None

    def reencrypt(
        self, secret: EncryptedSecret, *, tenant_id: uuid.UUID, credential_id: uuid.UUID
    ) -> EncryptedSecret:
        """Key rotation: decrypt with the row's key, encrypt again with the active key."""
        plaintext = self.decrypt(secret, tenant_id=tenant_id, credential_id=credential_id)
        return self.encrypt(plaintext, tenant_id=tenant_id, credential_id=credential_id)


# --- Display --------------------------------------------------------------------------------

_MASK_MIN_LENGTH = 12
_MASK_TAIL = 4


def mask_secret(plaintext: str) -> str:
    """The listing form, e.g. 'sk-...abcd': a short alphabetic prefix and at most 4 last chars.

    Secrets shorter than 12 characters show nothing ("****"), since 4 characters of a short
    secret are too large a share of it.
    """
    if len(plaintext) < _MASK_MIN_LENGTH:
        return "****"
    dash = plaintext.find("-", 0, 4)
    head = plaintext[:dash]
    prefix = plaintext[: dash + 1] if dash > 0 and head.isascii() and head.isalpha() else ""
    return f"{prefix}...{plaintext[-_MASK_TAIL:]}"
