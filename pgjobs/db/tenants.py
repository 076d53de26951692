"""Tenants: create, look up by id or slug, list. Every other API takes a tenant id from here."""

from __future__ import annotations

import re
import uuid
from typing import cast

from sqlalchemy import Row, Table, select

from pgjobs.db.engine import transaction
from pgjobs.db.errors import InvalidInput, UniqueViolation, UnknownTenant, validated
from pgjobs.db.models import Tenant
from pgjobs.db.schemas.tenant import SLUG_PATTERN, TenantCreate, TenantRead
from pgjobs.db.validation import as_uuid
from pgjobs.logs import get_logger

log = get_logger(__name__)

_tenants = cast(Table, Tenant.__table__)


class TenantExists(UniqueViolation):
    """Another tenant already has this slug."""


def _read(row: Row[object] | None, ref: object) -> TenantRead:
    if row is None:
        raise UnknownTenant(f"unknown tenant {str(ref)[:80]!r}")
    return TenantRead.model_validate(row)


def create_tenant(*, name: str, slug: str) -> TenantRead:
    """A new tenant. InvalidInput for a bad name or slug, TenantExists for a taken slug."""
    data = validated(TenantCreate, {"name": name, "slug": slug})
    try:
        with transaction() as conn:
            row = conn.execute(
                _tenants.insert()
                .values(id=uuid.uuid4(), **data.model_dump())
                .returning(*_tenants.c)
            ).one()
    except UniqueViolation as exc:
        raise TenantExists(f"tenant {data.slug!r} already exists", exc.constraint) from None
    log.info("tenant.created", tenant_id=str(row.id), slug=row.slug)
    return _read(row, data.slug)


def get_tenant(tenant_id: uuid.UUID) -> TenantRead:
    """The tenant with this id; UnknownTenant if there is none, InvalidInput for a non-UUID."""
    tenant_id = as_uuid(tenant_id, "tenant_id")
    with transaction() as conn:
        row = conn.execute(select(_tenants).where(_tenants.c.id == tenant_id)).one_or_none()
    return _read(row, tenant_id)


def resolve_tenant(ref: str) -> TenantRead:
    """The tenant named by ``ref``: a UUID string is an id, anything else a slug. Text that is
    neither cannot name a tenant: UnknownTenant, without a query."""
    if not isinstance(ref, str):
        raise InvalidInput.for_field("tenant", "must be a string")
    try:
        return get_tenant(uuid.UUID(ref))
    except ValueError:
        pass
    if not re.fullmatch(SLUG_PATTERN, ref):
        raise UnknownTenant(f"unknown tenant {ref[:80]!r}")
    with transaction() as conn:
        row = conn.execute(select(_tenants).where(_tenants.c.slug == ref)).one_or_none()
    return _read(row, ref)


def list_tenants() -> list[TenantRead]:
    """Every tenant, by slug."""
    with transaction() as conn:
        rows = conn.execute(select(_tenants).order_by(_tenants.c.slug)).all()
    return [TenantRead.model_validate(row) for row in rows]
