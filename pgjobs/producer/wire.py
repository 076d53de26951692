"""Writing messages to Redis in one round trip: one EVALSHA of ``send.lua``, packed by hand,
on a connection the calling thread keeps.

Why not redis-py's pipeline: a MULTI/EXEC of an HSET, an RPUSH and the doorbell's EVAL was
more than half of a single ``enqueue``'s producer CPU (docs/performance.md): a pool checkout
that probes the socket, four commands packed and four replies parsed. Here a call packs one
command from bytes already built and reads one integer; the script stores the bodies, pushes
the ids and rings the doorbells atomically, as the MULTI/EXEC did.

A server that does not know the script yet (first call, restart, ``SCRIPT FLUSH``) answers
NOSCRIPT; the call is then repeated as EVAL with the script's text, which loads it. A
connection error closes the connection and the call is tried once more on a new one: the
write is idempotent for a consumer (a message id pushed twice is claimed once).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import NoScriptError

DOORBELL_TTL_MS = 60_000
"""How long (ms) a doorbell rung for a consumer that is no longer waiting lives."""
SEND_LUA = (Path(__file__).with_name("send.lua")).read_text()
SEND_SHA = hashlib.sha1(SEND_LUA.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


def write(client: redis.Redis, namespace: str, messages: Sequence[tuple[str, str, bytes]]) -> int:
    """Store ``(queue, message id, encoded message)`` triples (queue as stored: a delayed
    message's is the delay queue) under ``namespace`` and ring their queues' doorbells, in one
    round trip on ``client``'s server. Returns how many waiting consumers were woken."""
    return int(_call(client, send_arguments(namespace, messages)))


def sleepers_key(queue_key: str) -> str:
    """The set of doorbells of the consumers waiting on ``<ns>:<queue>`` (``queue_key``):
    pgjobs/worker/consumer.py adds its own before it blocks; every writer of that queue rings
    them in the same round trip as its write (``send.lua``, and the asyncio sender)."""
    return f"{queue_key}.sleepers"


def stored_layout(
    namespace: str, messages: Sequence[tuple[str, str, bytes]]
) -> list[tuple[str, dict[str, bytes]]]:
    """Where ``(queue, message id, encoded message)`` triples go, per queue: the queue's list
    key (its ids are RPUSHed there) and the bodies by id (HSET into ``<key>.msgs``). The
    threaded and the asyncio senders write exactly this."""
    by_queue: dict[str, dict[str, bytes]] = {}
    for queue, message_id, body in messages:
        bodies = by_queue.get(queue)
        if bodies is None:
            bodies = by_queue[queue] = {}
        bodies[message_id] = body
    return [(f"{namespace}:{queue}", bodies) for queue, bodies in by_queue.items()]


def send_arguments(namespace: str, messages: Sequence[tuple[str, str, bytes]]) -> list[bytes]:
    """``numkeys, KEYS..., ARGV...`` of ``send.lua`` for these messages (its header)."""
    keys: list[bytes] = []
    argv: list[bytes] = [b"%d" % DOORBELL_TTL_MS]
    for key, bodies in stored_layout(namespace, messages):
        keys += [key.encode(), f"{key}.msgs".encode(), sleepers_key(key).encode()]
        argv.append(b"%d" % len(bodies))
        for message_id, body in bodies.items():
            argv += [message_id.encode(), body]
    return [b"%d" % len(keys), *keys, *argv]


def packed(*args: bytes) -> bytes:
    """One command in Redis's wire protocol (RESP): what redis-py's packer writes, for
    arguments that are bytes already."""
    parts = [b"*%d\r\n" % len(args)]
    parts += [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]
    return b"".join(parts)


def _call(client: redis.Redis, args: list[bytes]) -> Any:
    """EVALSHA of ``send.lua`` (EVAL once when the server lacks it), one retry on a new
    connection after a connection error."""
    for attempt in (1, 2):
        conn = _link(client)
        try:
            try:
                return _request(conn, packed(b"EVALSHA", SEND_SHA.encode(), *args))
            except NoScriptError:
                return _request(conn, packed(b"EVAL", SEND_LUA.encode(), *args))
        except (redis.ConnectionError, redis.TimeoutError):
            _forget(conn)
            if attempt == 2:
                raise
        except BaseException:
            _forget(conn)  # whatever it left unread must not answer the next call
            raise
    raise AssertionError("unreachable")


def _request(conn: Any, command: bytes) -> Any:
    conn.send_packed_command([command], check_health=False)
    reply = conn.read_response()
    if isinstance(reply, redis.ResponseError):
        raise reply
    return reply


class _Links(threading.local):
    """This thread's connection, and the client and process it belongs to."""

    conn: Any = None
    client: redis.Redis | None = None
    pid = 0


_links = _Links()


def _link(client: redis.Redis) -> Any:
    """This thread's connection to ``client``'s server: made from its pool's settings but held
    outside the pool (no checkout per call). A new client (a new broker: settings changed) or
    a forked process gets a new one; a thread's ends with the thread."""
    links = _links
    if links.conn is None or links.client is not client or links.pid != os.getpid():
        if links.conn is not None and links.pid == os.getpid():
            links.conn.disconnect()
        pool = client.connection_pool
        links.conn = pool.connection_class(**pool.connection_kwargs)
        links.client, links.pid = client, os.getpid()
    return links.conn


def _forget(conn: Any) -> None:
    conn.disconnect()
    if _links.conn is conn:
        _links.conn = None
