"""The dashboard's Jobs page against a large history: server time of the first page and of a
filtered page, p50/p95, for one tenant of the dataset (bench/dataset.py); and the bulk actions'
costs there: the confirmation page (its count) and one bulk retry batch (``BULK_BATCH`` jobs in
one statement, their messages sent).

Run: ``python -m bench.ui --jobs 1000000`` (DATABASE_URL / REDIS_URL, else embedded servers).
The page is requested in-process through the ASGI app (httpx's ASGI transport), so the figure
is the server's own: session lookup, token check, list query, template rendering.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.routing import Mount

from bench import dataset
from bench.services import scratch, servers
from bench.stats import percentile
from pgjobs.auth.store import create_token
from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import TokenScope
from pgjobs.producer import control
from pgjobs.ui import create_ui_app

GOAL_MS = 50.0
TENANT = 47
"""The dataset gives each tenant one terminal status (bench/dataset.py): tenant 47's jobs all
failed (type ``bench_noop``), so every filter above but the last fills a whole page."""


async def _measure(token: str, calls: int) -> dict[str, tuple[float, float]]:
    app = Starlette(routes=[Mount("/ui", app=create_ui_app("/ui"))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        form = await client.get("/ui/signin")  # its CSRF token, also set as a cookie
        csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed = await client.post("/ui/signin", data={"token": token, "csrf_token": csrf})
        assert signed.status_code == 303, signed.text
        out = {}
        for name, path in (
            ("first page", "/ui/jobs"),
            ("filtered (failed)", "/ui/jobs?status=failed"),
            ("filtered (type + failed)", "/ui/jobs?status=failed&type=bench_noop"),
            ("filter matching nothing", "/ui/jobs?status=cancelled"),
            (
                "bulk retry confirmation (count of failed)",
                "/ui/jobs/confirm?action=retry&status=failed",
            ),
        ):
            times = []
            for i in range(calls + 20):
                started = time.perf_counter()
                answer = await client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 200, answer.status_code
                if i >= 20:  # warm-up
                    times.append(elapsed)
            out[name] = (percentile(times, 50), percentile(times, 95))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--events-per-job", type=int, default=4)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with scratch(servers()) as env:
        started = time.monotonic()
        dataset.load(env.database_url, args.jobs, args.jobs * args.events_per_job, 100)
        print(f"dataset: {args.jobs:,} jobs in {time.monotonic() - started:.0f} s")
        with env.pg() as conn:
            tenant = dataset.tenant_ids(conn, 100)[TENANT]
        token = create_token(tenant, name="bench", scopes=[TokenScope.JOBS_READ]).token  # type: ignore[arg-type]
        for name, (p50, p95) in asyncio.run(_measure(token, args.calls)).items():
            verdict = "ok" if p95 <= GOAL_MS else "over goal"
            print(f"Jobs page, {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({verdict})")
        batches = _retry_batches(tenant, 10)
        print(
            f"bulk retry, one batch of {sm.BULK_BATCH} jobs: p50 {percentile(batches, 50):.0f} ms,"
            f" max {max(batches):.0f} ms (CPU of this process: see the report's load)"
        )


def _retry_batches(tenant: object, count: int) -> list[float]:
    """Wall time of ``count`` bulk retries of ``BULK_BATCH`` failed jobs each (by ids)."""
    times = []
    for _ in range(count):
        with autocommit() as conn:
            ids = conn.execute(FAILED_IDS, {"tenant": tenant, "n": sm.BULK_BATCH}).scalars().all()
        if not ids:
            break
        started = time.perf_counter()
        control.retry_jobs(control.select_jobs(tenant, ids=ids))
        times.append((time.perf_counter() - started) * 1000)
    return times


FAILED_IDS = text(
    "SELECT id FROM content_jobs WHERE tenant_id = :tenant AND status = 'failed' ORDER BY id"
    " LIMIT :n"
)


if __name__ == "__main__":
    main()
