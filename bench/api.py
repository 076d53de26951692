"""The HTTP API's measures: reads and enqueues over HTTP, event streams under load, and what
NOTIFY on every transition would cost the workers.

Every measure runs the real ``jobctl api`` process against a scratch database and drives it
with bench/http_load.py from this process (on the same cores: the report says so):

* ``GET /v1/jobs/{id}``, 64 keep-alive connections, on a 1,000,000-job table (bench/dataset.py),
  one API process and two, and beside them the floor under it (bench/api_floor_app.py: the
  same server with no framework, answering a fixed body, then one SELECT by primary key);
* ``POST /v1/jobs`` from 64 connections against ``pgjobs.enqueue`` from 64 threads;
* 1,000 event streams open on one API process while the workers drain at half their maximum
  rate: delay from an event's ``created_at`` to its arrival on the stream;
* drains (bench/ours.py) with and without 1,000 streams open, and with and without a
  statement-level NOTIFY trigger on ``job_events`` (and a listener): what each costs the
  workers' drain rate.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import dataset, ours, sections
from bench.http_load import Request, StreamStats, closed_loop, follow, use_uvloop
from bench.latency import open_loop
from bench.noop_jobs import noop
from bench.procs import ServerCpu, WorkerGroup, WorkerShape, self_cpu
from bench.results import DrainResult
from bench.services import Env, Servers, scratch, wait_until
from bench.stats import median, p50_p99, percentile
from pgjobs.auth.store import create_token
from pgjobs.db.models import TokenScope
from pgjobs.producer import JobRequest, enqueue, enqueue_many, flush

CONCURRENCY = 64
STREAMS = 1_000
HOST = "127.0.0.1"
API_SETTINGS = {
    # the limit stays on (one Redis call per request, as shipped), above what is offered
    "JOBS_API_RATE_LIMIT": "100000000",
}

NOTIFY_SQL = """
CREATE FUNCTION bench_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgjobs_events', (SELECT max(id)::text FROM new_events));
    RETURN NULL;
END $$;
CREATE TRIGGER bench_notify_events AFTER INSERT ON job_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT
    EXECUTE FUNCTION bench_notify_events();
"""
"""One NOTIFY per statement that writes events (the cheapest form a state machine could
issue): every transition's transaction then takes PostgreSQL's notification queue lock at
commit."""


@dataclass
class LoadFigures:
    label: str
    workers: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    api_cpu_ms: float
    """API processes' CPU per request."""
    pg_cpu_ms: float
    generator_cpu_ms: float


@dataclass
class StreamFigures:
    streams: int
    opened: int
    ended: int
    failures: int
    offered_rate: float
    achieved_rate: float
    events: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    poll_ms: int


@dataclass
class ApiSuite:
    meta: dict[str, Any] = field(default_factory=dict)
    gets: list[LoadFigures] = field(default_factory=list)
    posts: list[LoadFigures] = field(default_factory=list)
    enqueues: list[LoadFigures] = field(default_factory=list)
    streams: list[StreamFigures] = field(default_factory=list)
    drains: dict[str, list[DrainResult]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- the API process ----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def api_process(
    env: Env, log_dir: Path, workers: int = 1, **settings: str
) -> Iterator[tuple[WorkerGroup, int]]:
    """``jobctl api`` on the scratch database, ready: (its process group, port)."""
    import sys

    port = _free_port()
    argv = [sys.executable, "-m", "pgjobs.cli.main", "api", "--host", HOST, "--port", str(port)]
    with _serving(env, log_dir, port, [*argv, "--workers", str(workers)], settings) as group:
        yield group, port


@contextmanager
def floor_process(env: Env, log_dir: Path) -> Iterator[tuple[WorkerGroup, int]]:
    """bench/api_floor_app.py under uvicorn with ``jobctl api``'s server options."""
    import sys

    port = _free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.api_floor_app:app", "--host", HOST]
    argv += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    argv += ["--no-access-log", "--log-level", "warning"]
    with _serving(env, log_dir, port, argv, {}) as group:
        yield group, port


@contextmanager
def _serving(
    env: Env, log_dir: Path, port: int, argv: list[str], settings: dict[str, str]
) -> Iterator[WorkerGroup]:
    proc_env = env.worker_env()
    proc_env.update(API_SETTINGS)
    proc_env.update(settings)
    group = WorkerGroup(f"api-{env.namespace}-{port}", argv, proc_env, log_dir)
    group.start()
    try:
        ok = wait_until(lambda: _healthy(port), 60, 0.1)
        if not ok:
            raise RuntimeError("the API did not start:\n" + group.tail())
        yield group
    finally:
        group.stop(timeout=15)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _token(tenant: object, *scopes: TokenScope) -> str:
    chosen = list(scopes) or [TokenScope.JOBS_READ, TokenScope.JOBS_WRITE]
    return create_token(tenant, name="bench", scopes=chosen).token  # type: ignore[arg-type]


def _load(
    label: str,
    workers: int,
    group: WorkerGroup,
    cpu: ServerCpu,
    port: int,
    token: str,
    requests: list[Request],
    seconds: float,
) -> LoadFigures:
    headers = {"Authorization": f"Bearer {token}"}
    warm = asyncio.run(
        closed_loop(HOST, port, headers, requests, concurrency=CONCURRENCY, seconds=1, warmup=2)
    )
    if warm.errors:
        raise RuntimeError(f"{label}: {warm.statuses}")
    api0, gen0 = group.cpu_seconds(), self_cpu()
    cpu.mark()
    result = asyncio.run(
        closed_loop(
            HOST, port, headers, requests, concurrency=CONCURRENCY, seconds=seconds, warmup=0
        )
    )
    pg_cpu, _ = cpu.since()
    total = max(1, result.requests + result.errors)
    p50, p99 = p50_p99(result.latencies_ms)
    return LoadFigures(
        label=label,
        workers=workers,
        rate=result.rate,
        p50_ms=p50,
        p99_ms=p99,
        errors=result.errors,
        api_cpu_ms=(group.cpu_seconds() - api0) * 1000 / total,
        pg_cpu_ms=pg_cpu * 1000 / total,
        generator_cpu_ms=(self_cpu() - gen0) * 1000 / total,
    )


# --- GET and POST --------------------------------------------------------------------------------


def get_rates(
    srv: Servers, jobs: int, seconds: float, log_dir: Path, progress: Any
) -> list[LoadFigures]:
    """``GET /v1/jobs/{id}`` of random jobs of one tenant of a ``jobs``-job table."""
    out = []
    with scratch(srv) as env:
        progress(f"api: loading {jobs:,} jobs")
        dataset.load(env.database_url, jobs, jobs, 100, progress=lambda _: None)
        with env.pg() as conn:
            tenants = dataset.tenant_ids(conn, 100)
        mine = 7
        rng = random.Random(1)
        ids = [rng.randrange(mine, jobs, 100) or 100 for _ in range(20_000)]
        requests = [Request("GET", f"/v1/jobs/{i}") for i in ids if i % 100 == mine]
        token = _token(tenants[mine], TokenScope.JOBS_READ)
        for workers in (1, 2):
            with api_process(env, log_dir, workers) as (group, port):
                cpu = ServerCpu(srv.redis_url, env.database_url)
                figures = _load(
                    "GET /v1/jobs/{id}", workers, group, cpu, port, token, requests, seconds
                )
                out.append(figures)
                progress(
                    f"api: GET, {workers} process(es): {figures.rate:,.0f}/s, "
                    f"p99 {figures.p99_ms:.1f} ms"
                )
        with floor_process(env, log_dir) as (group, port):
            cpu = ServerCpu(srv.redis_url, env.database_url)
            floors = {
                "floor: uvicorn, fixed JSON": [Request("GET", "/static")],
                "floor: uvicorn + one SELECT": [
                    Request("GET", f"/row/{tenants[mine]}/{r.path.rsplit('/', 1)[1]}")
                    for r in requests
                ],
            }
            for label, floor_requests in floors.items():
                figures = _load(label, 1, group, cpu, port, token, floor_requests, seconds)
                out.append(figures)
                progress(f"api: {label}: {figures.rate:,.0f}/s, p99 {figures.p99_ms:.1f} ms")
    return out


def post_rates(
    srv: Servers, seconds: float, log_dir: Path, progress: Any
) -> tuple[list[LoadFigures], LoadFigures]:
    """``POST /v1/jobs`` from 64 connections (one and two API processes), and
    ``pgjobs.enqueue`` from 64 threads, no workers running."""
    posts = []
    with scratch(srv) as env:
        tenant = ours._tenant()
        body = json.dumps({"type": noop.name, "payload": {"n": 1}}).encode()
        requests = [Request("POST", "/v1/jobs", body)]
        token = _token(tenant)
        for workers in (1, 2):
            with api_process(env, log_dir, workers) as (group, port):
                cpu = ServerCpu(srv.redis_url, env.database_url)
                figures = _load(
                    "POST /v1/jobs", workers, group, cpu, port, token, requests, seconds
                )
                posts.append(figures)
                progress(f"api: POST, {workers} process(es): {figures.rate:,.0f}/s")
        threaded = _enqueue_threads(env, tenant, seconds)
        progress(f"api: enqueue from {CONCURRENCY} threads: {threaded.rate:,.0f}/s")
    return posts, threaded


def _enqueue_threads(env: Env, tenant: uuid.UUID, seconds: float) -> LoadFigures:
    latencies: list[float] = []
    lock = threading.Lock()
    warm_until = time.perf_counter() + 2
    stop = warm_until + seconds

    def run() -> None:
        mine = []
        while (now := time.perf_counter()) < stop:
            enqueue(noop, {"n": 1}, tenant_id=tenant)
            if now >= warm_until:
                mine.append((time.perf_counter() - now) * 1000)
        with lock:
            latencies.extend(mine)

    cpu = ServerCpu(env.servers.redis_url, env.database_url)
    threads = [threading.Thread(target=run) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    cpu.mark()
    own = self_cpu()
    for thread in threads:
        thread.join()
    flush()
    pg_cpu, _ = cpu.since()
    n = max(1, len(latencies))
    p50, p99 = p50_p99(latencies)
    producer_ms = (self_cpu() - own) * 1000 / n
    return LoadFigures(
        f"enqueue() from {CONCURRENCY} threads",
        0,
        len(latencies) / seconds,
        p50,
        p99,
        0,
        producer_ms,
        pg_cpu * 1000 / n,
        0.0,
    )


# --- event streams ----------------------------------------------------------------------------


class Streams:
    """``count`` SSE streams followed from an asyncio loop in a thread of this process."""

    def __init__(self, port: int, token: str, job_ids: list[int]) -> None:
        self.port, self.token, self.job_ids = port, token, job_ids
        self.stats = StreamStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._all_open = threading.Event()
        self._done = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._follow_all())
        self._done.set()

    async def _follow_all(self) -> None:
        opened = asyncio.Event()
        headers = {"Authorization": f"Bearer {self.token}"}

        def one_open() -> None:
            if self.stats.opened + self.stats.failures >= len(self.job_ids):
                opened.set()
                self._all_open.set()

        tasks = []
        for job_id in self.job_ids:
            path = f"/v1/jobs/{job_id}/stream"
            tasks.append(
                asyncio.create_task(
                    follow(HOST, self.port, headers, path, self.stats, opened, on_open=one_open)
                )
            )
            await asyncio.sleep(0)  # do not open a thousand connections in one burst
        await asyncio.gather(*tasks)

    def open(self, timeout: float = 120) -> None:
        self._thread.start()
        if not self._all_open.wait(timeout):
            raise RuntimeError(f"only {self.stats.opened} of {len(self.job_ids)} streams opened")

    def wait_ended(self, timeout: float) -> bool:
        return self._done.wait(timeout)


def stream_latency(
    srv: Servers, shape: WorkerShape, rate: float, seconds: float, log_dir: Path
) -> StreamFigures:
    """1,000 streams open on jobs due over the next ``seconds``, while an open-loop producer
    enqueues at ``rate``: delivery delay of every event created while the streams were open."""
    with scratch(srv) as env, env.pg() as conn:
        tenant = ours._tenant()
        workers = ours._workers(env, shape, log_dir)
        workers.start()
        try:
            ours.fill(tenant, 20)
            done = "SELECT count(*) FROM content_jobs WHERE status = 'succeeded'"
            if not wait_until(lambda: conn.execute(done).fetchone() == (20,), 60):
                raise RuntimeError("workers did not start:\n" + workers.tail())
            with api_process(env, log_dir) as (_, port):
                lead = 10.0 + STREAMS / 200
                start = datetime.now(UTC) + timedelta(seconds=lead)
                watched = enqueue_many(
                    [
                        JobRequest(
                            noop,
                            {"n": i},
                            tenant,
                            run_at=start + timedelta(seconds=seconds * i / STREAMS),
                        )
                        for i in range(STREAMS)
                    ]
                )
                streams = Streams(port, _token(tenant), [j.id for j in watched])
                streams.open()
                pause = (start - datetime.now(UTC)).total_seconds()
                time.sleep(max(0.0, pause))

                def send(i: int) -> None:
                    enqueue(noop, {"n": i}, tenant_id=tenant)

                loop = open_loop(send, rate, seconds)
                streams.wait_ended(60)
        finally:
            workers.stop()
    stats = streams.stats
    p50, p99 = p50_p99(stats.delays_ms)
    from pgjobs.settings import get_settings

    return StreamFigures(
        streams=STREAMS,
        opened=stats.opened,
        ended=stats.ended,
        failures=stats.failures,
        offered_rate=rate,
        achieved_rate=loop.achieved_rate,
        events=len(stats.delays_ms),
        p50_ms=p50,
        p99_ms=p99,
        max_ms=max(stats.delays_ms, default=float("nan")),
        poll_ms=get_settings().api_event_poll_ms,
    )


@contextmanager
def streams_open(env: Env, tenant: uuid.UUID, log_dir: Path) -> Iterator[None]:
    """An API process and 1,000 streams on jobs spread over the queued backlog (each ends
    after its job's completion), for the length of a drain."""
    with api_process(env, log_dir) as (_, port), env.pg() as conn:
        rows = conn.execute("SELECT id FROM content_jobs ORDER BY id").fetchall()
        step = max(1, len(rows) // STREAMS)
        picked = [int(r[0]) for r in rows[step - 1 :: step][:STREAMS]]  # type: ignore[call-overload]
        streams = Streams(port, _token(tenant, TokenScope.JOBS_READ), picked)
        streams.open()
        yield
        streams.wait_ended(30)


@contextmanager
def notify_on_events(env: Env, tenant: uuid.UUID) -> Iterator[None]:
    """The NOTIFY trigger on job_events, and a listener draining its notifications."""
    with env.pg() as conn:
        conn.execute(NOTIFY_SQL)  # type: ignore[arg-type]
    stop = threading.Event()
    received = [0]

    def listen() -> None:
        with psycopg.connect(env.database_url, autocommit=True) as listener:
            listener.execute("LISTEN pgjobs_events")
            while not stop.is_set():
                for _ in listener.notifies(timeout=0.2):
                    received[0] += 1

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        if received[0] == 0:
            raise RuntimeError("the NOTIFY listener received nothing")


def drains(
    srv: Servers, shape: WorkerShape, jobs: int, runs: int, log_dir: Path, progress: Any
) -> dict[str, list[DrainResult]]:
    """Drains of ``jobs`` jobs: as shipped, with 1,000 streams open, with NOTIFY on every
    transition; interleaved, ``runs`` each."""
    variants: dict[str, Any] = {
        "as shipped": None,
        f"{STREAMS:,} streams open": lambda env, tenant: streams_open(env, tenant, log_dir),
        "NOTIFY per statement": notify_on_events,
    }
    out: dict[str, list[DrainResult]] = {name: [] for name in variants}
    for run in range(runs):
        order = list(variants.items())
        for name, around in order if run % 2 == 0 else reversed(order):
            result = ours.drain(srv, shape, jobs, log_dir, around=around)
            out[name].append(result)
            progress(f"api: drain run {run + 1}, {name}: {result.steady_rate:,.0f} jobs/s")
    return out


def half_rate(results: dict[str, list[DrainResult]]) -> float:
    return median([r.steady_rate for r in results["as shipped"]]) / 2


def summary(suite: ApiSuite) -> list[tuple[str, str, str, bool | None]]:
    """(measure, figure, goal, met) rows of the goals."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for g in suite.gets:
        if g.label.startswith("floor"):
            continue
        rows.append(
            (
                f"GET /v1/jobs/{{id}}, 64 connections, {g.workers} API process(es)",
                f"{g.rate:,.0f} req/s, p99 {g.p99_ms:.1f} ms",
                "≥ 3,000 req/s and p99 ≤ 20 ms",
                g.rate >= 3000 and g.p99_ms <= 20,
            )
        )
    if suite.enqueues:
        base = suite.enqueues[0].rate
        for p in suite.posts:
            ratio = p.rate / base if base else float("nan")
            rows.append(
                (
                    f"POST /v1/jobs, 64 connections, {p.workers} API process(es), vs "
                    f"enqueue() from 64 threads ({base:,.0f}/s)",
                    f"{p.rate:,.0f}/s = {ratio:.2f}x",
                    "≥ 0.6x",
                    ratio >= 0.6,
                )
            )
    for s in suite.streams:
        rows.append(
            (
                f"{s.opened:,} streams on one API process, drain at "
                f"{s.achieved_rate:,.0f} jobs/s (half of max)",
                f"delivery p99 {s.p99_ms:.0f} ms (p50 {s.p50_ms:.0f}, {s.events:,} events)",
                "p99 ≤ 100 ms",
                s.p99_ms <= 100 and s.opened >= STREAMS,
            )
        )
    shipped = median([r.steady_rate for r in suite.drains.get("as shipped", [])])
    for name, results in suite.drains.items():
        if name == "as shipped":
            continue
        rate = median([r.steady_rate for r in results])
        goal = "≥ 0.9x" if "streams" in name else "(decides NOTIFY)"
        rows.append(
            (
                f"drain with {name} vs as shipped ({shipped:,.0f} jobs/s)",
                f"{rate:,.0f} jobs/s = {rate / shipped:.2f}x",
                goal,
                rate / shipped >= 0.9 if "streams" in name else None,
            )
        )
    return rows


def render(suite: ApiSuite) -> str:
    """The API section of docs/benchmarks.md."""
    lines = [
        "## HTTP API",
        "",
        f"Generated by `{suite.meta.get('command', 'python -m bench --only api')}` — "
        f"{suite.meta.get('date', '')}. Load average at start {suite.meta.get('load', '?')}, "
        f"at end {suite.meta.get('load_end', '?')}.",
        "",
        "The API process(es), PostgreSQL, Redis, the workers and the load generator (an asyncio "
        "HTTP/1.1 client in `bench/http_load.py`, in the bench's own process) share this "
        "machine's cores; the generator's CPU per request is shown, since it is taken from the "
        "server it measures.",
        "",
    ]
    lines += [
        "| measure | figure | goal | met? |",
        "|---|---|---|---|",
    ]
    for measure, figure, goal, met in summary(suite):
        shown = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {measure} | {figure} | {goal} | {shown} |")
    lines += [
        "",
        "### Requests",
        "",
        "| requests | API processes | rate | p50 | p99 | errors | API CPU / req | "
        "PostgreSQL CPU / req | generator CPU / req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in [*suite.gets, *suite.posts, *suite.enqueues]:
        lines.append(
            f"| {f.label} | {f.workers or '-'} | {f.rate:,.0f}/s | {f.p50_ms:.1f} ms | "
            f"{f.p99_ms:.1f} ms | {f.errors} | {f.api_cpu_ms:.2f} ms | {f.pg_cpu_ms:.2f} ms | "
            f"{f.generator_cpu_ms:.2f} ms |"
        )
    lines += [
        "",
        "For `enqueue()` the API CPU column is the producer process's own CPU. The floor rows "
        "are bench/api_floor_app.py, served by the same uvicorn with the same options and "
        "loaded by the same generator: no framework, no token, no model; first a fixed body, "
        "then one SELECT of the job's columns by primary key on an async psycopg pool. What "
        "`GET /v1/jobs/{id}` costs above the second is the token check, the rate limit and the "
        "response model.",
        "",
        "### Event streams",
        "",
        "| streams opened / ended / failed | offered / achieved rate | events measured | "
        "p50 | p99 | max | feed poll |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in suite.streams:
        lines.append(
            f"| {s.opened:,} / {s.ended:,} / {s.failures} | {s.offered_rate:,.0f} / "
            f"{s.achieved_rate:,.0f} jobs/s | {s.events:,} | {s.p50_ms:.1f} ms | "
            f"{s.p99_ms:.1f} ms | {s.max_ms:.1f} ms | {s.poll_ms} ms |"
        )
    lines += [
        "",
        "Delay: arrival on the stream minus the event's `created_at`, which is its "
        "transaction's start, so the figure includes the commit itself.",
        "",
        "### Drains beside the API",
        "",
        "| drain | runs (steady jobs/s) | median | worker CPU / job | PostgreSQL CPU / job |",
        "|---|---|---|---|---|",
    ]
    for name, results in suite.drains.items():
        runs = ", ".join(f"{r.steady_rate:,.0f}" for r in results)
        lines.append(
            f"| {name} | {runs} | {median([r.steady_rate for r in results]):,.0f} | "
            f"{median([r.worker_cpu_ms_per_job for r in results]):.2f} ms | "
            f"{median([r.pg_cpu_ms_per_job for r in results]):.2f} ms |"
        )
    lines += [""] + [f"- {note}" for note in suite.notes]
    return "\n".join(lines).rstrip() + "\n"


def splice(page: str, section: str) -> str:
    """``page`` with its API section replaced (or added at the end)."""
    return sections.splice(page, section, "api")


def existing_section(page: str) -> str | None:
    return sections.existing(page, "api")


def run_all(srv: Servers, shape: WorkerShape, args: Any, log_dir: Path, progress: Any) -> ApiSuite:
    """Every API measure, in the order that lets each use the last's figures."""
    import os

    use_uvloop()
    suite = ApiSuite()
    suite.meta["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    suite.drains = drains(srv, shape, args.jobs, args.runs, log_dir, progress)
    rate = half_rate(suite.drains)
    for _ in range(max(1, args.runs // 2)):
        figures = stream_latency(srv, shape, rate, args.api_stream_seconds, log_dir)
        suite.streams.append(figures)
        progress(f"api: streams, p99 {figures.p99_ms:.1f} ms over {figures.events:,} events")
    suite.posts, threaded = post_rates(srv, args.api_seconds, log_dir, progress)
    suite.enqueues.append(threaded)
    suite.gets = get_rates(srv, args.api_dataset_jobs, args.api_seconds, log_dir, progress)
    suite.meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return suite


__all__ = ["ApiSuite", "existing_section", "percentile", "render", "run_all", "splice"]
