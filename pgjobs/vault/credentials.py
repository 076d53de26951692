"""Provider credentials, per tenant: stored encrypted, shown masked, never returned in plaintext.

Every function takes the tenant first and touches only that tenant's rows: another tenant's
credential id behaves exactly like a missing one (CredentialNotFound). Each call is one
transaction. Secrets are encrypted here (the row id is generated first so the ciphertext's
associated data binds it); the only way back to plaintext is ``worker.credentials``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from pydantic import SecretStr
from sqlalchemy import Row, Table, delete, func, select, update

from pgjobs.db.engine import transaction
from pgjobs.db.errors import (
    ForeignKeyViolation,
    InvalidInput,
    JobsError,
    NotFound,
    UniqueViolation,
    UnknownTenant,
    validated,
    validated_field,
)
from pgjobs.db.models import AppCredential, CredentialStatus, McpServer, Provider
from pgjobs.db.schemas.credential import CredentialCreate, CredentialPatch, CredentialRead
from pgjobs.db.validation import as_moment, as_text, as_uuid
from pgjobs.logs import get_logger
from pgjobs.vault.cipher import EncryptedSecret, mask_secret
from pgjobs.vault.keys import get_cipher

log = get_logger(__name__)

_credentials = cast(Table, AppCredential.__table__)
_servers = cast(Table, McpServer.__table__)
_SECRET_COLUMNS = ("secret_ciphertext", "secret_nonce")
_READ_COLUMNS = [c for c in _credentials.c if c.name not in _SECRET_COLUMNS]
"""What any read returns: everything but the ciphertext."""


class CredentialNotFound(NotFound):
    """No credential with this id (or provider/name) for this tenant."""


class CredentialExists(UniqueViolation):
    """The tenant already has a credential with this provider and name."""


class CredentialInUse(JobsError):
    """The credential is referenced by an MCP server's auth_ref and cannot be deleted."""


def _not_found(credential: object) -> CredentialNotFound:
    return CredentialNotFound(f"credential {credential} not found")


def _read(row: Row[Any] | None, credential: object) -> CredentialRead:
    if row is None:
        raise _not_found(credential)
    return CredentialRead.model_validate(row)


def _ids(tenant_id: object, credential_id: object) -> tuple[uuid.UUID, uuid.UUID]:
    """(tenant id, credential id) checked: InvalidInput for anything but a UUID."""
    return as_uuid(tenant_id, "tenant_id"), as_uuid(credential_id, "credential_id")


def _provider(provider: Provider | str) -> Provider:
    checked: Provider = validated_field(CredentialCreate, "provider", provider)
    return checked


def _encrypted_values(
    tenant_id: uuid.UUID, credential_id: uuid.UUID, secret: SecretStr
) -> dict[str, Any]:
    """Columns for a new secret: ciphertext under the active key, nonce, key id and mask."""
    plaintext = secret.get_secret_value()
    sealed = get_cipher().encrypt(plaintext, tenant_id=tenant_id, credential_id=credential_id)
    return {
        "secret_ciphertext": sealed.ciphertext,
        "secret_nonce": sealed.nonce,
        "key_id": sealed.key_id,
        "secret_mask": mask_secret(plaintext),
    }


def create_credential(
    tenant_id: uuid.UUID, *, provider: Provider | str, name: str, secret: str | SecretStr
) -> CredentialRead:
    """Store a new secret (status ``unknown``). CredentialExists for a taken provider/name."""
    tenant_id = as_uuid(tenant_id, "tenant_id")
    data = validated(CredentialCreate, {"provider": provider, "name": name, "secret": secret})
    credential_id = uuid.uuid4()
    values = _encrypted_values(tenant_id, credential_id, data.secret)
    insert = _credentials.insert().values(
        id=credential_id,
        tenant_id=tenant_id,
        provider=data.provider,
        name=data.name,
        status=CredentialStatus.UNKNOWN,
        **values,
    )
    try:
        with transaction() as conn:
            row = conn.execute(insert.returning(*_READ_COLUMNS)).one()
    except UniqueViolation as exc:
        raise CredentialExists(
            f"credential {data.provider.value}/{data.name} already exists", exc.constraint
        ) from None
    except ForeignKeyViolation:
        raise UnknownTenant(f"unknown tenant {tenant_id}") from None
    log.info(
        "credential.created",
        tenant_id=str(tenant_id),
        credential_id=str(credential_id),
        provider=data.provider.value,
    )
    return _read(row, credential_id)


def _update(
    tenant_id: uuid.UUID, credential_id: uuid.UUID, values: dict[str, Any], event: str
) -> CredentialRead:
    """One UPDATE of this tenant's row; CredentialNotFound when it matched nothing."""
    statement = (
        update(_credentials)
        .where(_credentials.c.tenant_id == tenant_id, _credentials.c.id == credential_id)
        .values(**values)
        .returning(*_READ_COLUMNS)
    )
    try:
        with transaction() as conn:
            row = conn.execute(statement).one_or_none()
    except UniqueViolation as exc:
        raise CredentialExists(
            f"another credential of this provider is already named {values.get('name')!r}",
            exc.constraint,
        ) from None
    result = _read(row, credential_id)
    log.info(event, tenant_id=str(tenant_id), credential_id=str(credential_id))
    return result


def update_secret(
    tenant_id: uuid.UUID, credential_id: uuid.UUID, secret: str | SecretStr
) -> CredentialRead:
    """Replace the secret; its status goes back to ``unknown`` until validated again."""
    tenant_id, credential_id = _ids(tenant_id, credential_id)
    new_secret: SecretStr = validated_field(CredentialCreate, "secret", secret)
    values = _encrypted_values(tenant_id, credential_id, new_secret)
    values.update(status=CredentialStatus.UNKNOWN, last_validated_at=None)
    return _update(tenant_id, credential_id, values, "credential.secret_updated")


def rename_credential(tenant_id: uuid.UUID, credential_id: uuid.UUID, name: str) -> CredentialRead:
    """Give the credential a new name (unique per tenant and provider)."""
    tenant_id, credential_id = _ids(tenant_id, credential_id)
    patch = validated(CredentialPatch, {"name": name})
    return _update(tenant_id, credential_id, {"name": patch.name}, "credential.renamed")


def mark_validated(
    tenant_id: uuid.UUID,
    credential_id: uuid.UUID,
    status: CredentialStatus | str,
    *,
    at: datetime | None = None,
) -> CredentialRead:
    """Record a validation outcome (``valid`` or ``invalid``) and when it happened."""
    tenant_id, credential_id = _ids(tenant_id, credential_id)
    patch = validated(CredentialPatch, {"status": status})
    if patch.status not in (CredentialStatus.VALID, CredentialStatus.INVALID):
        raise InvalidInput("invalid input: status: must be 'valid' or 'invalid'", ("status",))
    moment = func.now() if at is None else as_moment(at, "at")
    values = {"status": patch.status, "last_validated_at": moment}
    return _update(tenant_id, credential_id, values, f"credential.marked_{patch.status.value}")


def delete_credential(tenant_id: uuid.UUID, credential_id: uuid.UUID) -> None:
    """Delete the credential. CredentialInUse while an MCP server references it."""
    tenant_id, credential_id = _ids(tenant_id, credential_id)
    c, s = _credentials, _servers
    try:
        with transaction() as conn:
            users = conn.execute(
                select(s.c.label)
                .where(s.c.tenant_id == tenant_id, s.c.auth_ref == credential_id)
                .order_by(s.c.label)
            ).scalars()
            labels = list(users)
            if labels:
                raise CredentialInUse(
                    f"credential {credential_id} is used by MCP server(s): {', '.join(labels)}"
                )
            deleted = conn.execute(
                delete(c)
                .where(c.c.tenant_id == tenant_id, c.c.id == credential_id)
                .returning(c.c.id)
            ).one_or_none()
    except ForeignKeyViolation:
        # A server started referencing it after the check: the composite FK refused.
        raise CredentialInUse(f"credential {credential_id} is used by an MCP server") from None
    if deleted is None:
        raise _not_found(credential_id)
    log.info("credential.deleted", tenant_id=str(tenant_id), credential_id=str(credential_id))


def get_credential(tenant_id: uuid.UUID, credential_id: uuid.UUID) -> CredentialRead:
    """One credential's metadata and mask."""
    tenant_id, credential_id = _ids(tenant_id, credential_id)
    c = _credentials
    with transaction() as conn:
        row = conn.execute(
            select(*_READ_COLUMNS).where(c.c.tenant_id == tenant_id, c.c.id == credential_id)
        ).one_or_none()
    return _read(row, credential_id)


def find_credential(tenant_id: uuid.UUID, provider: Provider | str, name: str) -> CredentialRead:
    """The credential with this provider and name."""
    c = _credentials
    tenant_id = as_uuid(tenant_id, "tenant_id")
    checked = _provider(provider)
    name = as_text(name, "name")
    with transaction() as conn:
        row = conn.execute(
            select(*_READ_COLUMNS).where(
                c.c.tenant_id == tenant_id, c.c.provider == checked, c.c.name == name
            )
        ).one_or_none()
    return _read(row, f"{provider}/{name}")


def list_credentials(
    tenant_id: uuid.UUID, *, provider: Provider | str | None = None
) -> list[CredentialRead]:
    """The tenant's credentials (masked), by provider then name."""
    c = _credentials
    tenant_id = as_uuid(tenant_id, "tenant_id")
    query = select(*_READ_COLUMNS).where(c.c.tenant_id == tenant_id)
    if provider is not None:
        query = query.where(c.c.provider == _provider(provider))
    with transaction() as conn:
        rows = conn.execute(query.order_by(c.c.provider, c.c.name)).all()
    return [CredentialRead.model_validate(row) for row in rows]


def load_encrypted(tenant_id: uuid.UUID, credential_id: uuid.UUID) -> EncryptedSecret:
    """The stored ciphertext, for ``worker.credentials`` to decrypt (nothing else should)."""
    tenant_id, credential_id = _ids(tenant_id, credential_id)
    c = _credentials
    with transaction() as conn:
        row = conn.execute(
            select(c.c.secret_ciphertext, c.c.secret_nonce, c.c.key_id).where(
                c.c.tenant_id == tenant_id, c.c.id == credential_id
            )
        ).one_or_none()
    if row is None:
        raise _not_found(credential_id)
    return EncryptedSecret(row.secret_ciphertext, row.secret_nonce, row.key_id)
