"""AES-256-GCM for provider credential secrets (docs/security.md).

Every ciphertext is bound by its associated data to (tenant_id, credential id, key_id), so a row
copied to another tenant or another credential does not decrypt. Each row stores its key id, so
keys rotate: new rows use the active key, `SecretCipher.reencrypt` moves old rows over.

Every failure is one `CredentialCryptoError` whose message names at most a key id or a position,
never key material or plaintext, and whose cause chain is cut (``from None``) so tracebacks do not
carry the underlying library's exception either.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    pass

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


def safe_key_id(key_id: object) -> str:
    """A key id fit for an error message: well-formed ids only, anything else is hidden."""
    if isinstance(key_id, str) and KEY_ID_PATTERN.fullmatch(key_id):
        return key_id
    return "<invalid>"


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
                    f"encryption key {safe_key_id(key_id)!r} is unusable"
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
                f"credential could not be encrypted (key_id={safe_key_id(key_id)})"
            ) from None
        return EncryptedSecret(ciphertext=ciphertext, nonce=nonce, key_id=key_id)

    def decrypt(
        self, secret: EncryptedSecret, *, tenant_id: uuid.UUID, credential_id: uuid.UUID
    ) -> bytes:
        """Decrypt with the row's key; any tampering or mismatch is CredentialCryptoError."""
        failure = f"credential could not be decrypted (key_id={safe_key_id(secret.key_id)})"
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
