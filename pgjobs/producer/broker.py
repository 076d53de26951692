"""The one Dramatiq broker of a process, created on first use, and message sending.

Everything that talks to Redis imports the broker from here (never Dramatiq's hidden global
default). Messages carry ids only: ``(job_id, tenant_id)``; the payload stays in PostgreSQL.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name
from dramatiq.encoder import JSONEncoder

from pgjobs.producer import wire
from pgjobs.producer.job_types import actor_name_for
from pgjobs.services.locate import redis_url
from pgjobs.settings import get_settings

_lock = threading.Lock()

_ACK_MANY_LUA = """
redis.call("zadd", KEYS[3], ARGV[1], ARGV[2])
for i = 3, #ARGV do
    if redis.call("srem", KEYS[1], ARGV[i]) > 0 then
        redis.call("hdel", KEYS[2], ARGV[i])
    end
end
"""
_FETCH_LUA = """
redis.call("zadd", KEYS[4], ARGV[1], ARGV[2])
local ids = {}
for i = 1, tonumber(ARGV[3]) do
    local id = redis.call("lpop", KEYS[1])
    if not id then
        break
    end
    ids[i] = id
    redis.call("sadd", KEYS[3], id)
end
if #ids == 0 then
    return {}
end
local bodies = redis.call("hmget", KEYS[2], unpack(ids))
local out = {}
for i = 1, #ids do
    out[2 * i - 1] = ids[i]
    out[2 * i] = bodies[i]
end
return out
"""
RedisArg = str | bytes | int | float


class JobsBroker(RedisBroker):
    """RedisBroker whose Redis message id is always the Dramatiq message id.

    Stock ``enqueue`` draws a fresh Redis id on every enqueue, including when a worker moves a
    due message out of the delay queue; keeping the id stable lets the relay find any job's
    message in Redis by ``content_jobs.queue_job_id``.
    """

    def enqueue(
        self, message: dramatiq.Message[None], *, delay: int | None = None
    ) -> dramatiq.Message[None]:
        """What stock ``enqueue`` stores (``dispatch.lua``'s ``enqueue``), with the queue's
        doorbells rung, in one round trip (``send.lua``). Dramatiq's workers send through here
        when a delayed message becomes due and when a message is retried."""
        message = self.keyed(message, delay)
        self.emit_before("enqueue", message, delay)
        stored = [(message.queue_name, message.message_id, message.encode())]
        wire.write(self.client, self.namespace, stored)
        self.emit_after("enqueue", message, delay)
        return message

    @staticmethod
    def keyed(message: dramatiq.Message[None], delay: int | None) -> dramatiq.Message[None]:
        """The message as it is stored (see :func:`stored_form`)."""
        queue, options = stored_form(message.queue_name, message.message_id, delay)
        return message.copy(queue_name=queue, options=options)

    def dispatch(
        self,
        command: str,
        queue_name: str,
        *args: RedisArg,
        maintenance: bool = False,
        client: Any = None,
    ) -> Any:
        """Run one command of Dramatiq's ``dispatch.lua``, with the arguments its header
        documents (on ``client``, a pipeline, when given)."""
        argv = [
            command,
            int(time.time() * 1000),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            int(maintenance),
            self._max_unpack_size(),
            *args,
        ]
        return self.scripts["dispatch"](keys=[self.namespace], args=argv, client=client)

    def ack_many(self, queue_name: str, message_ids: Sequence[str]) -> None:
        """Ack many messages of one queue in one script call: what ``dispatch.lua``'s ``ack``
        does per message (forget it from this worker's unacked set; drop its body only if it
        was still there, i.e. not requeued to another worker meanwhile), plus the heartbeat
        every dispatch call writes."""
        keys = [
            f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}",
            f"{self.namespace}:{queue_name}.msgs",
            f"{self.namespace}:__heartbeats__",
        ]
        args = [int(time.time() * 1000), self.broker_id, *message_ids]
        self._ack_script(keys=keys, args=args)

    def fetch_many(self, queue_name: str, count: int) -> list[tuple[bytes, bytes | None]]:
        """Take up to ``count`` messages off a queue for this worker: ``(Redis id, body)``
        pairs as stored (bytes), the body None when the id has none.

        What ``dispatch.lua``'s ``fetch`` does (pop the ids, add them to this worker's unacked
        set, read their bodies, write the heartbeat), answering the ids too: the consumer
        checks each body's ids against the Redis id it was stored under, and dead-letters a
        bad one by that id. Dramatiq's housekeeping runs on the same share of fetches as
        stock."""
        keys = [
            f"{self.namespace}:{queue_name}",
            f"{self.namespace}:{queue_name}.msgs",
            f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}",
            f"{self.namespace}:__heartbeats__",
        ]
        count = min(count, self._max_unpack_size())
        args = [int(time.time() * 1000), self.broker_id, count]
        flat = self._fetch_script(keys=keys, args=args)
        if self._should_do_maintenance("fetch"):
            self.dispatch("requeue", queue_name, maintenance=True)
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    @functools.cached_property
    def _ack_script(self) -> Any:
        return self.client.register_script(_ACK_MANY_LUA)

    @functools.cached_property
    def _fetch_script(self) -> Any:
        return self.client.register_script(_FETCH_LUA)


_broker: JobsBroker | None = None


def get_broker() -> JobsBroker:
    """This process's broker (also installed as Dramatiq's global broker)."""
    global _broker
    with _lock:
        if _broker is None:
            settings = get_settings()
            _broker = JobsBroker(
                url=redis_url(settings),
                namespace=settings.redis_namespace,
                heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
            )
            dramatiq.set_broker(_broker)
        return _broker


def set_broker(broker: JobsBroker | None) -> None:
    """Replace the process's broker (the worker installs its configured one; tests reset)."""
    global _broker
    with _lock:
        _broker = broker
        if broker is not None:
            dramatiq.set_broker(broker)


def new_message_id() -> str:
    """Dramatiq message ids are UUID strings; ours are chosen before the row is written."""
    return str(uuid.uuid4())


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_message_ids(count: int) -> list[str]:
    """``count`` message ids at once: random (version 4) UUIDs in their canonical text, as
    ``str(uuid.uuid4())`` writes them, from one read of the system's random source (a fifth
    of the cost of ``uuid4`` each, which was a tenth of a batch's producer CPU)."""
    raw = os.urandom(16 * count).hex()
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
        for h in (raw[i : i + 32] for i in range(0, 32 * count, 32))
    ]


def stored_form(queue: str, message_id: str, delay: int | None) -> tuple[str, dict[str, Any]]:
    """(queue, options) of a message as it is stored: its Redis id is its message id, and a
    delayed one goes to the delay queue with its eta."""
    options: dict[str, Any] = {"redis_message_id": message_id}
    if delay is None:
        return queue, options
    options["eta"] = int(time.time() * 1000) + delay
    return dq_name(queue), options


class Outgoing(NamedTuple):
    """A message to send after commit. A named tuple: a batch builds one per job, in a third
    of the time a frozen dataclass takes."""

    job_id: int
    tenant_id: uuid.UUID
    queue: str
    message_id: str
    delay_ms: int | None = None

    def stored(self, now_ms: int, tenant: str | None = None) -> tuple[str, str, bytes]:
        """``(queue as stored, message id, encoded message)``: exactly the bytes
        ``to_message().encode()`` gives with Dramatiq's default JSON encoder (tests compare
        them), written from a template, with ``now_ms`` as the message's timestamp (and the
        base of a delay's eta). About a tenth of building and encoding the message.
        ``tenant``: the tenant id's text, when the caller has it already."""
        queue, prefix = _stored_prefix(self.queue, self.delay_ms is not None)
        eta = "" if self.delay_ms is None else f',"eta":{now_ms + self.delay_ms}'
        body = (
            f'{prefix}"args":[{self.job_id},"{tenant or self.tenant_id}"],"kwargs":{{}},'
            f'"options":{{"redis_message_id":"{self.message_id}"{eta}}},'
            f'"message_id":"{self.message_id}","message_timestamp":{now_ms}}}'
        )
        return queue, self.message_id, body.encode()

    def to_message(self) -> dramatiq.Message[None]:
        """The message as it is stored, built in one step (:meth:`JobsBroker.keyed` would copy
        it twice)."""
        queue, options = stored_form(self.queue, self.message_id, self.delay_ms)
        return dramatiq.Message(
            queue_name=queue,
            actor_name=actor_name_for(self.queue),
            args=(self.job_id, str(self.tenant_id)),
            kwargs={},
            options=options,
            message_id=self.message_id,
        )


@functools.cache
def _stored_prefix(queue: str, delayed: bool) -> tuple[str, str]:
    """(queue as stored, the encoded message's text up to its arguments) for a queue."""
    stored = dq_name(queue) if delayed else queue
    names = {"queue_name": stored, "actor_name": actor_name_for(queue)}
    return stored, json.dumps(names, separators=(",", ":"))[:-1] + ","


_MAX_JOB_ID = 2**63 - 1  # content_jobs.id is a bigint


def job_args(args: Any) -> tuple[int, uuid.UUID] | None:
    """``(job id, tenant id)`` from a message's arguments, exactly as :meth:`Outgoing.to_message`
    puts them (a positive bigint, not a bool; a UUID string); None when they are anything else
    (a malformed message)."""
    if not isinstance(args, list | tuple) or len(args) != 2:
        return None
    job_id, tenant_id = args
    if type(job_id) is not int or not 0 < job_id <= _MAX_JOB_ID:
        return None
    return (job_id, uuid.UUID(tenant_id)) if is_uuid_text(tenant_id) else None


_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_uuid_text(value: Any) -> bool:
    """Whether ``value`` is a UUID in its canonical text form, as ``str(uuid)`` writes it (our
    message ids, and the tenant ids in messages)."""
    return type(value) is str and _UUID_TEXT.fullmatch(value) is not None


def send(outgoing: Sequence[Outgoing]) -> None:
    """Put messages on Redis in one round trip, however many there are.

    Mirrors ``RedisBroker.enqueue`` (same encoding, delay queue and middleware hooks) with two
    differences: the Redis message id is our message id (``content_jobs.queue_job_id``), so the
    relay can ask Redis whether a job's message is still there; and the whole batch is one
    script call (pgjobs/producer/wire.py), which also rings the queues' doorbells.
    """
    if not outgoing:
        return
    sending = Sending(outgoing)
    wire.write(sending.broker.client, sending.broker.namespace, sending.encoded)
    sending.sent()


class Sending:
    """Messages on their way to Redis: encoded as stored, with the broker's enqueue hooks run
    before (here) and after (:meth:`sent`). The asyncio sender writes :attr:`encoded` with its
    own client and calls :meth:`sent` too.

    When no middleware hooks enqueues and the encoder is Dramatiq's default JSON one (the
    common case), the bodies are written from a template (:meth:`Outgoing.stored`) and no
    ``Message`` is built at all."""

    def __init__(self, outgoing: Sequence[Outgoing]) -> None:
        self.broker = get_broker()
        self.outgoing = outgoing
        self.hooked = _enqueue_hooked(self.broker)
        self.encoded: list[tuple[str, str, bytes]]
        if not self.hooked and type(dramatiq.get_encoder()) is JSONEncoder:
            now_ms = int(time.time() * 1000)
            self.encoded = []
            tenant_id, tenant = None, ""
            for item in outgoing:
                if item.tenant_id is not tenant_id:  # a batch's are mostly one UUID object
                    tenant_id, tenant = item.tenant_id, str(item.tenant_id)
                self.encoded.append(item.stored(now_ms, tenant))
            return
        self.messages = [item.to_message() for item in outgoing]
        if self.hooked:
            for message, item in zip(self.messages, outgoing, strict=True):
                self.broker.emit_before("enqueue", message, item.delay_ms)
        self.encoded = [(m.queue_name, m.message_id, m.encode()) for m in self.messages]

    def sent(self) -> None:
        if self.hooked:
            for message, item in zip(self.messages, self.outgoing, strict=True):
                self.broker.emit_after("enqueue", message, item.delay_ms)


def _enqueue_hooked(broker: JobsBroker) -> bool:
    """Whether any middleware does something before or after an enqueue (Dramatiq's stock
    middleware does not): calling every no-op hook twice per message was a fifth of the
    producer's CPU for a batch."""
    return any(
        type(m).before_enqueue is not dramatiq.Middleware.before_enqueue
        or type(m).after_enqueue is not dramatiq.Middleware.after_enqueue
        for m in broker.middleware
    )


def message_present(queue: str, message_ids: Sequence[str]) -> list[bool]:
    """Whether each message is still held by Redis (waiting, delayed or being processed).

    Dramatiq keeps a message's body in ``<ns>:<queue>.msgs`` (or ``.DQ.msgs`` when delayed)
    until it is acked; one pipelined HEXISTS pair per id.
    """
    if not message_ids:
        return []
    broker = get_broker()
    pipe = broker.client.pipeline(transaction=False)
    for message_id in message_ids:
        pipe.hexists(f"{broker.namespace}:{queue}.msgs", message_id)
        pipe.hexists(f"{broker.namespace}:{dq_name(queue)}.msgs", message_id)
    found = pipe.execute()
    return [bool(found[2 * i] or found[2 * i + 1]) for i in range(len(message_ids))]


def run_broker_maintenance(queues: Sequence[str]) -> None:
    """Run Dramatiq's Redis housekeeping now on each queue: messages held by workers whose
    heartbeat stopped (killed with -9) go back to their queue, dead letters expire.

    Stock Dramatiq runs it on a random 0.1% of commands; the maintenance process runs it on
    every pass so a killed worker's prefetched messages come back within a heartbeat timeout.
    """
    broker = get_broker()
    for queue in queues:
        for name in (queue, dq_name(queue)):
            broker.dispatch("requeue", name, maintenance=True)
