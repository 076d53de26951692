"""Small helpers shared by tests: reading what Redis holds, making tenants."""

from __future__ import annotations

import json
import uuid

import redis as redis_lib

from db.engine import transaction
from db.models import Tenant


def messages_for(client: redis_lib.Redis, namespace: str, queue: str) -> list[dict[str, object]]:
    """Every message body Dramatiq holds for ``queue`` (waiting or delayed)."""
    bodies = []
    for key in (f"{namespace}:{queue}.msgs", f"{namespace}:{queue}.DQ.msgs"):
        bodies.extend(json.loads(v) for v in client.hgetall(key).values())
    return bodies


def job_ids_in_redis(client: redis_lib.Redis, namespace: str, queue: str) -> list[int]:
    return [int(m["args"][0]) for m in messages_for(client, namespace, queue)]  # type: ignore[index]


def make_tenant(slug: str | None = None) -> uuid.UUID:
    new_id = uuid.uuid4()
    slug = slug or f"t-{new_id.hex[:12]}"
    with transaction() as conn:
        conn.execute(Tenant.__table__.insert().values(id=new_id, name=slug, slug=slug))
    return new_id
