"""Live job events for a whole process: one reader of ``job_events``, many subscribers.

An API process may hold a thousand open event streams and ``pgjobs.aio.wait_for`` calls; they
all subscribe here, by job id, and one task on one database connection reads every new event
(``SELECT ... WHERE id > last seen``) every ``JOBS_API_EVENT_POLL_MS`` (ten times less often
while nobody listens) and hands each to the subscribers of its job. The number of database
connections does not grow with the number of clients, and the workers' statements carry no
NOTIFY (docs/architecture.md says why, with the figures).

Event ids come from a sequence, so they are taken in one order and may commit in another: a
transaction holding id 41 can commit after the one holding 42 was read. An id skipped that
way is remembered as *missing* and asked for again on every read, until it shows up (then it
is delivered like any other) or ``JOBS_API_EVENT_GAP_SECONDS`` pass (its transaction rolled
back, or is still open: a subscriber that needs certainty re-reads the job, as
``wait_for`` does).

A subscriber that falls behind (its buffer full) is told it *lagged* instead of blocking the
reader; it catches up from the table by itself. Subscribers never slow each other down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import text

from pgjobs.db.async_pool import connect_one
from pgjobs.db.errors import JobsError
from pgjobs.db.models import EventType
from pgjobs.db.schemas.job import JobEventRead
from pgjobs.db.statements import Plan, Step, arun
from pgjobs.logs import get_logger
from pgjobs.settings import get_settings

log = get_logger(__name__)

TERMINAL_EVENTS = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})
"""Events after which a job is terminal (until a manual retry)."""

READ_LIMIT = 5_000
"""Events one read takes at most; a full read is followed by another at once."""
MISSING_MAX = 20_000
"""Missing ids remembered at most (the oldest are given up first)."""
STARTUP_LOOKBACK = 1_000
"""On start, ids this far below the newest are checked for gaps too (transactions in flight
while the reader started)."""
IDLE_FACTOR = 10
"""With no subscriber, the reader reads this many times less often (it still reads: the ids it
sees are what tells it about gaps)."""
SUBSCRIBER_BUFFER = 1_000
"""Events a subscriber may have waiting before it is told it lagged."""

NEWEST_EVENT = text("SELECT coalesce(max(id), 0) AS newest FROM job_events")

READ_NEW = text(
    """
    SELECT id, job_id, tenant_id, event_type, created_at,
           -- the data of watched jobs only: the others' ids are what the reader needs
           CASE WHEN job_id = ANY(CAST(:watched AS bigint[])) THEN data END AS data
    FROM job_events
    WHERE id > :after OR id = ANY(CAST(:missing AS bigint[]))
    ORDER BY id
    LIMIT :limit
    """
)


class Subscription:
    """One subscriber's view of one job's events (see :meth:`EventFeed.subscribe`)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._events: deque[JobEventRead] = deque()
        self._lagged = False
        self._wake = asyncio.Event()

    def _deliver(self, event: JobEventRead) -> None:
        if len(self._events) >= SUBSCRIBER_BUFFER:
            self._lag()
            return
        self._events.append(event)
        self._wake.set()

    def _lag(self) -> None:
        self._events.clear()
        self._lagged = True
        self._wake.set()

    async def wait(self, timeout: float | None) -> None:
        """Return when something was delivered (or the subscriber lagged), or after
        ``timeout`` seconds."""
        if self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def take(self) -> tuple[list[JobEventRead], bool]:
        """(events delivered since the last take, whether some were lost: re-read the
        table after the last event you have)."""
        events, lagged = list(self._events), self._lagged
        self._events.clear()
        self._lagged = False
        self._wake.clear()
        return events, lagged


@dataclass
class _Cursor:
    """What the reader has seen: every id up to ``after``, except ``missing`` (id -> when it
    was first seen missing, monotonic)."""

    after: int
    missing: dict[int, float]


class EventFeed:
    """The process's reader of new job events (one per event loop: :func:`get_feed`)."""

    def __init__(self, poll_seconds: float | None = None, gap_seconds: float | None = None):
        settings = get_settings()
        self.poll_seconds = (
            settings.api_event_poll_ms / 1000 if poll_seconds is None else poll_seconds
        )
        self.gap_seconds = settings.api_event_gap_seconds if gap_seconds is None else gap_seconds
        self._subscribers: dict[int, set[Subscription]] = {}
        self._ready = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reads = 0
        """Reads done so far (a test counts them)."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pgjobs-event-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def ready(self) -> None:
        """Wait until the reader has its starting point: events committed from now on reach
        every subscriber."""
        self.start()
        await self._ready.wait()

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: int) -> AsyncIterator[Subscription]:
        """Receive the events of ``job_id`` committed from now on, for the ``async with``."""
        await self.ready()
        subscription = Subscription(job_id)
        self._subscribers.setdefault(job_id, set()).add(subscription)
        self._subscribed.set()  # an idle reader reads at once, then at the busy pace
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[job_id]

    async def _run(self) -> None:
        backoff = self.poll_seconds
        while True:
            try:
                conn = await connect_one()
            except JobsError as exc:
                log.warning("events.connect_failed", error_type=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                await self._follow(conn)
            except (JobsError, psycopg.Error) as exc:
                log.warning("events.read_failed", error_type=type(exc).__name__)
                for subscribers in self._subscribers.values():
                    for subscription in subscribers:
                        subscription._lag()  # events may have been missed meanwhile
            finally:
                await conn.close()
            await asyncio.sleep(backoff)

    async def _follow(self, conn: psycopg.AsyncConnection[Any]) -> None:
        newest = await arun(conn, _newest())
        cursor = _Cursor(max(0, newest - STARTUP_LOOKBACK), {})
        # ids of the look-back window that are not there are the in-flight ones: missing
        await self._read(conn, cursor, now=time.monotonic(), first=True)
        self._ready.set()
        while True:
            full = await self._read(conn, cursor, now=time.monotonic())
            if not full:
                await self._pause()

    async def _pause(self) -> None:
        """Until the next read: the poll interval while anyone listens, else up to
        :data:`IDLE_FACTOR` times that, cut short by a new subscriber."""
        if self._subscribers:
            await asyncio.sleep(self.poll_seconds)
            return
        self._subscribed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), self.poll_seconds * IDLE_FACTOR)

    async def _read(
        self,
        conn: psycopg.AsyncConnection[Any],
        cursor: _Cursor,
        *,
        now: float,
        first: bool = False,
    ) -> bool:
        """One read: deliver what is new, track gaps. True when the read was full."""
        watched = list(self._subscribers)
        rows = await arun(conn, _read_new(cursor, watched))
        self.reads += 1
        for row in rows:
            if row.id in cursor.missing:
                del cursor.missing[row.id]
            elif row.id > cursor.after:
                if not first or cursor.after > 0:
                    _note_gap(cursor, row.id, now)
                cursor.after = row.id
            else:
                continue
            self._dispatch(row)
        for event_id, since in list(cursor.missing.items()):
            if now - since > self.gap_seconds:
                del cursor.missing[event_id]
        return len(rows) >= READ_LIMIT

    def _dispatch(self, row: Any) -> None:
        subscribers = self._subscribers.get(row.job_id)
        if not subscribers:
            return
        if row.data is None:  # subscribed while this read was under way
            for subscription in subscribers:
                subscription._lag()
            return
        event = JobEventRead.model_validate(row)
        for subscription in subscribers:
            subscription._deliver(event)


def _newest() -> Plan[int]:
    rows = yield Step(NEWEST_EVENT, {})
    return int(rows[0].newest)


def _read_new(cursor: _Cursor, watched: list[int]) -> Plan[list[Any]]:
    params = {
        "after": cursor.after,
        "missing": list(cursor.missing),
        "watched": watched,
        "limit": READ_LIMIT,
    }
    rows: list[Any] = yield Step(READ_NEW, params)
    return rows


def _note_gap(cursor: _Cursor, event_id: int, now: float) -> None:
    """Ids between the last seen and ``event_id`` are missing (up to :data:`MISSING_MAX`)."""
    first_missing = max(cursor.after + 1, event_id - MISSING_MAX)
    for missing in range(first_missing, event_id):
        cursor.missing[missing] = now
    if len(cursor.missing) > MISSING_MAX:
        for oldest in sorted(cursor.missing)[: len(cursor.missing) - MISSING_MAX]:
            del cursor.missing[oldest]


_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventFeed] = (
    weakref.WeakKeyDictionary()
)


def get_feed() -> EventFeed:
    """This event loop's feed, started on first use."""
    loop = asyncio.get_running_loop()
    feed = _feeds.get(loop)
    if feed is None:
        feed = _feeds[loop] = EventFeed()
    feed.start()
    return feed


async def stop_feed() -> None:
    feed = _feeds.pop(asyncio.get_running_loop(), None)
    if feed is not None:
        await feed.stop()
