"""A small asyncio HTTP/1.1 load generator: keep-alive connections, one request at a time on
each, and Server-Sent Events readers.

Written on raw asyncio streams (uvloop when installed) rather than httpx: a general client
spends several times the CPU per request, and on a 2-core machine the generator's CPU is taken
from the server it measures. It speaks just what the API answers: a status line, headers and a
Content-Length body, or an event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime


def use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - plain asyncio works too
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""


class Connection:
    """One keep-alive connection."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def send(self, request: Request) -> tuple[int, bytes]:
        """(status, body) of one request."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        extra = ""
        if request.body:
            extra = f"Content-Type: application/json\r\nContent-Length: {len(request.body)}\r\n"
        self.writer.write(
            f"{request.method} {request.path} HTTP/1.1\r\n{self.head}{extra}\r\n".encode()
            + request.body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    errors: int
    statuses: dict[int, int]
    latencies_ms: list[float] = field(repr=False)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def closed_loop(
    host: str,
    port: int,
    headers: dict[str, str],
    requests: Sequence[Request],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    seed: int = 0,
) -> LoadResult:
    """``concurrency`` connections, each sending a random one of ``requests`` as soon as the
    last was answered, for ``warmup`` + ``seconds``; only the last ``seconds`` are counted."""
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    counting = time.perf_counter() + warmup
    stop = counting + seconds

    async def one() -> None:
        conn = Connection(host, port, headers)
        await conn.open()
        try:
            while (now := time.perf_counter()) < stop:
                status, _ = await conn.send(rng.choice(requests))
                if now >= counting:
                    latencies.append((time.perf_counter() - now) * 1000)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            await conn.close()

    await asyncio.gather(*(one() for _ in range(concurrency)))
    ok = sum(n for s, n in statuses.items() if s < 400)
    return LoadResult(concurrency, seconds, ok, sum(statuses.values()) - ok, statuses, latencies)


@dataclass
class StreamStats:
    """Delivery delays of events read from SSE streams: now minus the event's own
    ``created_at`` (its transaction's start, so the delay is counted from before the commit),
    for events created after the stream was open."""

    opened: int = 0
    ended: int = 0
    events: int = 0
    delays_ms: list[float] = field(default_factory=list)
    failures: int = 0


async def follow(
    host: str,
    port: int,
    headers: dict[str, str],
    path: str,
    stats: StreamStats,
    opened: asyncio.Event,
    *,
    on_open: Callable[[], None] | None = None,
) -> None:
    """Read one event stream to its end, recording each event's delivery delay."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        stats.failures += 1
        return
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, **headers}.items())
    writer.write(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode())
    try:
        status_line = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in status_line.split(b"\r\n")[0]:
            stats.failures += 1
            return
        since = datetime.now().astimezone()
        stats.opened += 1
        if on_open is not None:
            on_open()
        await opened.wait()
        data = b""
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                data = line[5:].strip()
            elif line in (b"\r\n", b"\n") and data:
                received = datetime.now().astimezone()
                event = json.loads(data)
                created = datetime.fromisoformat(event["created_at"])
                stats.events += 1
                if created >= since:
                    stats.delays_ms.append((received - created).total_seconds() * 1000)
                data = b""
            elif line.strip().isdigit():  # chunked transfer: a chunk size line
                continue
        stats.ended += 1
    except (OSError, asyncio.IncompleteReadError):
        stats.failures += 1
    finally:
        writer.close()
