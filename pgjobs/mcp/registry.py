"""MCP servers, per tenant: where to call, how to authenticate, and the last ping's outcome.

Authentication is never stored here: ``auth_ref`` names a credential of the same tenant. That is
checked in the writing transaction, and the composite foreign key (tenant_id, auth_ref) is the
database's backstop; either way another tenant's credential is reported as CredentialNotFound,
exactly like a missing one. Another tenant's server id is McpServerNotFound.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, func, select, update

from pgjobs.db.engine import transaction
from pgjobs.db.errors import (
    ForeignKeyViolation,
    InvalidInput,
    NotFound,
    UniqueViolation,
    UnknownTenant,
    validated,
)
from pgjobs.db.models import AppCredential, AuthType, McpServer, McpServerStatus
from pgjobs.db.schemas.mcp_server import McpMetadata, McpServerCreate, McpServerPatch, McpServerRead
from pgjobs.db.validation import as_moment, as_text, as_uuid
from pgjobs.logs import get_logger
from pgjobs.vault.credentials import CredentialNotFound

log = get_logger(__name__)

_servers = cast(Table, McpServer.__table__)
_credentials = cast(Table, AppCredential.__table__)
_AUTH_REF_FK = "fk_mcp_servers_auth_ref_app_credentials"
_READ_COLUMNS = [
    *(c for c in _servers.c if c.key != "metadata"),
    _servers.c.metadata.label("metadata_"),
]
_SETTINGS = ("label", "base_url", "auth_type", "auth_ref", "metadata")
"""The fields a caller sets (McpServerCreate); the rest is kept by the system."""


class McpServerNotFound(NotFound):
    """No MCP server with this id (or label) for this tenant."""


class McpServerExists(UniqueViolation):
    """The tenant already has an MCP server with this label."""


def _read(row: Row[Any] | None, server: object) -> McpServerRead:
    if row is None:
        raise McpServerNotFound(f"MCP server {server} not found")
    return McpServerRead.model_validate(row)


def _ids(tenant_id: object, server_id: object) -> tuple[uuid.UUID, uuid.UUID]:
    """(tenant id, server id) checked: InvalidInput for anything but a UUID."""
    return as_uuid(tenant_id, "tenant_id"), as_uuid(server_id, "server_id")


def _row_values(data: McpServerCreate) -> dict[str, Any]:
    """Columns for validated settings; a URL carrying a user or password is refused (that
    secret would sit in plain text: use auth_type basic)."""
    if data.base_url.username or data.base_url.password:
        raise InvalidInput(
            "invalid input: base_url: must not contain a user name or password "
            "(use auth_type 'basic' and a credential)",
            ("base_url",),
        )
    return {
        "label": data.label,
        "base_url": str(data.base_url),
        "auth_type": data.auth_type,
        "auth_ref": data.auth_ref,
        "metadata": data.metadata.model_dump(exclude_none=True),
    }


def _check_auth_ref(conn: Connection, tenant_id: uuid.UUID, auth_ref: uuid.UUID | None) -> None:
    """The referenced credential must be this tenant's."""
    if auth_ref is None:
        return
    c = _credentials
    found = conn.execute(
        select(c.c.id).where(c.c.tenant_id == tenant_id, c.c.id == auth_ref)
    ).one_or_none()
    if found is None:
        raise CredentialNotFound(f"credential {auth_ref} not found")


@contextmanager
def _writing(tenant_id: uuid.UUID) -> Iterator[Connection]:
    """A transaction whose constraint failures become this module's typed errors."""
    try:
        with transaction() as conn:
            yield conn
    except UniqueViolation as exc:
        raise McpServerExists(
            "another MCP server of this tenant has this label", exc.constraint
        ) from None
    except ForeignKeyViolation as exc:
        if exc.constraint == _AUTH_REF_FK:
            raise CredentialNotFound("the credential named by auth_ref was not found") from None
        raise UnknownTenant(f"unknown tenant {tenant_id}") from None


def create_mcp_server(
    tenant_id: uuid.UUID,
    *,
    label: str,
    base_url: str,
    auth_type: AuthType | str = AuthType.NONE,
    auth_ref: uuid.UUID | None = None,
    metadata: McpMetadata | dict[str, Any] | None = None,
) -> McpServerRead:
    """Register a server (status ``unknown`` until pinged)."""
    tenant_id = as_uuid(tenant_id, "tenant_id")
    given: dict[str, Any] = {
        "label": label,
        "base_url": base_url,
        "auth_type": auth_type,
        "auth_ref": auth_ref,
    }
    if metadata is not None:
        given["metadata"] = metadata
    data = validated(McpServerCreate, given)
    values = _row_values(data)
    with _writing(tenant_id) as conn:
        _check_auth_ref(conn, tenant_id, data.auth_ref)
        row = conn.execute(
            _servers.insert()
            .values(id=uuid.uuid4(), tenant_id=tenant_id, **values)
            .returning(*_READ_COLUMNS)
        ).one()
    log.info("mcp_server.created", tenant_id=str(tenant_id), server_id=str(row.id))
    return _read(row, row.id)


def update_mcp_server(tenant_id: uuid.UUID, server_id: uuid.UUID, **changes: Any) -> McpServerRead:
    """Change some settings (McpServerPatch fields; ``metadata`` replaces the whole object).

    The result is validated as a whole: switching ``auth_type`` to ``none`` clears auth_ref;
    switching to token or basic needs one.
    """
    tenant_id, server_id = _ids(tenant_id, server_id)
    patch = validated(McpServerPatch, changes).model_dump(mode="json", exclude_unset=True)
    if patch.get("auth_type") == AuthType.NONE.value and "auth_ref" not in patch:
        patch["auth_ref"] = None
    s = _servers
    mine = (s.c.tenant_id == tenant_id, s.c.id == server_id)
    with _writing(tenant_id) as conn:
        locked = conn.execute(select(*_READ_COLUMNS).where(*mine).with_for_update()).one_or_none()
        current = _read(locked, server_id)
        merged = current.model_dump(mode="json", include=set(_SETTINGS)) | patch
        data = validated(McpServerCreate, merged)
        values = _row_values(data)
        _check_auth_ref(conn, tenant_id, data.auth_ref)
        row = conn.execute(update(s).where(*mine).values(**values).returning(*_READ_COLUMNS)).one()
    result = _read(row, server_id)
    log.info(
        "mcp_server.updated",
        tenant_id=str(tenant_id),
        server_id=str(server_id),
        fields=sorted(patch),
    )
    return result


def record_ping(
    tenant_id: uuid.UUID,
    server_id: uuid.UUID,
    status: McpServerStatus | str,
    at: datetime | None = None,
) -> McpServerRead:
    """Store an ``mcp_ping`` outcome and its time (default: now)."""
    tenant_id, server_id = _ids(tenant_id, server_id)
    moment = func.now() if at is None else as_moment(at, "at")
    try:
        checked = McpServerStatus(status)
    except (TypeError, ValueError):
        raise InvalidInput(
            "invalid input: status: unknown MCP server status", ("status",)
        ) from None
    s = _servers
    with transaction() as conn:
        row = conn.execute(
            update(s)
            .where(s.c.tenant_id == tenant_id, s.c.id == server_id)
            .values(status=checked, last_ping_at=moment)
            .returning(*_READ_COLUMNS)
        ).one_or_none()
    result = _read(row, server_id)
    log.info(
        "mcp_server.pinged", tenant_id=str(tenant_id), server_id=str(server_id), status=checked
    )
    return result


def delete_mcp_server(tenant_id: uuid.UUID, server_id: uuid.UUID) -> None:
    """Remove the server (its credential stays)."""
    tenant_id, server_id = _ids(tenant_id, server_id)
    s = _servers
    with transaction() as conn:
        deleted = conn.execute(
            delete(s).where(s.c.tenant_id == tenant_id, s.c.id == server_id).returning(s.c.id)
        ).one_or_none()
    if deleted is None:
        raise McpServerNotFound(f"MCP server {server_id} not found")
    log.info("mcp_server.deleted", tenant_id=str(tenant_id), server_id=str(server_id))


def get_mcp_server(tenant_id: uuid.UUID, server_id: uuid.UUID) -> McpServerRead:
    """One server of the tenant."""
    tenant_id, server_id = _ids(tenant_id, server_id)
    s = _servers
    with transaction() as conn:
        row = conn.execute(
            select(*_READ_COLUMNS).where(s.c.tenant_id == tenant_id, s.c.id == server_id)
        ).one_or_none()
    return _read(row, server_id)


def find_mcp_server(tenant_id: uuid.UUID, label: str) -> McpServerRead:
    """The tenant's server with this label."""
    s = _servers
    tenant_id = as_uuid(tenant_id, "tenant_id")
    label = as_text(label, "label")
    with transaction() as conn:
        row = conn.execute(
            select(*_READ_COLUMNS).where(s.c.tenant_id == tenant_id, s.c.label == label)
        ).one_or_none()
    return _read(row, repr(label))


def list_mcp_servers(tenant_id: uuid.UUID) -> list[McpServerRead]:
    """The tenant's servers, by label."""
    s = _servers
    tenant_id = as_uuid(tenant_id, "tenant_id")
    with transaction() as conn:
        rows = conn.execute(
            select(*_READ_COLUMNS).where(s.c.tenant_id == tenant_id).order_by(s.c.label)
        ).all()
    return [McpServerRead.model_validate(row) for row in rows]
