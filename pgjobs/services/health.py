"""Health check: can this process reach PostgreSQL and Redis, and how fast; which workers run,
and which due jobs none of them serves.

Only PostgreSQL and Redis decide the check's outcome (``ok``): a process that reaches both is
healthy whatever the rest of the system does. Jobs that no running worker serves are warnings,
for the operator (and the ``pgjobs_unserved_jobs`` gauge, for alerts)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from pgjobs.db.engine import get_engine
from pgjobs.db.errors import JobsError
from pgjobs.services.locate import redis_url, sqlalchemy_url
from pgjobs.vault.redaction import redact_text


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    ok: bool
    latency_ms: float | None
    error: str | None = None
    detail: str | None = None
    warnings: tuple[str, ...] = ()


def check_postgres(engine: Engine | None = None) -> ServiceHealth:
    """``select 1`` on ``engine`` (default: the process's pool)."""
    started = time.perf_counter()
    try:
        with (engine if engine is not None else get_engine()).connect() as conn:
            conn.execute(text("select 1"))
    except (JobsError, Exception) as exc:  # noqa: BLE001 - a health check reports, never raises
        return ServiceHealth("postgres", False, None, _describe(exc))
    return ServiceHealth("postgres", True, round((time.perf_counter() - started) * 1000, 2))


def wait_for_postgres(url: str, timeout: float, interval: float = 1.0) -> ServiceHealth:
    """Check PostgreSQL at ``url`` every ``interval`` seconds until it answers or ``timeout``
    seconds have passed; the last check's result. A new connection each time: a server that is
    still starting (or restarting after its first initialisation, as the official image does)
    refuses some and accepts later ones."""
    deadline = time.monotonic() + timeout
    engine = create_engine(
        sqlalchemy_url(url),
        poolclass=NullPool,
        connect_args={"connect_timeout": max(1, min(5, int(timeout)))},
    )
    try:
        while True:
            result = check_postgres(engine)
            if result.ok or time.monotonic() + interval > deadline:
                return result
            time.sleep(interval)
    finally:
        engine.dispose()


def check_redis() -> ServiceHealth:
    """``PING`` on a short-lived client."""
    started = time.perf_counter()
    try:
        client = redis.Redis.from_url(redis_url(), socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (JobsError, Exception) as exc:  # noqa: BLE001
        return ServiceHealth("redis", False, None, _describe(exc))
    return ServiceHealth("redis", True, round((time.perf_counter() - started) * 1000, 2))


def check_workers() -> ServiceHealth:
    """The running workers (pgjobs/producer/served.py) and a warning per job type with due
    jobs that none of them serves."""
    from pgjobs.producer import served

    started = time.perf_counter()
    try:
        workers = served.live_workers()
        unserved = served.unserved_jobs(workers)
    except (JobsError, Exception) as exc:  # noqa: BLE001
        return ServiceHealth("workers", False, None, _describe(exc))
    queues = sorted({q for w in workers for q in w.queues})
    detail = f"{len(workers)} running" + (f", queues {', '.join(queues)}" if queues else "")
    warnings = tuple(
        f"{w.waiting} due job(s) of type {w.job_type}"
        + (f" (queue {w.queue})" if w.queue else "")
        + f", the oldest due {w.due_for_seconds:.0f} s ago: no running worker serves it"
        for w in unserved
    )
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ServiceHealth("workers", True, latency, detail=detail, warnings=warnings)


def check_all() -> list[ServiceHealth]:
    return [check_postgres(), check_redis(), check_workers()]


def _describe(exc: BaseException) -> str:
    """Error type and first line, URL passwords and known secrets removed."""
    first_line = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {redact_text(first_line)[:200]}"
