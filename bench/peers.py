"""pgqueuer and Procrastinate beside this system and raw Dramatiq, in one run (issue 18).

Each peer runs in a database of its own, its schema installed by its own CLI, its workers
started the way its docs start them (``pgq run bench.peer_pgq_app:main``; ``procrastinate
--app=bench.peer_procrastinate_app.app worker``), ``P`` processes of each, the same noop job.
Per system and run:

* drain: ``jobs`` queued, then the workers launched; the clock runs from the launch until the
  system's own table holds no unfinished job, counted every 100 ms (start-up included);
* launch to first job, start-up CPU per process, idle CPU per worker process: as
  bench/idle.py measures them (one job queued before the launch, then a quiet spell);
* single enqueue/s from one thread (its documented call: ``await queries.enqueue``, ``await
  task.defer_async()``) and batches of ``batch`` (``enqueue`` of lists, ``batch_defer_async``),
  with the producer's CPU per call or job.

This system and raw Dramatiq are measured in the same run by the existing measures
(bench/ours.py, bench/raw.py, bench/idle.py).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import idle, ours, raw, threaded_enqueue
from bench.procs import REPO, WorkerGroup, WorkerShape, self_cpu
from bench.services import Servers, wait_until
from bench.stats import median
from pgjobs.db.scratch import scratch_database

COUNT_EVERY_S = 0.1
BIN = Path(sys.executable).parent


@dataclass
class PeerResult:
    system: str
    drain_jobs: int = 0
    drain_s: float = float("nan")
    drain_worker_cpu_ms_per_job: float = float("nan")
    launch_to_first_s: float = float("nan")
    startup_cpu_s_per_process: float = float("nan")
    idle_cpu_pct_per_worker: float = float("nan")
    single_per_s: float = float("nan")
    single_cpu_us_per_call: float = float("nan")
    batch_jobs_per_s: float = float("nan")
    batch_cpu_us_per_job: float = float("nan")
    threaded_per_s: float = float("nan")
    threaded_cpu_us_per_call: float = float("nan")
    single_busy_pct: float = float("nan")
    insert_alone_per_s: float = float("nan")
    """This system's outbox INSERT alone, one job a call (no validation, message or mark)."""
    insert_alone_batch_per_s: float = float("nan")
    drain_pg_cpu_ms_per_job: float = float("nan")
    """Ours only: the PostgreSQL backends' CPU per job of the drain (claims, completions)."""
    threaded_busy_pct: float = float("nan")

    @property
    def drain_per_s(self) -> float:
        return self.drain_jobs / self.drain_s


class Peer:
    """One peer system: how to install it, start its workers, enqueue and count its jobs."""

    name = ""
    pending_sql = ""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "PG"))}
        pythonpath = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return {**env, "PGQUEUER_DSN": self.dsn, "BENCH_PEER_DSN": self.dsn,
                "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}  # fmt: skip

    def install(self) -> None:
        raise NotImplementedError

    def worker_command(self, threads: int) -> list[str]:
        raise NotImplementedError

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def one(self) -> None:
        raise NotImplementedError

    async def many(self, size: int) -> None:
        raise NotImplementedError

    def workers(self, shape: WorkerShape, log_dir: Path, tag: str) -> WorkerGroup:
        """``P`` worker processes in one process group (a shell that waits for them)."""
        one = shlex.join(self.worker_command(shape.threads))
        script = " & ".join([one] * shape.processes) + " & wait"
        return WorkerGroup(f"{self.name}-{tag}", ["sh", "-c", script], self.env(), log_dir)

    def pending(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(self.pending_sql).fetchone()
        return int(row[0]) if row else 0

    def fill(self, jobs: int, batch: int = 1_000) -> None:
        async def go() -> None:
            await self.open()
            try:
                for offset in range(0, jobs, batch):
                    await self.many(min(batch, jobs - offset))
            finally:
                await self.close()

        asyncio.run(go())


class Pgqueuer(Peer):
    name = "pgqueuer"
    pending_sql = "SELECT count(*) FROM pgqueuer"  # finished jobs move to pgqueuer_log

    def install(self) -> None:
        _run([str(BIN / "pgq"), "install"], self.env())

    def worker_command(self, threads: int) -> list[str]:
        return [str(BIN / "pgq"), "run", "bench.peer_pgq_app:main"]

    async def open(self) -> None:
        import asyncpg
        from pgqueuer import Queries
        from pgqueuer.db import AsyncpgDriver

        self.conn = await asyncpg.connect(self.dsn)
        self.queries = Queries(AsyncpgDriver(self.conn))

    async def close(self) -> None:
        await self.conn.close()

    async def one(self) -> None:
        await self.queries.enqueue("noop", None)

    async def many(self, size: int) -> None:
        await self.queries.enqueue(["noop"] * size, [None] * size, [0] * size)


class Procrastinate(Peer):
    name = "Procrastinate"
    pending_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    app = "bench.peer_procrastinate_app.app"

    def install(self) -> None:
        _run([str(BIN / "procrastinate"), f"--app={self.app}", "schema", "--apply"], self.env())

    def worker_command(self, threads: int) -> list[str]:
        return [str(BIN / "procrastinate"), f"--app={self.app}", "worker",
                f"--concurrency={threads}"]  # fmt: skip

    async def open(self) -> None:
        """The producer's own App on the same database, with the task declared as the
        worker's module declares it (what a separate producer process does)."""
        import procrastinate

        self.app_ = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=self.dsn))

        @self.app_.task(name="noop")
        async def noop() -> None:
            """Does nothing."""

        self.task = noop
        await self.app_.open_async()

    async def close(self) -> None:
        await self.app_.close_async()

    async def one(self) -> None:
        await self.task.defer_async()

    async def many(self, size: int) -> None:
        await self.task.batch_defer_async(*([{}] * size))


PEERS: tuple[type[Peer], ...] = (Pgqueuer, Procrastinate)


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}")


def _installed(srv: Servers, kind: type[Peer]) -> Any:
    """A scratch database with the peer's schema (context manager yielding the peer)."""
    from contextlib import contextmanager

    @contextmanager
    def block() -> Any:
        with scratch_database(srv.database_url, prefix="pgjobs_bench_peer") as url:
            peer = kind(url)
            peer.install()
            yield peer

    return block()


def _rates(peer: Peer, calls: int, batch_jobs: int, batch: int) -> tuple[float, ...]:
    """(calls/s, CPU µs per call, jobs/s in batches, CPU µs per job), from one thread."""

    async def timed(
        count: int, step: int, call: Callable[[int], Awaitable[None]]
    ) -> tuple[float, float]:
        for _ in range(min(20, max(1, count // step))):  # warm-up
            await call(step)
        cpu0, started = self_cpu(), time.perf_counter()
        for offset in range(0, count, step):
            await call(min(step, count - offset))
        seconds = time.perf_counter() - started
        return count / seconds, (self_cpu() - cpu0) * 1e6 / count

    async def go() -> tuple[float, ...]:
        await peer.open()
        try:
            single = await timed(calls, 1, lambda _: peer.one())
            many = await timed(batch_jobs, batch, peer.many)
        finally:
            await peer.close()
        return (*single, *many)

    return asyncio.run(go())


def _drained(peer: Peer, group: WorkerGroup) -> Callable[[], bool]:
    """Whether the peer's table holds no unfinished job; raises as soon as its workers died."""

    def check() -> bool:
        if group.popen is not None and group.popen.poll() is not None:
            raise RuntimeError(f"{peer.name} workers exited:\n{group.tail()}")
        return peer.pending() == 0

    return check


def peer_run(
    srv: Servers, kind: type[Peer], shape: WorkerShape, args: Any, log_dir: Path
) -> PeerResult:
    """Every measure of one peer, each in a fresh database."""
    result = PeerResult(kind.name)
    with _installed(srv, kind) as peer:
        rates = _rates(peer, args.enqueue_calls, args.many_jobs, args.batch)
        result.single_per_s, result.single_cpu_us_per_call = rates[0], rates[1]
        result.batch_jobs_per_s, result.batch_cpu_us_per_job = rates[2], rates[3]
    with _installed(srv, kind) as peer:
        peer.fill(args.jobs)
        group = peer.workers(shape, log_dir, "drain")
        started = time.perf_counter()
        group.start()
        try:
            if not wait_until(_drained(peer, group), 900, COUNT_EVERY_S):
                raise RuntimeError(f"{kind.name} drain did not finish:\n{group.tail()}")
            result.drain_s = time.perf_counter() - started
            result.drain_worker_cpu_ms_per_job = group.cpu_seconds() * 1000 / args.jobs
        finally:
            group.stop()
        result.drain_jobs = args.jobs
    with _installed(srv, kind) as peer:
        peer.fill(1)
        group = peer.workers(shape, log_dir, "idle")
        # the shell that waits for the workers is not a worker process
        idled = idle.measure(
            kind.name,
            group,
            _drained(peer, group),
            shape.processes,
            args.idle_seconds,
            processes=shape.processes,
        )
        result.launch_to_first_s = idled.launch_to_first_s
        result.startup_cpu_s_per_process = idled.startup_cpu_s_per_process
        result.idle_cpu_pct_per_worker = idled.idle_cpu_pct_per_worker
    return result


def ours_or_raw_run(
    srv: Servers, side: str, shape: WorkerShape, args: Any, log_dir: Path
) -> PeerResult:
    """This system or raw Dramatiq, through the bench's own measures, in the same run."""
    if side == "ours":
        result = PeerResult("this system")
        drained = ours.drain(srv, shape, args.jobs, log_dir, every_queue=True)
        single = ours.enqueue_rate(srv, args.enqueue_calls)
        many = ours.enqueue_many_rate(srv, args.many_jobs, args.batch)
        result.batch_jobs_per_s, result.batch_cpu_us_per_job = (
            many.rate,
            many.producer_cpu_us_per_job,
        )
        threaded = threaded_enqueue.threaded_rate(srv, 2, 8, args.enqueue_calls * 2)
        result.threaded_per_s = threaded.rate
        result.threaded_cpu_us_per_call = threaded.producer_cpu_us_per_call
        result.insert_alone_per_s = ours.insert_alone_rate(srv, args.enqueue_calls, 1).rate
        result.insert_alone_batch_per_s = ours.insert_alone_rate(
            srv, args.many_jobs, args.batch
        ).rate
        result.single_busy_pct, result.threaded_busy_pct = (
            single.machine_busy_pct,
            threaded.machine_busy_pct,
        )
        idled = idle.ours_idle(srv, shape.processes, shape.threads, args.idle_seconds, log_dir)
    else:
        result = PeerResult("raw Dramatiq")
        drained = raw.drain(srv, shape, args.jobs, log_dir)
        single = raw.send_rate(srv, args.enqueue_calls)
        idled = idle.raw_idle(srv, shape.processes, shape.threads, args.idle_seconds, log_dir)
    result.drain_jobs, result.drain_s = drained.jobs, drained.seconds
    result.drain_worker_cpu_ms_per_job = drained.worker_cpu_ms_per_job
    if side == "ours":
        result.drain_pg_cpu_ms_per_job = drained.pg_cpu_ms_per_job
    result.single_per_s, result.single_cpu_us_per_call = single.rate, single.producer_cpu_us_per_job
    result.launch_to_first_s = idled.launch_to_first_s
    result.startup_cpu_s_per_process = idled.startup_cpu_s_per_process
    result.idle_cpu_pct_per_worker = idled.idle_cpu_pct_per_worker
    return result


@dataclass
class PeersSuite:
    meta: dict[str, Any]
    results: list[PeerResult]


def run_all(
    srv: Servers, shape: WorkerShape, args: Any, log_dir: Path, progress: Any
) -> PeersSuite:
    """Every system ``args.runs`` times, the order rotated each run."""
    suite = PeersSuite({"load": " ".join(f"{x:.2f}" for x in os.getloadavg())}, [])
    systems: list[Callable[[], PeerResult]] = [
        lambda: ours_or_raw_run(srv, "ours", shape, args, log_dir),
        lambda: ours_or_raw_run(srv, "raw", shape, args, log_dir),
        *[lambda kind=kind: peer_run(srv, kind, shape, args, log_dir) for kind in PEERS],
    ]
    for run in range(args.runs):
        turn = run % len(systems)
        for measure in systems[turn:] + systems[:turn]:
            result = measure()
            suite.results.append(result)
            progress(
                f"peers: run {run + 1} {result.system}: drain {result.drain_per_s:,.0f} jobs/s, "
                f"single {result.single_per_s:,.0f}/s, batch {result.batch_jobs_per_s:,.0f} "
                f"jobs/s, first job {result.launch_to_first_s:.2f} s, idle "
                f"{result.idle_cpu_pct_per_worker:.2f}%"
            )
    suite.meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    suite.meta["shape"] = f"{shape.processes} processes x {shape.threads} threads"
    suite.meta["cores"] = os.cpu_count() or 1
    suite.meta["sizes"] = (
        f"drain {args.jobs:,} jobs; single enqueue {args.enqueue_calls:,} calls; batches "
        f"{args.many_jobs:,} jobs in calls of {args.batch:,}; idle over {args.idle_seconds:g} s"
    )
    return suite


COLUMNS = (
    ("drain jobs/s", "drain_per_s", "{:,.0f}", True),
    ("worker CPU ms/job", "drain_worker_cpu_ms_per_job", "{:.2f}", False),
    ("launch to first job", "launch_to_first_s", "{:.2f} s", False),
    ("start-up CPU / process", "startup_cpu_s_per_process", "{:.2f} s", False),
    ("idle CPU / worker process", "idle_cpu_pct_per_worker", "{:.2f}%", False),
    ("single enqueue/s", "single_per_s", "{:,.0f}", True),
    ("producer CPU µs/call", "single_cpu_us_per_call", "{:.0f}", False),
    ("batch jobs/s", "batch_jobs_per_s", "{:,.0f}", True),
    ("producer CPU µs/job (batch)", "batch_cpu_us_per_job", "{:.1f}", False),
    ("enqueue/s, 2 processes x 8 threads", "threaded_per_s", "{:,.0f}", True),
    ("producer CPU µs/call (2 x 8)", "threaded_cpu_us_per_call", "{:.0f}", False),
    ("cores busy, single enqueue", "single_busy_pct", "{:.0f}%", False),
    ("cores busy, 2 x 8", "threaded_busy_pct", "{:.0f}%", False),
    ("the INSERT alone/s", "insert_alone_per_s", "{:,.0f}", True),
    ("the INSERT alone, batch jobs/s", "insert_alone_batch_per_s", "{:,.0f}", True),
)


def _median(results: list[PeerResult], system: str, name: str) -> float:
    return median([getattr(r, name) for r in results if r.system == system])


def _cell(shape: str, value: float) -> str:
    return "-" if value != value else shape.format(value)  # NaN: not measured


def _machine_us(busy_pct: float, per_s: float) -> float:
    """The machine's CPU per call (µs, every core) from its busy share at a rate."""
    return busy_pct / 100 * (os.cpu_count() or 1) * 1e6 / per_s


def _floor(suite: PeersSuite) -> list[str]:
    """The floors under the goals against pgqueuer, measured in the same run: a Dramatiq
    worker's own CPU per job under the drain, this system's INSERT alone under the
    enqueues."""
    lines = []
    per_job = _median(suite.results, "raw Dramatiq", "drain_worker_cpu_ms_per_job")
    drained = _median(suite.results, "pgqueuer", "drain_per_s")
    cores = suite.meta.get("cores")
    if per_job == per_job and drained == drained and cores:
        lines += [
            "",
            f"Raw Dramatiq's workers spent {per_job:.2f} ms of CPU per job: on {cores} cores no "
            f"Dramatiq worker drains faster than {cores * 1000 / per_job:,.0f} jobs/s, even if "
            f"Redis and PostgreSQL cost nothing; pgqueuer drained {drained:,.0f} jobs/s.",
        ]
        pg = _median(suite.results, "this system", "drain_pg_cpu_ms_per_job")
        if pg == pg:
            most = cores * 1000 / (per_job + pg)
            lines[-1] += (
                f" This system's drain also cost PostgreSQL {pg:.2f} ms of CPU per job (each "
                "job's claim and completion with their events, the contract's exactly-once "
                f"state changes): with Dramatiq's cost, at most {most:,.0f} jobs/s on these "
                "cores."
            )
    cells = []
    for alone, whole, what in (
        ("insert_alone_per_s", "single_per_s", "one job a call"),
        ("insert_alone_batch_per_s", "batch_jobs_per_s", "in batches"),
    ):
        mine = _median(suite.results, "this system", alone)
        theirs = _median(suite.results, "pgqueuer", whole)
        if mine == mine and theirs == theirs:
            cells.append(f"{what} {mine:,.0f} jobs/s, {mine / theirs:.2f}x pgqueuer's `enqueue`")
    if not cells:
        return lines
    return [
        *lines,
        "",
        "This system's outbox INSERT alone (the row and its event, committed; no validation, "
        "no message, no Redis, no mark), on the connection `enqueue` writes on: "
        + "; ".join(cells)
        + ". No enqueue of this system can be faster than its INSERT.",
    ]


def render(suite: PeersSuite) -> str:
    """The peers section of docs/benchmarks.md: medians, ratios, then every run."""
    systems = list(dict.fromkeys(r.system for r in suite.results))
    lines = [
        "## Beside the Python peers (pgqueuer, Procrastinate)",
        "",
        f"Generated by `{suite.meta.get('command', 'python -m bench --only peers')}` — "
        f"{suite.meta.get('date', '')}. Load average at start {suite.meta.get('load', '?')}, at "
        f"end {suite.meta.get('load_end', '?')}; {suite.meta.get('shape', '')}; "
        f"{suite.meta.get('sizes', '')}. Medians of the runs.",
        "",
        "Every system in a database (or Redis namespace) of its own, its workers started the "
        "way its docs start them: `jobctl worker -p P -t T` (every shipped queue, no "
        "`--queues`); "
        "`dramatiq bench.raw_app`; `pgq run bench.peer_pgq_app:main` (asyncpg, one process "
        "each); `procrastinate --app=bench.peer_procrastinate_app.app worker --concurrency=T`. "
        "Drain: the jobs queued first, the clock from the launch to the system's own table (or "
        "Redis hash) holding none, counted every 100 ms (raw Dramatiq every 10 ms). Single "
        "enqueue: each system's documented call in a loop from one thread (the peers' async "
        "calls awaited one by one); batch: its batch call, 1,000 jobs a call (raw Dramatiq "
        "has none).",
        "",
        "| system | " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for system in systems:
        cells = [_cell(fmt, _median(suite.results, system, name)) for _, name, fmt, _ in COLUMNS]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", "This system's ratio to each (higher is better for this system):", ""]
    lines += ["| beside | drain | single enqueue | batch enqueue |", "|---|---:|---:|---:|"]
    for system in systems:
        if system == "this system":
            continue
        ratios = []
        for name in ("drain_per_s", "single_per_s", "batch_jobs_per_s"):
            theirs = _median(suite.results, system, name)
            mine = _median(suite.results, "this system", name)
            ratios.append("-" if theirs != theirs or mine != mine else f"{mine / theirs:.2f}x")
        lines.append(f"| {system} | " + " | ".join(ratios) + " |")
    single = _median(suite.results, "this system", "single_per_s")
    threaded = _median(suite.results, "this system", "threaded_per_s")
    if single == single and threaded == threaded:
        lines += [
            "",
            f"This system's `enqueue` from 16 threads in 2 processes: {threaded:,.0f} calls/s, "
            f"{threaded / single:.2f}x its single-thread rate (goal: at least 2x).",
        ]
        alone = _median(suite.results, "this system", "single_busy_pct")
        together = _median(suite.results, "this system", "threaded_busy_pct")
        if alone == alone and together == together:
            lines[-1] += (
                f" The machine's cores were {alone:.0f}% busy during the single-thread calls "
                f"and {together:.0f}% during the 16 threads' (every process: producers, "
                f"PostgreSQL, Redis): {_machine_us(alone, single):,.0f} µs of the machine's CPU "
                f"per call from one thread, {_machine_us(together, threaded):,.0f} µs from 16 "
                "(the calls a process makes together share a statement, a commit and a Redis "
                "round trip)."
            )
    lines += _floor(suite)
    lines += ["", "| run | system | " + " | ".join(c[0] for c in COLUMNS) + " |"]
    lines.append("|---|---|" + "---:|" * len(COLUMNS))
    per_run = len(systems)
    for i, r in enumerate(suite.results):
        cells = [_cell(fmt, getattr(r, name)) for _, name, fmt, _ in COLUMNS]
        lines.append(f"| {i // per_run + 1} | {r.system} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
