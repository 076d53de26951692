"""``python -m bench``: raw Dramatiq (and, with ``--only peers``, pgqueuer and Procrastinate)
against this system, one session, one machine.

Writes docs/benchmarks.md (and docs/benchmarks.png); ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import api, churn, dataset, fairness, idle, limits, ours, peers, queries, raw, sections
from bench import schedules as schedule_bench
from bench.procs import WorkerShape
from bench.report import HALF_LOAD, HALF_OF_DRAIN, SAME_RATE_AS_RAW, Suite, write
from bench.report import load as load_suite
from bench.services import Servers, scratch, servers
from bench.stats import median

MEASURES = (
    "drain", "enqueue", "many", "latency", "queries", "churn", "api", "schedules", "idle",
    "peers", "fairness", "limits",
)  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, 1 run (smoke test)")
    p.add_argument("--runs", type=int, default=3, help="runs per measure (median reported)")
    p.add_argument("--only", default=",".join(MEASURES), help="comma-separated measures")
    p.add_argument("--jobs", type=int, default=10_000, help="jobs per drain run")
    p.add_argument("--nap-jobs", type=int, default=5_000, help="jobs per drain run of 5 ms jobs")
    p.add_argument("--enqueue-calls", type=int, default=3_000, help="calls per enqueue run")
    p.add_argument("--many-jobs", type=int, default=50_000, help="jobs per enqueue_many run")
    p.add_argument("--batch", type=int, default=1_000, help="jobs per enqueue_many call")
    p.add_argument("--latency-seconds", type=float, default=30.0, help="per latency run")
    p.add_argument("--dataset-jobs", type=int, default=1_000_000)
    p.add_argument("--dataset-events", type=int, default=10_000_000)
    p.add_argument("--query-calls", type=int, default=2_000)
    p.add_argument("--churn-jobs", type=int, default=1_000_000)
    p.add_argument("--api-seconds", type=float, default=15.0, help="per HTTP load point")
    p.add_argument("--api-stream-seconds", type=float, default=20.0, help="per stream run")
    p.add_argument("--api-dataset-jobs", type=int, default=1_000_000, help="GET's table")
    p.add_argument("--churn-max-minutes", type=float, default=None, help="stop churn early")
    p.add_argument("--autovacuum", choices=("default", "tuned"), default="default")
    p.add_argument("--schedules", type=int, default=10_000, help="schedules firing every minute")
    p.add_argument("--schedule-tenants", type=int, default=100)
    p.add_argument("--schedule-minutes", type=int, default=3, help="whole minutes measured")
    p.add_argument(
        "--schedule-workers", action="store_true", help="run our workers during the schedules"
    )
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU measured over")
    p.add_argument("--fair-jobs", type=int, default=100_000, help="tenant A's burst (fairness)")
    p.add_argument("--fair-b-seconds", type=float, default=30.0, help="tenant B's enqueues")
    p.add_argument("--limit-jobs", type=int, default=2_000, help="jobs per limits drain")
    p.add_argument("--rate-seconds", type=int, default=60, help="backlog of the rate limit run")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--poll-ms", type=int, default=None, help="default: JOBS_WORKER_POLL_MS")
    p.add_argument("--no-diagnostics", action="store_true", help="skip the diagnostic drains")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--json", type=Path, default=None, help="also dump every result as JSON")
    p.add_argument(
        "--from-json", type=Path, default=None, help="re-render a --json dump, measure nothing"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
        args.jobs, args.enqueue_calls, args.many_jobs = 1_000, 300, 5_000
        args.nap_jobs = 1_000
        args.latency_seconds = 3.0
        args.dataset_jobs, args.dataset_events = 100_000, 1_000_000
        args.query_calls, args.churn_jobs = 300, 1_000
        args.api_seconds, args.api_stream_seconds, args.api_dataset_jobs = 3.0, 5.0, 20_000
        args.schedules, args.schedule_tenants, args.schedule_minutes = 1_000, 10, 1
        args.idle_seconds = 3.0
        args.fair_jobs, args.fair_b_seconds = 3_000, 3.0
        args.rate_seconds = 10
        args.no_diagnostics = True
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(args.only) - set(MEASURES)
    if unknown:
        p.error(f"unknown measures: {', '.join(sorted(unknown))}")
    return args


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def environment(srv: Servers, shape: WorkerShape, args: argparse.Namespace) -> dict[str, Any]:
    """Versions, machine and settings, recorded with the figures."""
    import dramatiq
    import psycopg
    import pydantic
    import redis
    import sqlalchemy

    from pgjobs.settings import get_settings

    with psycopg.connect(srv.database_url, autocommit=True) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else "?"

        pg = {
            n: show(n)
            for n in (
                "server_version",
                "autovacuum",
                "shared_buffers",
                "synchronous_commit",
                "fsync",
                "max_wal_size",
                "autovacuum_naptime",
                "autovacuum_vacuum_cost_limit",
                "autovacuum_vacuum_cost_delay",
            )
        }
    client = redis.Redis.from_url(srv.redis_url)
    redis_version = client.info("server")["redis_version"]
    client.close()
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    settings = get_settings()
    local = "set (DATABASE_URL / REDIS_URL)" if os.environ.get("DATABASE_URL") else "embedded"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Python": platform.python_version(),
        "dramatiq / redis-py": f"{dramatiq.__version__} / {redis.__version__}",
        "SQLAlchemy / psycopg / pydantic": (
            f"{sqlalchemy.__version__} / {psycopg.__version__} / {pydantic.__version__}"
        ),
        "PostgreSQL": pg.pop("server_version") + f" ({local})",
        "PostgreSQL settings": ", ".join(f"{k}={v}" for k, v in pg.items()),
        "Redis": redis_version,
        "workers (both sides)": f"{shape.processes} processes x {shape.threads} threads, "
        f"dramatiq_worker_timeout={shape.poll_ms} ms, --queues bench",
        "our settings": f"log level {settings.log_level} (JSON), lease {settings.lease_seconds:g} "
        f"s, heartbeat {settings.heartbeat_seconds:g} s, pool {settings.db_pool_size}"
        f"+{settings.db_max_overflow}, PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}",
        "sizes": f"drain {args.jobs:,} jobs; enqueue {args.enqueue_calls:,} calls; "
        f"enqueue_many {args.many_jobs:,} jobs in batches of {args.batch:,}; latency "
        f"{args.latency_seconds:g} s per point; {args.query_calls:,} calls per query",
    }


def compile_package() -> None:
    """Bytecode for every module of the package, as ``pip install`` writes it for a wheel: an
    editable checkout under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile the package
    from source in every process the bench starts (about 70 ms of each worker's start-up)."""
    import compileall

    import pgjobs

    compileall.compile_dir(Path(pgjobs.__file__).parent, quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.from_json:
        png = write(load_suite(args.from_json), args.out)
        say(f"wrote {args.out} and {png} from {args.from_json}")
        return 0
    started = time.monotonic()
    compile_package()
    srv = servers()
    from pgjobs.settings import get_settings

    poll_ms = args.poll_ms or get_settings().worker_poll_ms
    shape = WorkerShape(args.processes, args.threads, poll_ms)
    log_dir = Path(".dev/bench-logs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    env = environment(srv, shape, args)
    suite = Suite(
        meta={
            "command": command.strip(),
            "date": env["date"],
            "runs": args.runs,
            "batch": args.batch,
            "cores": os.cpu_count() or 2,
            "threads": shape.processes * shape.threads,
            "environment": env,
        }
    )
    say(f"servers: {srv.database_url} {srv.redis_url}; worker logs in {log_dir}")
    for run in range(args.runs):
        if "drain" in args.only:
            sides = [("raw", raw.drain), ("ours", ours.drain)]
            for side, fn in sides if run % 2 == 0 else reversed(sides):
                result = fn(srv, shape, args.jobs, log_dir)
                (suite.drain_raw if side == "raw" else suite.drain_ours).append(result)
                say(f"run {run + 1} drain {side}: {result.rate:,.0f} jobs/s")
            for side, fn in sides if run % 2 == 0 else reversed(sides):
                result = fn(srv, shape, args.nap_jobs, log_dir, napping=True)
                (suite.nap_raw if side == "raw" else suite.nap_ours).append(result)
                say(f"run {run + 1} drain of 5 ms jobs {side}: {result.steady_rate:,.0f} jobs/s")
            if run == 0 and not args.no_diagnostics:
                for label, settings in (
                    ("ours with JOBS_LOG_LEVEL=WARNING", {"log_level": "WARNING"}),
                ):
                    result = ours.drain(srv, shape, args.jobs, log_dir, **settings)
                    suite.drain_diag.append((label, result))
                    say(f"diagnostic drain, {label}: {result.rate:,.0f} jobs/s")
                result = ours.drain(
                    srv, shape, args.jobs, log_dir, db_settings={"synchronous_commit": "off"}
                )
                suite.drain_diag.append(("ours with synchronous_commit=off", result))
                say(f"diagnostic drain, synchronous_commit=off: {result.rate:,.0f} jobs/s")
        if "enqueue" in args.only or "many" in args.only:
            suite.send_raw.append(raw.send_rate(srv, max(args.enqueue_calls, 5_000)))
            say(f"run {run + 1} raw send: {suite.send_raw[-1].rate:,.0f}/s")
        if "enqueue" in args.only:
            suite.enqueue_ours.append(ours.enqueue_rate(srv, args.enqueue_calls))
            say(f"run {run + 1} enqueue: {suite.enqueue_ours[-1].rate:,.0f}/s")
        if "many" in args.only:
            suite.many_ours.append(ours.enqueue_many_rate(srv, args.many_jobs, args.batch))
            say(f"run {run + 1} enqueue_many: {suite.many_ours[-1].rate:,.0f} jobs/s")
        if not args.no_diagnostics:
            for measure, batch, count in (
                ("enqueue", 1, args.enqueue_calls),
                ("many", args.batch, args.many_jobs),
            ):
                if measure in args.only:
                    suite.insert_alone.append(ours.insert_alone_rate(srv, count, batch))
                    say(
                        f"run {run + 1} diagnostic, the INSERT alone ({batch:,} per call): "
                        f"{suite.insert_alone[-1].rate:,.0f} jobs/s"
                    )
    if "latency" in args.only:
        run_latency(suite, srv, shape, args, log_dir)
    if "queries" in args.only:
        run_queries(suite, srv, args)
    if "churn" in args.only:
        say(f"churn: up to {args.churn_jobs:,} jobs, autovacuum {args.autovacuum}")
        suite.churn = churn.run(
            srv,
            shape,
            args.churn_jobs,
            log_dir,
            args.autovacuum,
            max_seconds=args.churn_max_minutes * 60 if args.churn_max_minutes else None,
            settle_seconds=5 if args.quick else 65,
            progress=say,
        )
        if suite.churn.jobs < args.churn_jobs:
            suite.notes.append(
                f"Churn stopped after {args.churn_max_minutes:g} minutes at "
                f"{suite.churn.jobs:,} of the {args.churn_jobs:,} jobs asked for "
                "(`--churn-max-minutes`)."
            )
    if "schedules" in args.only:
        say(f"schedules: {args.schedules:,} across {args.schedule_tenants} tenants, every minute")
        suite.schedules.append(
            schedule_bench.run(
                srv,
                shape,
                log_dir,
                schedule_count=args.schedules,
                tenants=args.schedule_tenants,
                minutes=args.schedule_minutes,
                workers=args.schedule_workers,
                progress=say,
            )
        )
        result = suite.schedules[-1]
        say(
            f"schedules: wall per minute p99 {result.wall_p99_s:.3f} s, firing delay p99 "
            f"{result.delay_p99_s:.3f} s ({result.jobs:,} jobs)"
        )

    def section(name: str, run_all: Any, render: Any, *run_args: Any) -> str | None:
        """A measure with a section of its own: run, keep its JSON dump, render."""
        if name not in args.only:
            return None
        measured = run_all(srv, *run_args, args, log_dir, say)
        measured.meta.update(command=command.strip(), date=env["date"])
        if args.json:
            dump = json.dumps(dataclasses.asdict(measured), indent=1, default=str)
            args.json.with_suffix(f".{name}.json").write_text(dump)
        return str(render(measured))

    api_section = section("api", api.run_all, api.render, shape)
    idle_section = section("idle", idle.run_all, idle.render)
    peers_section = section("peers", peers.run_all, peers.render, shape)
    fairness_section = section("fairness", fairness.run_all, fairness.render, shape)
    limits_section = section("limits", limits.run_all, limits.render, shape)
    spliced = (
        ("api", api_section),
        ("idle", idle_section),
        ("peers", peers_section),
        ("fairness", fairness_section),
        ("limits", limits_section),
        ("ui", None),  # bench/ui.py writes its own section; a full run keeps it
    )
    previous = args.out.read_text() if args.out.exists() else ""
    # a measure with a section of its own: the rest of the page stays as it was
    if set(args.only) <= {"api", "idle", "peers", "fairness", "limits"}:
        page = previous
        for name, section in spliced:
            if section is not None:
                page = sections.splice(page, section, name)
                print(section)
        args.out.write_text(page)
        say(f"wrote the {' and '.join(args.only)} section(s) of {args.out}")
        return 0
    suite.meta["environment"]["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    suite.meta["environment"]["duration"] = f"{(time.monotonic() - started) / 60:.1f} min"
    if args.json:  # first: a failed render must not lose the measurements
        args.json.write_text(json.dumps(dataclasses.asdict(suite), indent=1, default=str))
    png = write(suite, args.out)
    for name, section in spliced:
        kept = section or sections.existing(previous, name)
        if kept is not None:
            args.out.write_text(sections.splice(args.out.read_text(), kept, name))
    say(f"wrote {args.out} and {png}")
    print(args.out.read_text().split("## Machine")[0])
    return 0


def run_latency(
    suite: Suite, srv: Servers, shape: WorkerShape, args: argparse.Namespace, log_dir: Path
) -> None:
    """Half of each side's own maximum rate, and 5/s; measures what it needs if not yet done.

    A side's maximum rate is the lower of its median steady drain rate and its median
    single-producer rate (raw ``send``, or one ``enqueue`` per job): jobs can neither start
    faster than the workers take them nor faster than the producer makes them.
    """
    if not suite.drain_ours:
        suite.drain_raw.append(raw.drain(srv, shape, args.jobs, log_dir))
        suite.drain_ours.append(ours.drain(srv, shape, args.jobs, log_dir))
    if not suite.send_raw:
        suite.send_raw.append(raw.send_rate(srv, max(args.enqueue_calls, 5_000)))
    if not suite.enqueue_ours:
        suite.enqueue_ours.append(ours.enqueue_rate(srv, args.enqueue_calls))
    drain = {
        "raw": median([r.steady_rate for r in suite.drain_raw]),
        "ours": median([r.steady_rate for r in suite.drain_ours]),
    }
    produce = {
        "raw": median([r.rate for r in suite.send_raw]),
        "ours": median([r.rate for r in suite.enqueue_ours]),
    }
    half = {side: min(drain[side], produce[side]) / 2 for side in drain}
    sides = (("raw", raw), ("ours", ours))
    for run in range(args.runs):
        for load in (HALF_LOAD, "5 jobs/s"):
            for side, module in sides:
                rate = half[side] if load == HALF_LOAD else 5.0
                seconds = (
                    args.latency_seconds
                    if load == HALF_LOAD
                    else max(args.latency_seconds, 40.0 if not args.quick else 4.0)
                )
                result = module.latency(srv, shape, rate, seconds, log_dir)
                suite.latency.append((load, result))
                say(
                    f"run {run + 1} latency {side} {load} ({rate:,.1f}/s): p50 "
                    f"{result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
                )
    if args.no_diagnostics:
        return
    for label, rate in (
        (SAME_RATE_AS_RAW, half["raw"]),
        (HALF_OF_DRAIN, drain["ours"] / 2),
    ):
        result = ours.latency(srv, shape, rate, args.latency_seconds, log_dir)
        suite.latency.append((label, result))
        say(
            f"diagnostic latency ours, {label} ({rate:,.1f}/s): p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, achieved {result.achieved_rate:,.0f}/s"
        )


def run_queries(suite: Suite, srv: Servers, args: argparse.Namespace) -> None:
    say(f"dataset: {args.dataset_jobs:,} jobs, {args.dataset_events:,} events, 100 tenants")
    with scratch(srv) as env:
        loaded = time.monotonic()
        phases = dataset.load(
            env.database_url, args.dataset_jobs, args.dataset_events, 100, progress=say
        )
        seconds = time.monotonic() - loaded
        with env.pg() as conn:
            tenants = dataset.tenant_ids(conn, 100)
            row = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('content_jobs')), "
                "pg_size_pretty(pg_total_relation_size('job_events')), "
                "(SELECT count(*) FROM job_events)"
            ).fetchone()
        assert row is not None
        suite.dataset = {
            "jobs": args.dataset_jobs,
            "events": int(row[2]),  # type: ignore[call-overload]
            "tenants": 100,
            "load_seconds": seconds,
            "phases": ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()),
            "sizes": f"content_jobs {row[0]}, job_events {row[1]} (with indexes)",
        }
        say(f"dataset loaded in {seconds:.0f} s")
        for run in range(args.runs):
            results = queries.run(tenants, args.dataset_jobs, args.query_calls, seed=run)  # type: ignore[arg-type]
            suite.queries.append(results)
            say(
                f"run {run + 1} queries: "
                + ", ".join(f"{q.name} p99 {q.p99_ms:.2f} ms" for q in results)
            )


if __name__ == "__main__":
    raise SystemExit(main())
