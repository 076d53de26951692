"""The one way back from a stored credential to its plaintext: in a worker, for one block.

``with use_credential(tenant_id, credential_id) as secret:`` loads the tenant's row, decrypts it
and yields a :class:`Plaintext` whose repr and str hide the value (``secret.reveal()`` returns
it). While the block runs, the value is redacted from every log line of this context
(:func:`db.redaction.secrets_in_scope`); when it ends, the object forgets the value. Python
cannot wipe a ``str`` from memory; the aim is that no reference outlives the block.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import NoReturn

from pgjobs.db.errors import JobsError
from pgjobs.db.models import AuthType, Provider
from pgjobs.db.schemas.mcp_server import McpServerRead
from pgjobs.logs import get_logger
from pgjobs.vault.cipher import CredentialCryptoError
from pgjobs.vault.credentials import find_credential, load_encrypted
from pgjobs.vault.keys import get_cipher
from pgjobs.vault.redaction import secrets_in_scope
from pgjobs.worker.handlers.http import basic, bearer

log = get_logger(__name__)

_HIDDEN = "Plaintext('****')"


class PlaintextDropped(JobsError):
    """A Plaintext was revealed after its ``with`` block ended."""


class Plaintext:
    """A decrypted secret that does not show itself: repr, str and format print a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value: str | None = value

    def reveal(self) -> str:
        """The secret, for the call that needs it (never log or store it)."""
        if self._value is None:
            raise PlaintextDropped("the credential was used after its `with` block ended")
        return self._value

    def drop(self) -> None:
        """Forget the value (done when the block ends)."""
        self._value = None

    def __repr__(self) -> str:
        return _HIDDEN

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # No pickling or copying: a copy would outlive the block.
        raise TypeError("a Plaintext cannot be pickled or copied")


def _decrypt(tenant_id: uuid.UUID, credential_id: uuid.UUID) -> str:
    sealed = load_encrypted(tenant_id, credential_id)
    try:
        raw = get_cipher().decrypt(sealed, tenant_id=tenant_id, credential_id=credential_id)
        return raw.decode("utf-8")
    except (CredentialCryptoError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, CredentialCryptoError) else "not UTF-8"
        log.warning(
            "credential.decrypt_failed",
            tenant_id=str(tenant_id),
            credential_id=str(credential_id),
            key_id=sealed.key_id,
        )
        raise CredentialCryptoError(f"credential {credential_id}: {reason}") from None


@contextmanager
def use_credential(tenant_id: uuid.UUID, credential_id: uuid.UUID) -> Iterator[Plaintext]:
    """The tenant's credential, decrypted for the block (CredentialNotFound for another
    tenant's id, CredentialCryptoError when it does not decrypt)."""
    plaintext = Plaintext(_decrypt(tenant_id, credential_id))
    try:
        with secrets_in_scope(plaintext.reveal()):
            log.debug("credential.used", tenant_id=str(tenant_id), credential_id=str(credential_id))
            yield plaintext
    finally:
        plaintext.drop()


@contextmanager
def use_named_credential(
    tenant_id: uuid.UUID, provider: Provider | str, name: str
) -> Iterator[Plaintext]:
    """Like :func:`use_credential`, naming the credential by provider and name."""
    credential = find_credential(tenant_id, provider, name)
    with use_credential(tenant_id, credential.id) as plaintext:
        yield plaintext


OpenCredential = Callable[[uuid.UUID], AbstractContextManager[Plaintext]]
"""Opens a credential of the server's tenant for a block (e.g. a job context's ``credential``)."""


@contextmanager
def mcp_headers(
    server: McpServerRead, open_credential: OpenCredential | None = None
) -> Iterator[dict[str, str]]:
    """Headers for a call to ``server``: its custom headers, plus ``Authorization`` built from
    its credential (token: ``Bearer <secret>``; basic: the secret ``user:password`` encoded).

    ``open_credential`` defaults to :func:`use_credential` for the server's tenant; a handler
    passes ``ctx.credential`` so the use is a checkpoint of its job. The Authorization value
    is redacted from logs during the block and removed after it.
    """
    headers = dict(server.metadata.headers)
    if server.auth_type is AuthType.NONE or server.auth_ref is None:
        yield headers
        return
    if open_credential is None:
        open_credential = partial(use_credential, server.tenant_id)
    with open_credential(server.auth_ref) as secret:
        value = secret.reveal()
        parts: tuple[str, ...]
        if server.auth_type is AuthType.TOKEN:
            authorization, parts = bearer(value), ()
        else:
            authorization, parts = basic(value), (value.partition(":")[2],)
        with secrets_in_scope(authorization, *parts):
            headers["Authorization"] = authorization
            try:
                yield headers
            finally:
                headers.pop("Authorization", None)
