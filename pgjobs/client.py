"""A small client of the HTTP API, for services that should not reach PostgreSQL or Redis::

    from pgjobs.client import Client

    with Client("https://jobs.example.com", token) as jobs:
        job = jobs.enqueue("thumbnail", {"image_id": 42}, idempotency_key="img-42")
        done = jobs.wait_for(job.id, timeout=60)

The methods are those of ``pgjobs`` (without ``tenant_id``: the token decides it), their
answers are typed models, and every refusal is an :class:`ApiError` (a subclass per status)
carrying the problem details' typed error name and fields. Only httpx and pydantic are
imported: nothing of the database layer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict

JobStatus = Literal[
    "pending", "queued", "held", "waiting", "active", "succeeded", "failed", "cancelled"
]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_EVENTS: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Job(_Answer):
    """A job as ``GET /v1/jobs/{id}`` answers it."""

    id: int
    tenant_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    status: JobStatus
    attempts: int
    max_attempts: int
    priority: int
    run_at: datetime
    idempotency_key: str | None
    progress: int
    progress_message: str | None
    result: Any
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class JobEvent(_Answer):
    id: int
    job_id: int
    event_type: str
    data: dict[str, Any]
    created_at: datetime


class Enqueued(_Answer):
    """What enqueueing answers; ``created`` is False when the idempotency key matched."""

    id: int
    type: str
    status: JobStatus
    run_at: datetime
    created: bool


class Cancelled(_Answer):
    job_id: int
    status: JobStatus
    stop_requested: bool


class BulkCount(_Answer):
    jobs: int
    max_id: int


class BulkDone(_Answer):
    action: Literal["cancel", "retry"]
    job_ids: list[int]
    stop_requested: list[int]
    more: bool


class JobsPage(_Answer):
    items: list[Job]
    next_cursor: str | None


class EventsPage(_Answer):
    items: list[JobEvent]
    next_cursor: str | None


class Schedule(_Answer):
    """A periodic job's schedule as ``/v1/schedules`` answers it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    job_type: str
    payload: dict[str, Any]
    cron: str | None
    interval_seconds: int | None
    timezone: str
    status: Literal["active", "paused", "archived"]
    misfire_policy: Literal["skip", "run_once", "catch_up"]
    catch_up_limit: int | None
    jitter_seconds: int
    declared: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: int | None
    created_at: datetime
    updated_at: datetime


class SchedulesPage(_Answer):
    items: list[Schedule]
    next_cursor: str | None


class ApiError(Exception):
    """The API refused a request: ``status``, the typed ``error`` name (e.g.
    ``InvalidPayload``), ``detail`` and ``errors`` (field paths and messages)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.error = str(problem.get("error", "HttpError"))
        self.detail = str(problem.get("detail", ""))
        self.errors: list[dict[str, str]] = list(problem.get("errors", []))
        self.problem = dict(problem)
        super().__init__(f"{status} {self.error}: {self.detail}")


class InvalidRequest(ApiError):
    """400 or 422: the request or its body is invalid (see ``errors``)."""


class Unauthorized(ApiError):
    """401: the token is missing, malformed, unknown, revoked or expired."""


class Forbidden(ApiError):
    """403: the token lacks a scope."""


class NotFound(ApiError):
    """404: no such resource for this token's tenant."""


class Conflict(ApiError):
    """409: the resource's state does not allow this (e.g. retrying a running job)."""


class TooLarge(ApiError):
    """413: the body or the payload is over its limit."""


class RateLimited(ApiError):
    """429: over the token's rate; ``retry_after`` seconds to wait."""

    @property
    def retry_after(self) -> int:
        return int(self.problem.get("retry_after", 1))


class Unavailable(ApiError):
    """5xx: the service or a server it needs is unavailable."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: InvalidRequest,
    429: RateLimited,
}


class Client:
    """The API's jobs endpoints, synchronously, on one keep-alive connection pool."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:  # never the token
        return f"Client({str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- calls ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.content else None

    def enqueue(
        self,
        type: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> Enqueued:
        """``POST /v1/jobs``."""
        body = _job_body(type, payload, delay, run_at, priority, max_attempts)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        return Enqueued.model_validate(self._call("POST", "/v1/jobs", json=body, headers=headers))

    def enqueue_many(self, jobs: Sequence[Mapping[str, Any]]) -> list[Enqueued]:
        """``POST /v1/jobs/batch``: each item has ``type``, ``payload`` and optionally
        ``idempotency_key``, ``delay``, ``run_at``, ``priority``, ``max_attempts``. All or
        nothing."""
        items = [{k: _jsonable(v) for k, v in job.items() if v is not None} for job in jobs]
        answer = self._call("POST", "/v1/jobs/batch", json={"jobs": items})
        return [Enqueued.model_validate(j) for j in answer["jobs"]]

    def get_job(self, job_id: int) -> Job:
        return Job.model_validate(self._call("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        idempotency_key: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        order: Literal["newest", "oldest"] | None = None,
    ) -> JobsPage:
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: list[tuple[str, str]] = [("status", s) for s in statuses]
        for name, value in (
            ("type", type),
            ("created_after", created_after),
            ("created_before", created_before),
            ("idempotency_key", idempotency_key),
            ("cursor", cursor),
            ("limit", limit),
            ("order", order),
        ):
            if value is not None:
                params.append((name, str(_jsonable(value))))
        return JobsPage.model_validate(self._call("GET", "/v1/jobs", params=params))

    def get_job_events(
        self, job_id: int, *, cursor: str | None = None, limit: int | None = None
    ) -> EventsPage:
        params = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
        answer = self._call("GET", f"/v1/jobs/{job_id}/events", params=params)
        return EventsPage.model_validate(answer)

    def count_jobs_by_status(self, *, type: str | None = None) -> dict[str, int]:
        params = {"type": type} if type is not None else {}
        counts: dict[str, int] = self._call("GET", "/v1/counts", params=params)
        return counts

    def cancel_job(self, job_id: int, *, reason: str | None = None) -> Cancelled:
        body = {"reason": reason} if reason is not None else None
        return Cancelled.model_validate(self._call("POST", f"/v1/jobs/{job_id}/cancel", json=body))

    def retry_job(self, job_id: int) -> Job:
        return Job.model_validate(self._call("POST", f"/v1/jobs/{job_id}/retry"))

    def run_job_now(self, job_id: int) -> Job:
        """``POST /v1/jobs/{id}/run-now``: a delayed job runs now."""
        return Job.model_validate(self._call("POST", f"/v1/jobs/{job_id}/run-now"))

    def count_selected(self, action: Literal["cancel", "retry"], **selection: Any) -> BulkCount:
        """``POST /v1/jobs/bulk/count``. ``selection``: ``ids`` and/or the filters of
        :meth:`list_jobs` (``status`` a list); pass the answer's ``max_id`` to the action."""
        body = {"action": action, **_selection(selection)}
        return BulkCount.model_validate(self._call("POST", "/v1/jobs/bulk/count", json=body))

    def cancel_jobs(self, *, reason: str | None = None, **selection: Any) -> BulkDone:
        """``POST /v1/jobs/bulk/cancel``: at most 10,000 jobs a call (``more``: call again)."""
        body = _selection({**selection, "reason": reason})
        return BulkDone.model_validate(self._call("POST", "/v1/jobs/bulk/cancel", json=body))

    def retry_jobs(self, **selection: Any) -> BulkDone:
        """``POST /v1/jobs/bulk/retry``: the failed and cancelled jobs of the selection."""
        body = _selection(selection)
        return BulkDone.model_validate(self._call("POST", "/v1/jobs/bulk/retry", json=body))

    def job_types(self) -> list[dict[str, Any]]:
        """Every job type the API knows, with its payload's JSON Schema."""
        types: list[dict[str, Any]] = self._call("GET", "/v1/job-types")
        return types

    # --- schedules ---------------------------------------------------------------------------

    def create_schedule(
        self,
        name: str,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str | None = None,
        misfire: Literal["skip", "run_once", "catch_up"] | None = None,
        catch_up_limit: int | None = None,
        jitter: float | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """``POST /v1/schedules``: the arguments of ``pgjobs.schedules.create``."""
        body = _given(
            name=name,
            type=type,
            payload=None if payload is None else dict(payload),
            cron=cron,
            every=every,
            tz=tz,
            misfire=misfire,
            catch_up_limit=catch_up_limit,
            jitter=jitter,
            paused=paused,
        )
        return Schedule.model_validate(self._call("POST", "/v1/schedules", json=body))

    def list_schedules(
        self,
        *,
        status: str | Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> SchedulesPage:
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: list[tuple[str, str]] = [("status", s) for s in statuses]
        params += [(k, str(v)) for k, v in _given(cursor=cursor, limit=limit).items()]
        return SchedulesPage.model_validate(self._call("GET", "/v1/schedules", params=params))

    def get_schedule(self, schedule_id: uuid.UUID | str) -> Schedule:
        return Schedule.model_validate(self._call("GET", f"/v1/schedules/{schedule_id}"))

    def get_schedule_by_name(self, name: str) -> Schedule:
        return Schedule.model_validate(self._call("GET", f"/v1/schedules/by-name/{name}"))

    def update_schedule(self, schedule_id: uuid.UUID | str, **changes: Any) -> Schedule:
        """``PATCH /v1/schedules/{id}`` with the fields given (``name``, ``type``,
        ``payload``, ``cron``, ``every``, ``tz``, ``misfire``, ``catch_up_limit``,
        ``jitter``)."""
        answer = self._call("PATCH", f"/v1/schedules/{schedule_id}", json=changes)
        return Schedule.model_validate(answer)

    def pause_schedule(self, schedule_id: uuid.UUID | str) -> Schedule:
        return self._schedule_action(schedule_id, "pause")

    def resume_schedule(self, schedule_id: uuid.UUID | str) -> Schedule:
        return self._schedule_action(schedule_id, "resume")

    def archive_schedule(self, schedule_id: uuid.UUID | str) -> Schedule:
        return self._schedule_action(schedule_id, "archive")

    def run_schedule_now(self, schedule_id: uuid.UUID | str) -> Enqueued:
        """One job now, beside the slots (Conflict unless the schedule is active)."""
        return Enqueued.model_validate(self._call("POST", f"/v1/schedules/{schedule_id}/run-now"))

    def upcoming_slots(self, schedule_id: uuid.UUID | str, count: int = 10) -> list[datetime]:
        answer = self._call("GET", f"/v1/schedules/{schedule_id}/upcoming", params={"count": count})
        return [datetime.fromisoformat(slot) for slot in answer["slots"]]

    def _schedule_action(self, schedule_id: uuid.UUID | str, action: str) -> Schedule:
        return Schedule.model_validate(self._call("POST", f"/v1/schedules/{schedule_id}/{action}"))

    # --- event streams -----------------------------------------------------------------------

    def stream_events(
        self, job_id: int, *, last_event_id: int | None = None, read_timeout: float | None = None
    ) -> Iterator[JobEvent]:
        """The job's events as they happen (``GET /v1/jobs/{id}/stream``), until its terminal
        event; resumes after ``last_event_id``. ``read_timeout``: give up (httpx.ReadTimeout)
        after that many seconds without a byte (the server sends one every 15 s)."""
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        with self._http.stream(
            "GET", f"/v1/jobs/{job_id}/stream", headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    yield JobEvent.model_validate(json.loads("\n".join(data)))
                    data = []

    def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """The job once it is terminal, following its event stream (reconnecting where it
        left off). TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: int | None = None
        while True:
            job = self.get_job(job_id)
            if job.status in TERMINAL:
                return job
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            try:
                for event in self.stream_events(job_id, last_event_id=last, read_timeout=remaining):
                    last = event.id
                    if event.event_type in TERMINAL_EVENTS:
                        break
                    if deadline is not None and time.monotonic() > deadline:
                        break
            except httpx.ReadTimeout:
                pass


def _selection(selection: Mapping[str, Any]) -> dict[str, Any]:
    body = {k: _jsonable(v) for k, v in selection.items() if v is not None}
    if isinstance(body.get("status"), str):
        body["status"] = [body["status"]]
    return body


def _job_body(
    type: str,
    payload: Mapping[str, Any],
    delay: float | None,
    run_at: datetime | None,
    priority: int | None,
    max_attempts: int | None,
) -> dict[str, Any]:
    given = _given(delay=delay, run_at=run_at, priority=priority, max_attempts=max_attempts)
    return {"type": type, "payload": dict(payload), **given}


def _given(**values: Any) -> dict[str, Any]:
    """The arguments that were given (not None), as JSON values."""
    return {name: _jsonable(value) for name, value in values.items() if value is not None}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _error(response: httpx.Response) -> ApiError:
    try:
        problem = response.json()
    except ValueError:
        problem = {"error": "HttpError", "detail": response.reason_phrase}
    if not isinstance(problem, dict):
        problem = {"error": "HttpError"}
    if response.status_code == 429:
        problem.setdefault("retry_after", response.headers.get("retry-after", "1"))
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = Unavailable if response.status_code >= 500 else ApiError
    return cls(response.status_code, problem)
