"""The producer's Redis write (pgjobs/producer/wire.py, send.lua) and its message bodies: the
bytes Dramatiq itself would write, one script call per send, and a send that survives a lost
script cache, a dropped connection and middleware that hooks enqueues."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from typing import Any

import dramatiq
import pytest
import redis as redis_lib
from helpers import job_ids_in_redis

from pgjobs.producer import broker, wire

pytestmark = pytest.mark.usefixtures("jobs_env")

TENANT = uuid.UUID("6f1c1f6e-1111-4c2b-9a7e-0123456789ab")
MESSAGE_ID = "0b8e3c1a-2222-4d5e-8f90-abcdefabcdef"


@pytest.mark.parametrize("queue", ["content", 'odd "queue" é'])
@pytest.mark.parametrize("delay_ms", [None, 1500])
def test_stored_body_is_what_dramatiq_encodes(
    queue: str, delay_ms: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now_ms = 1_765_000_000_123
    monkeypatch.setattr(broker.time, "time", lambda: now_ms / 1000)
    outgoing = broker.Outgoing(42, TENANT, queue, MESSAGE_ID, delay_ms)
    message = dataclasses.replace(outgoing.to_message(), message_timestamp=now_ms)
    assert outgoing.stored(now_ms) == (message.queue_name, MESSAGE_ID, message.encode())


def test_a_send_is_one_script_call(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    outgoing = [broker.Outgoing(n, tenant_id, "content", str(uuid.uuid4())) for n in (7, 8, 9)]
    outgoing.append(broker.Outgoing(10, tenant_id, "content", str(uuid.uuid4()), 60_000))
    before = _calls(redis_client)
    broker.send(outgoing)
    after = _calls(redis_client)
    assert after.get("evalsha", 0) - before.get("evalsha", 0) >= 1
    assert after.get("multi", 0) == before.get("multi", 0)
    assert sorted(job_ids_in_redis(redis_client, jobs_env, "content")) == [7, 8, 9, 10]
    assert redis_client.lrange(f"{jobs_env}:content", 0, -1) == [
        o.message_id.encode() for o in outgoing[:3]
    ]
    assert redis_client.lrange(f"{jobs_env}:content.DQ", 0, -1) == [outgoing[3].message_id.encode()]


def test_a_server_without_the_script_gets_its_text(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "SEND_SHA", "0" * 40)  # a name no server knows: NOSCRIPT
    broker.send([broker.Outgoing(5, tenant_id, "content", str(uuid.uuid4()))])
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [5]


def test_a_dropped_connection_is_replaced(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    broker.send([broker.Outgoing(1, tenant_id, "content", str(uuid.uuid4()))])
    conn = wire._links.conn
    conn.send_command("CLIENT", "ID")
    redis_client.client_kill_filter(_id=conn.read_response())
    broker.send([broker.Outgoing(2, tenant_id, "content", str(uuid.uuid4()))])
    assert sorted(job_ids_in_redis(redis_client, jobs_env, "content")) == [1, 2]


def test_threads_keep_their_own_connection(tenant_id: uuid.UUID, jobs_env: str) -> None:
    seen: list[Any] = []

    def send(n: int) -> None:
        broker.send([broker.Outgoing(n, tenant_id, "content", str(uuid.uuid4()))])
        seen.append(wire._links.conn)

    threads = [threading.Thread(target=send, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 2


class _Stamp(dramatiq.Middleware):
    """Hooks enqueues: the send must then build Messages and call the hooks."""

    def __init__(self) -> None:
        self.before: list[str] = []
        self.after: list[str] = []

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.before.append(message.message_id)

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.after.append(message.message_id)


def test_hooked_middleware_sees_every_message(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    stamp = _Stamp()
    broker.get_broker().add_middleware(stamp)
    outgoing = broker.Outgoing(3, tenant_id, "content", str(uuid.uuid4()))
    broker.send([outgoing])
    assert stamp.before == stamp.after == [outgoing.message_id]
    body = redis_client.hget(f"{jobs_env}:content.msgs", outgoing.message_id)
    assert body is not None and json.loads(body)["args"] == [3, str(tenant_id)]


def _calls(client: redis_lib.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def test_message_ids_are_canonical_random_uuids() -> None:
    ids = broker.new_message_ids(2000)
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122 and broker.is_uuid_text(text)
