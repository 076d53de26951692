"""Tenants: create, look up by id or slug (one function for both), list. Every other API takes
a tenant id from here."""

from __future__ import annotations

import re
import uuid
from typing import cast

from sqlalchemy import ColumnElement, Row, Table, select

from pgjobs.db.engine import transaction
from pgjobs.db.errors import InvalidInput, UniqueViolation, UnknownTenant, validated
from pgjobs.db.models import Tenant
from pgjobs.db.schemas.tenant import SLUG_PATTERN, TenantCreate, TenantRead
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


def get_tenant(tenant: uuid.UUID | str) -> TenantRead:
    """The tenant named by ``tenant``: a ``uuid.UUID`` or a string in UUID form is its id,
    any other string its slug. UnknownTenant if there is none (text that can be neither an id
    nor a slug is answered without a query); InvalidInput for anything but a UUID or a string.
    """
    if isinstance(tenant, uuid.UUID):
        return _one(_tenants.c.id == tenant, tenant)
    if not isinstance(tenant, str):
        raise InvalidInput.for_field("tenant", "must be a UUID or a slug")
    try:
        return _one(_tenants.c.id == uuid.UUID(tenant), tenant)
    except ValueError:
        pass
    if not re.fullmatch(SLUG_PATTERN, tenant):
        raise UnknownTenant(f"unknown tenant {tenant[:80]!r}")
    return _one(_tenants.c.slug == tenant, tenant)


def _one(where: ColumnElement[bool], ref: object) -> TenantRead:
    with transaction() as conn:
        row = conn.execute(select(_tenants).where(where)).one_or_none()
    return _read(row, ref)


def list_tenants() -> list[TenantRead]:
    """Every tenant, by slug."""
    with transaction() as conn:
        rows = conn.execute(select(_tenants).order_by(_tenants.c.slug)).all()
    return [TenantRead.model_validate(row) for row in rows]
