"""Fair shares between tenants on a queue (docs/limits.md, "Fair shares").

Dramatiq's queues are first in, first out: a tenant that enqueues 100,000 jobs would put them
all ahead of everyone else's. On a fair queue (``JOBS_FAIR_QUEUES``) a tenant has a share of
jobs in flight (due and queued, or running): ``JOBS_FAIR_SHARE_IN_FLIGHT`` times its weight.
The enqueue statement writes a due job beyond it as ``held``, with no message; whoever ends one
of the tenant's jobs sends its oldest held ones (pgjobs/worker/limits.py). So the Redis queue
holds at most a share per tenant, and another tenant's new job waits behind at most the shares
in front of it. With every share full, tenants start jobs in proportion to their weights.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

from sqlalchemy import text

from pgjobs.db.engine import transaction
from pgjobs.db.statements import execute
from pgjobs.db.validation import as_int, as_uuid
from pgjobs.logs import get_logger
from pgjobs.producer.errors import InvalidOption, UnknownTenant

log = get_logger(__name__)

WEIGHT_MAX = 100

SET_WEIGHT = text(
    "UPDATE tenants SET share_weight = :weight, updated_at = now() WHERE id = :tenant_id"
    " RETURNING share_weight"
)
GET_WEIGHT = text("SELECT share_weight FROM tenants WHERE id = :tenant_id")


def share_key(queue: str, tenant_id: uuid.UUID, fair_queues: str) -> str | None:
    """The job's fair share when ``queue`` is one of ``fair_queues`` (``JOBS_FAIR_QUEUES``,
    read once per call by the caller), else None (and no cost)."""
    fair = _fair_queues(fair_queues)
    if fair is None or (fair and queue not in fair):
        return None
    return f"{queue}:{tenant_id}"


@lru_cache(maxsize=8)
def _fair_queues(setting: str) -> frozenset[str] | None:
    """The queues named by ``JOBS_FAIR_QUEUES``: None for none, empty for every queue ('*')."""
    names = frozenset(n.strip() for n in setting.split(",") if n.strip())
    if not names:
        return None
    return frozenset() if "*" in names else names


def set_share_weight(tenant_id: uuid.UUID, weight: int) -> int:
    """The tenant's weight in fair queues (1 to 100; 1 by default): its share of jobs in
    flight is ``JOBS_FAIR_SHARE_IN_FLIGHT`` times this. Applies to jobs enqueued from now on.
    Raises InvalidOption, UnknownTenant."""
    tenant = as_uuid(tenant_id, "tenant_id", InvalidOption)
    value = as_int(weight, "weight", 1, WEIGHT_MAX, InvalidOption)
    with transaction() as conn:
        row = execute(conn, SET_WEIGHT, {"tenant_id": tenant, "weight": value}).fetchone()
    if row is None:
        raise UnknownTenant("unknown tenant")
    log.info("share.weight_set", tenant_id=str(tenant), weight=value)
    return int(row.share_weight)


def share_weight(tenant_id: uuid.UUID) -> int:
    """The tenant's weight in fair queues. Raises InvalidOption, UnknownTenant."""
    tenant = as_uuid(tenant_id, "tenant_id", InvalidOption)
    with transaction() as conn:
        row = execute(conn, GET_WEIGHT, {"tenant_id": tenant}).fetchone()
    if row is None:
        raise UnknownTenant("unknown tenant")
    return int(row.share_weight)
