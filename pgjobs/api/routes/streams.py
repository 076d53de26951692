"""``GET /v1/jobs/{id}/stream``: a job's events as Server-Sent Events, live.

The stream subscribes to the process's event feed (pgjobs/aio/feed.py) *before* it reads the
job and its past events, so no event can fall between the read and the subscription; events
that arrive both ways are sent once (by id). Each SSE event's ``id`` is the event's id, so a
client that reconnects with ``Last-Event-ID`` gets exactly what it missed. The stream ends
after the job's terminal event (at once for a job already terminal), when the client goes
away, or when its token stops being valid (checked every ``JOBS_API_TOKEN_CACHE_SECONDS``).
A client that reads slowly only slows its own stream: the feed never waits for it, and a
stream that fell behind catches up from the table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from pgjobs import aio
from pgjobs.aio.feed import TERMINAL_EVENTS, Subscription, get_feed
from pgjobs.api.auth import Caller, Gate, bearer
from pgjobs.api.routes.jobs import PROBLEMS
from pgjobs.db.models import TERMINAL_STATUSES
from pgjobs.db.schemas.job import JobEventRead
from pgjobs.db.validation import BIGINT_MAX
from pgjobs.producer.errors import InvalidOption
from pgjobs.producer.status import encode_cursor
from pgjobs.settings import get_settings

router = APIRouter(prefix="/v1", tags=["jobs"])

CATCH_UP_PAGE = 500


def sse_event(event: JobEventRead) -> bytes:
    """One event in the SSE wire format."""
    return (
        f"id: {event.id}\nevent: {event.event_type.value}\ndata: {event.model_dump_json()}\n\n"
    ).encode()


def _last_event_id(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit() or int(value) > BIGINT_MAX:
        raise InvalidOption.for_field("Last-Event-ID", "must be an event id")
    return int(value)


@router.get(
    "/jobs/{job_id}/stream",
    responses={
        **PROBLEMS,
        200: {"content": {"text/event-stream": {}}, "description": "The job's events"},
    },
    response_class=StreamingResponse,
)
async def stream_job(
    job_id: int,
    request: Request,
    principal: Caller,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """The job's events as they are committed (resumable with ``Last-Event-ID``), ending after
    the terminal event."""
    gate: Gate = request.app.state.gate
    token = bearer(request)
    return await job_event_stream(
        principal.tenant_id,
        job_id,
        _last_event_id(last_event_id),
        lambda: gate.still_valid(token),
    )


StillValid = Callable[[], Awaitable[bool]]
"""Asked every ``JOBS_API_TOKEN_CACHE_SECONDS``: whether the stream's caller may still read
(its token, or the dashboard's session); the stream ends when not."""


async def job_event_stream(
    tenant_id: uuid.UUID, job_id: int, after: int, still_valid: StillValid
) -> StreamingResponse:
    """The SSE response of a job's events after ``after``; NotFound (before any byte is
    streamed) for another tenant's job. Also the dashboard's live job page (pgjobs/ui/)."""
    subscribing = get_feed().subscribe(job_id)
    subscription = await subscribing.__aenter__()
    try:
        job = await aio.get_job(tenant_id, job_id)  # 404 before any byte is streamed
        past = await _events_after(tenant_id, job_id, after)
    except BaseException:
        await subscribing.__aexit__(None, None, None)
        raise
    ended = past[-1].event_type in TERMINAL_EVENTS if past else job.status in TERMINAL_STATUSES

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            last = after
            for event in past:
                yield sse_event(event)
                last = event.id
            if not ended:
                async for chunk in _live(subscription, tenant_id, job_id, last, still_valid):
                    yield chunk
        finally:
            await subscribing.__aexit__(None, None, None)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events_after(tenant_id: object, job_id: int, after: int) -> list[JobEventRead]:
    """Every event of the job after id ``after``, from the table."""
    events: list[JobEventRead] = []
    cursor = encode_cursor(after) if after else None
    while True:
        page = await aio.get_job_events(tenant_id, job_id, cursor=cursor, limit=CATCH_UP_PAGE)  # type: ignore[arg-type]
        events.extend(page.items)
        if page.next_cursor is None:
            return events
        cursor = page.next_cursor


async def _live(
    subscription: Subscription, tenant_id: object, job_id: int, last: int, still_valid: StillValid
) -> AsyncIterator[bytes]:
    """Events from the feed until the terminal one; heartbeats while idle; the end when the
    caller may no longer read."""
    settings = get_settings()
    recheck_every = max(1.0, settings.api_token_cache_seconds)
    heartbeat = settings.api_stream_heartbeat_seconds
    next_check = time.monotonic() + recheck_every
    last_sent = time.monotonic()
    while True:
        now = time.monotonic()
        await subscription.wait(max(0.0, min(next_check, last_sent + heartbeat) - now))
        events, lagged = subscription.take()
        if lagged:
            events = await _events_after(tenant_id, job_id, last)
        for event in events:
            if event.id <= last:
                continue
            yield sse_event(event)
            last = event.id
            last_sent = time.monotonic()
            if event.event_type in TERMINAL_EVENTS:
                return
        now = time.monotonic()
        if now >= next_check:
            if not await still_valid():
                return
            next_check = now + recheck_every
        if now - last_sent >= heartbeat:
            yield b": keep-alive\n\n"
            last_sent = now
