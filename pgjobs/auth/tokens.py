"""The API token format, and the one way a secret is hashed and compared.

A token reads ``pgj_<prefix>_<secret>``: ``pgj_`` says what it is (secret scanners and
people recognise it), the prefix (10 lowercase letters and digits) is public and finds the
stored row, and the secret is 256 random bits in URL-safe base64 (43 characters). Only the
SHA-256 of the secret's text is stored; a presented secret is hashed the same way and compared
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

TOKEN_PREFIX = "pgj_"  # noqa: S105 - the public marker, not a secret
PREFIX_LENGTH = 10
SECRET_BYTES = 32
"""256 random bits."""
SECRET_LENGTH = 43
"""Characters of 32 bytes in unpadded URL-safe base64."""
TOKEN_LENGTH = len(TOKEN_PREFIX) + PREFIX_LENGTH + 1 + SECRET_LENGTH

_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_FORMAT = re.compile(
    rf"{TOKEN_PREFIX}([a-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9_-]{{{SECRET_LENGTH}}})"
)


@dataclass(frozen=True, slots=True)
class TokenParts:
    """A token taken apart. ``repr`` never shows the secret."""

    prefix: str
    secret: str

    def __repr__(self) -> str:
        return f"TokenParts(prefix={self.prefix!r}, secret=<hidden>)"


def new_token() -> tuple[str, TokenParts]:
    """A fresh random token: (the raw token, its parts)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    parts = TokenParts(prefix, secret)
    return format_token(parts), parts


def format_token(parts: TokenParts) -> str:
    return f"{TOKEN_PREFIX}{parts.prefix}_{parts.secret}"


def parse_token(raw: object) -> TokenParts | None:
    """The parts of a well-formed token; None for anything else (never an exception)."""
    if not isinstance(raw, str) or len(raw) != TOKEN_LENGTH:
        return None
    match = _FORMAT.fullmatch(raw)
    if match is None:
        return None
    return TokenParts(match[1], match[2])


def secret_hash(secret: str) -> bytes:
    """What is stored for a secret: the SHA-256 of its text (32 bytes)."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def display_prefix(prefix: str) -> str:
    """How a token is shown once it exists: its public part only."""
    return f"{TOKEN_PREFIX}{prefix}_…"
