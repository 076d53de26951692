"""``docs/benchmarks.md`` and its plot, written from one session's results.

Every figure is the median of the runs (ratios are ratios of medians); each table says the
goal and whether it was met, and by how much it was missed. Evidence for a gap (CPU per job
in each process, commits and Redis commands per job) sits beside the throughput it explains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cli_startup
from bench.results import (
    ChurnResult,
    ChurnSample,
    DrainResult,
    LatencyResult,
    QueryResult,
    RateResult,
    ScheduleResult,
    insert_alone_side,
)
from bench.stats import median

HALF_LOAD = "half load"
"""Half of a side's own maximum rate: the lower of its drain rate and its producer's rate."""
SAME_RATE_AS_RAW = "raw's half-load rate"
"""Diagnostic: this system offered the rate of raw Dramatiq's half load."""
HALF_OF_DRAIN = "half of its drain rate"
"""Diagnostic: this system offered half its drain rate, whatever its producer can offer."""


@dataclass
class Suite:
    """Everything one ``python -m bench`` session measured."""

    meta: dict[str, Any]
    drain_raw: list[DrainResult] = field(default_factory=list)
    drain_ours: list[DrainResult] = field(default_factory=list)
    drain_diag: list[tuple[str, DrainResult]] = field(default_factory=list)
    nap_raw: list[DrainResult] = field(default_factory=list)
    """Drains of jobs whose handler sleeps 5 ms (the threads' ideal: threads / 5 ms)."""
    nap_ours: list[DrainResult] = field(default_factory=list)
    send_raw: list[RateResult] = field(default_factory=list)
    enqueue_ours: list[RateResult] = field(default_factory=list)
    many_ours: list[RateResult] = field(default_factory=list)
    insert_alone: list[RateResult] = field(default_factory=list)
    """Diagnostic: the outbox INSERT alone, one job per call and in batches (the floor)."""
    latency: list[tuple[str, LatencyResult]] = field(default_factory=list)
    """(load label, result): HALF_LOAD, "5 jobs/s", or a diagnostic label."""
    queries: list[list[QueryResult]] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)
    churn: ChurnResult | None = None
    churn_more: list[ChurnResult] = field(default_factory=list)
    """Further churn runs (other servers or autovacuum settings), reported the same way."""
    schedules: list[ScheduleResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _m(values: Sequence[Any], attr: str | Callable[[Any], float]) -> float:
    get = attr if callable(attr) else (lambda r: getattr(r, attr))
    return median([float(get(v)) for v in values]) if values else math.nan


def _f(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(ours: float, raw: float) -> float:
    return ours / raw if raw and not math.isnan(raw) else math.nan


@dataclass
class Row:
    measure: str
    raw: str
    ours: str
    ratio: str
    goal: str
    met: bool | None
    by: str = ""


def _min_ratio_row(name: str, raw: float, ours: float, goal: float, unit: str) -> Row:
    ratio = _ratio(ours, raw)
    met = None if math.isnan(ratio) else ratio >= goal
    by = "" if met or met is None else f"missed: at {ratio / goal:.0%} of the goal"
    return Row(
        name, f"{_f(raw)} {unit}", f"{_f(ours)} {unit}", f"{ratio:.2f}x", f"≥ {goal:g}x", met, by
    )


def _max_row(name: str, raw: float, ours: float, limit: float, unit: str) -> Row:
    met = None if math.isnan(ours) else ours <= limit
    by = "" if met or met is None else f"missed: {ours / limit:.1f}x the limit"
    ratio = _ratio(ours, raw)
    return Row(
        name,
        f"{_f(raw, 2)} {unit}" if not math.isnan(raw) else "n/a",
        f"{_f(ours, 2)} {unit}",
        "n/a" if math.isnan(ratio) else f"{ratio:.2f}x",
        f"≤ {limit:g} {unit}",
        met,
        by,
    )


def _latency(suite: Suite, side: str, load: str) -> list[LatencyResult]:
    return [r for label, r in suite.latency if label == load and r.side == side]


def summary_rows(suite: Suite) -> list[Row]:
    rows = []
    if suite.drain_ours:
        rows.append(
            _min_ratio_row(
                "1. end-to-end drain",
                _m(suite.drain_raw, "rate"),
                _m(suite.drain_ours, "rate"),
                0.7,
                "jobs/s",
            )
        )
    if suite.enqueue_ours:
        rows.append(
            _min_ratio_row(
                "2. single `enqueue` vs `actor.send`",
                _m(suite.send_raw, "rate"),
                _m(suite.enqueue_ours, "rate"),
                0.5,
                "jobs/s",
            )
        )
    if suite.many_ours:
        rows.append(
            _min_ratio_row(
                "3. `enqueue_many` vs `actor.send`",
                _m(suite.send_raw, "rate"),
                _m(suite.many_ours, "rate"),
                5,
                "jobs/s",
            )
        )
    for load in (HALF_LOAD, "5 jobs/s"):
        raw, ours = _latency(suite, "raw", load), _latency(suite, "ours", load)
        if not ours:
            continue
        limits = (10.0, 50.0) if load == HALF_LOAD else (math.inf, math.inf)
        for pct, goal in zip(("p50", "p99"), limits, strict=True):
            name = f"4. enqueue-to-start {pct}, {load}"
            row = _max_row(name, _m(raw, f"{pct}_ms"), _m(ours, f"{pct}_ms"), goal, "ms")
            if math.isinf(goal):
                row.goal, row.met, row.by = "(none)", None, ""
            rows.append(row)
    if suite.queries:
        goals = {"get_job": 2.0, "list_jobs (first page, 50)": 10.0}
        for i, query in enumerate(suite.queries[0]):
            runs = [run[i] for run in suite.queries]
            for pct in ("p50", "p99"):
                limit = goals.get(query.name) if pct == "p99" else None
                value = _m(runs, f"{pct}_ms")
                row = _max_row(f"5. `{query.name}` {pct}", math.nan, value, limit or math.inf, "ms")
                if limit is None:
                    row.goal, row.met, row.by = "(none)", None, ""
                rows.append(row)
    rows += schedule_rows(suite)
    for churn in [suite.churn, *suite.churn_more]:
        if churn is None:
            continue
        bounded, detail = churn_bounded(churn)
        rows.append(
            Row(
                f"churn: {churn.jobs:,} jobs, pruning on, autovacuum {churn.autovacuum}",
                "n/a",
                detail,
                "n/a",
                "size bounded",
                bounded,
            )
        )
    return rows


SCHEDULE_GOALS = {"wall": 1.0, "delay": 2.0}
"""Seconds: the scheduler's wall time per minute at p99, and the firing delay at p99."""


def schedule_rows(suite: Suite) -> list[Row]:
    if not suite.schedules:
        return []
    first = suite.schedules[0]
    size = f"{first.schedules:,} schedules, {first.tenants} tenants, every minute"
    wall = _m(suite.schedules, "wall_p99_s")
    delay = _m(suite.schedules, "delay_p99_s")
    return [
        _max_row(
            f"6. scheduler wall time per minute p99 ({size})",
            math.nan,
            wall,
            SCHEDULE_GOALS["wall"],
            "s",
        ),
        _max_row(f"6. firing delay p99 ({size})", math.nan, delay, SCHEDULE_GOALS["delay"], "s"),
    ]


def churn_bounded(churn: ChurnResult) -> tuple[bool | None, str]:
    """Bounded when, over the second half of the run, neither the dead tuples nor the tables'
    total size grow past 1.5x their largest value in the first half (steady growth, as with
    no vacuum at all, gives about 2x)."""
    sizes = [sum(t["total_bytes"] for t in s.tables.values()) for s in churn.samples]
    dead = [sum(t["n_dead_tup"] for t in s.tables.values()) for s in churn.samples]
    if len(sizes) < 4:
        return None, "too few samples"
    half = len(sizes) // 2
    size_ratio = max(sizes[half:]) / max(*sizes[:half], 1)
    dead_ratio = max(dead[half:]) / max(*dead[:half], 1)
    detail = (
        f"largest size per half {max(sizes[:half]) / 2**20:.0f} -> "
        f"{max(sizes[half:]) / 2**20:.0f} MiB, dead tuples {max(dead[:half]):,.0f} -> "
        f"{max(dead[half:]):,.0f}"
    )
    return size_ratio <= 1.5 and dead_ratio <= 1.5, detail


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def render(suite: Suite, png_name: str) -> str:
    meta = suite.meta
    lines = [
        "# Benchmarks",
        "",
        "Raw Dramatiq (a noop actor) against this system (a noop job type with its full event",
        "trail) in one session on one machine: same Redis, same worker processes and threads,",
        "same poll timeout. Generated by `python -m bench` (`make bench`); every figure below is",
        "the median of the runs, and ratios are ratios of medians. Re-run to refresh this page.",
        "How the hot paths are built, how the figures moved, and what each goal is limited by:",
        "[performance.md](performance.md).",
        "",
        f"Command: `{meta['command']}` — {meta['date']}, {meta['runs']} run(s).",
        "",
        "## Summary",
        "",
    ]
    rows = summary_rows(suite)
    lines += _table(
        ["measure", "raw Dramatiq", "this system", "ratio", "goal", "met?", ""],
        [[r.measure, r.raw, r.ours, r.ratio, r.goal, _met(r.met), r.by] for r in rows],
    )
    lines += ["", f"![ratios, latency and table size]({png_name})", ""]
    lines += _gaps(suite)
    lines += _environment(meta)
    lines += _drain_section(suite)
    lines += _enqueue_section(suite)
    lines += _latency_section(suite)
    lines += _queries_section(suite)
    lines += _churn_section(suite)
    lines += schedules_section(suite)
    if suite.notes:
        lines += ["## Notes from this run", ""] + [f"- {n}" for n in suite.notes] + [""]
    lines += _method()
    return "\n".join(lines) + "\n"


def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1):+.0%}" if old and not math.isnan(old) else "n/a"


def _gaps(suite: Suite) -> list[str]:
    """Evidence for each gap, computed from this run's own figures."""
    lines = ["## Where the gaps come from (this run's evidence)", ""]
    raw, ours = suite.drain_raw, suite.drain_ours
    if ours and raw:
        w, p, r = (
            _m(ours, a)
            for a in ("worker_cpu_ms_per_job", "pg_cpu_ms_per_job", "redis_cpu_ms_per_job")
        )
        rw, rr = _m(raw, "worker_cpu_ms_per_job"), _m(raw, "redis_cpu_ms_per_job")
        lines.append(
            f"- **Drain.** Per job this system spends {w:.2f} ms of worker CPU, {p:.2f} ms of "
            f"PostgreSQL CPU and {r:.2f} ms of Redis CPU, against {rw:.2f} ms and {rr:.2f} ms "
            f"for raw Dramatiq, and makes {_m(ours, 'commits_per_job'):.2f} commits per job "
            "(each worker process writes its claims and completions in rounds, one statement "
            "and one WAL flush per round). On two cores that CPU alone "
            f"caps it near {2000 / (w + p + r):,.0f} jobs/s."
        )
        first = ours[0]
        for label, result in suite.drain_diag:
            lines.append(
                f"  - diagnostic, {label}: {result.rate:,.0f} jobs/s "
                f"({_pct(result.rate, first.rate)} against the same run's {first.rate:,.0f}), "
                f"worker CPU {result.worker_cpu_ms_per_job:.2f} ms/job "
                f"(against {first.worker_cpu_ms_per_job:.2f})."
            )
    if suite.enqueue_ours and suite.send_raw:
        e, s_ = suite.enqueue_ours, suite.send_raw
        lines.append(
            f"- **Single enqueue.** Each call makes {_m(e, 'commits_per_job'):.2f} commits "
            "(the outbox INSERT; the background marker's MARK_SENT, one per 50 ms, which does "
            "not wait for its WAL flush) and "
            f"{_m(e, 'redis_commands_per_job'):.1f} Redis commands (counted inside Lua too, as for "
            f"`actor.send`: {_m(s_, 'redis_commands_per_job'):.1f}): two round trips (one to "
            "PostgreSQL, one to Redis) and one WAL flush waited for, where `actor.send` makes one "
            "Redis "
            "round trip. Producer CPU per call: "
            f"{_m(e, 'producer_cpu_us_per_job'):,.0f} µs against "
            f"{_m(s_, 'producer_cpu_us_per_job'):,.0f} µs; PostgreSQL CPU "
            f"{_m(e, 'pg_cpu_us_per_job'):,.0f} µs." + _floor_text(suite, 1, 0.5)
        )
    if suite.many_ours and suite.send_raw:
        m = suite.many_ours
        lines.append(
            f"- **enqueue_many.** Per job: {_m(m, 'producer_cpu_us_per_job'):,.0f} µs of producer "
            f"CPU and {_m(m, 'pg_cpu_us_per_job'):,.0f} µs of PostgreSQL CPU (one INSERT of "
            f"{suite.meta['batch']:,} rows with their events, one Redis script call for the "
            "batch's messages, one UPDATE by the background marker); PostgreSQL's row, index and "
            "foreign-key work and the producer's Python (validation, message encoding) bound it, "
            "not round trips." + _floor_text(suite, suite.meta["batch"], 5)
        )
    half = [r for label, r in suite.latency if label == HALF_LOAD and r.side == "ours"]
    if half:
        text = (
            f"- **Latency.** At half load ({_m(half, 'rate'):,.0f} jobs/s) p50 is "
            f"{_m(half, 'p50_ms'):.1f} ms and p99 {_m(half, 'p99_ms'):.1f} ms. Each job waits "
            "for its INSERT's commit, the send, the fetch (an idle consumer polls every "
            "`dramatiq_worker_timeout`) and the claim's commit."
        )
        for label, diag in suite.latency:
            if label in (SAME_RATE_AS_RAW, HALF_OF_DRAIN):
                text += (
                    f" Diagnostic, {label} ({diag.rate:,.0f}/s offered, "
                    f"{diag.achieved_rate:,.0f}/s achieved): p50 {diag.p50_ms:.1f} ms, "
                    f"p99 {diag.p99_ms:.1f} ms."
                )
        lines.append(text)
    if suite.queries:
        runs = [run[0] for run in suite.queries]
        lines.append(
            f"- **Queries.** `get_job` is one round trip (primary key lookup); p50 "
            f"{_m(runs, 'p50_ms'):.2f} ms is mostly client-side (pool checkout, the statement on "
            "the driver connection, row to pydantic model) and p99 is where a 2-core machine "
            "shared with workers and servers shows scheduling delays; the plans below show the "
            "server-side time."
        )
    return [*lines, ""]


def _environment(meta: dict[str, Any]) -> list[str]:
    lines = ["## Machine, versions, settings", ""]
    lines += _table(["", ""], [[k, f"{v}"] for k, v in meta["environment"].items()])
    return [*lines, ""]


def _drain_section(suite: Suite) -> list[str]:
    if not suite.drain_ours:
        return []
    lines = [
        "## 1. End-to-end drain",
        "",
        f"{suite.drain_ours[0].jobs:,} jobs queued, then the workers launched; throughput is",
        "jobs / (last completion - launch), worker start-up included. *Steady* leaves start-up",
        "out (first start → last completion). CPU per job is user + system time of the worker",
        "processes (start-up included), of the PostgreSQL backends serving the run's database,",
        "and of Redis, divided by the jobs.",
        "",
    ]
    header = [
        "side",
        "jobs/s",
        "steady jobs/s",
        "worker CPU ms/job",
        "PostgreSQL CPU ms/job",
        "Redis CPU ms/job",
        "commits/job",
        "Redis commands/job (incl. inside Lua)",
    ]
    body = []
    for name, runs in (("raw Dramatiq", suite.drain_raw), ("this system", suite.drain_ours)):
        body.append(_drain_cells(name, runs))
    for name, result in suite.drain_diag:
        body.append(_drain_cells(f"diagnostic: {name} (1 run)", [result]))
    for name, runs in (("raw Dramatiq", suite.nap_raw), ("this system", suite.nap_ours)):
        if runs:
            body.append(_drain_cells(f"{name}, 5 ms handler ({runs[0].jobs:,} jobs)", runs))
    lines += _table(header, body)
    lines += [
        "",
        "Per run (jobs/s, raw / ours): "
        + ", ".join(
            f"{r.rate:,.0f} / {o.rate:,.0f}"
            for r, o in zip(suite.drain_raw, suite.drain_ours, strict=False)
        ),
        "",
    ]
    lines += _nap_lines(suite)
    raw, ours = suite.drain_raw, suite.drain_ours
    cpu_ours = sum(
        _m(ours, a) for a in ("worker_cpu_ms_per_job", "pg_cpu_ms_per_job", "redis_cpu_ms_per_job")
    )
    cpu_raw = _m(raw, "worker_cpu_ms_per_job") + _m(raw, "redis_cpu_ms_per_job")
    cores = suite.meta.get("cores", 2)
    lines += [
        f"CPU bound: {cores} cores / CPU per job gives at most {cores * 1000 / cpu_ours:,.0f} "
        f"jobs/s for this system ({cpu_ours:.2f} ms/job) and "
        f"{cores * 1000 / cpu_raw:,.0f} jobs/s for raw Dramatiq ({cpu_raw:.2f} ms/job).",
        "",
    ]
    return lines


def _nap_lines(suite: Suite) -> list[str]:
    """The 5 ms drains against what the threads could do: one job per thread every 5 ms."""
    if not (suite.nap_raw and suite.nap_ours):
        return []
    threads = suite.meta.get("threads")
    if not threads:
        return []
    ideal = threads / 0.005
    raw, ours = _m(suite.nap_raw, "steady_rate"), _m(suite.nap_ours, "steady_rate")
    return [
        f"5 ms handler: the threads ({threads}) could run at most {ideal:,.0f} jobs/s; steady, "
        f"raw Dramatiq reaches {raw:,.0f} ({raw / ideal:.2f} of that) and this system "
        f"{ours:,.0f} ({ours / ideal:.2f}; {ours / raw:.2f}x raw).",
        "",
    ]


def _drain_cells(name: str, runs: Sequence[DrainResult]) -> list[str]:
    return [
        name,
        _f(_m(runs, "rate")),
        _f(_m(runs, "steady_rate")),
        _f(_m(runs, "worker_cpu_ms_per_job"), 2),
        _f(_m(runs, "pg_cpu_ms_per_job"), 2),
        _f(_m(runs, "redis_cpu_ms_per_job"), 2),
        _f(_m(runs, "commits_per_job"), 2),
        _f(_m(runs, "redis_commands_per_job"), 1),
    ]


def _floor_text(suite: Suite, batch: int, goal: float) -> str:
    """What the INSERT alone reaches, against what the goal asks of the whole call."""
    alone = _insert_alone(suite, batch)
    if not alone or not suite.send_raw:
        return ""
    needed = goal * _m(suite.send_raw, "rate")
    verdict = "below" if _m(alone, "rate") < needed else "above"
    return (
        f" The INSERT alone ({batch:,} per call, rows built beforehand, no validation, no "
        f"Redis, no mark) runs at {_m(alone, 'rate'):,.0f} jobs/s ({1e6 / _m(alone, 'rate'):,.1f} "
        f"µs per job), {verdict} the {needed:,.0f} jobs/s that {goal:g}x `actor.send` asks of "
        "the whole call."
    )


def _insert_alone(suite: Suite, batch: int) -> list[RateResult]:
    return [r for r in suite.insert_alone if r.side == insert_alone_side(batch)]


def _insert_alone_rows(suite: Suite) -> list[tuple[str, list[RateResult]]]:
    return [
        (f"diagnostic: the INSERT alone, {batch:,} per call", _insert_alone(suite, batch))
        for batch in (1, suite.meta["batch"])
    ]


def _enqueue_section(suite: Suite) -> list[str]:
    if not (suite.enqueue_ours or suite.many_ours):
        return []
    lines = [
        "## 2-3. Enqueue throughput",
        "",
        "One producer thread, no workers running. CPU per job: this (producer) process, the",
        "PostgreSQL backend, Redis.",
        "",
    ]
    header = [
        "call",
        "jobs/s",
        "producer CPU µs/job",
        "PostgreSQL CPU µs/job",
        "Redis CPU µs/job",
        "commits/job",
        "Redis commands/job (incl. inside Lua)",
    ]
    body = []
    for name, runs in (
        ("raw `actor.send`", suite.send_raw),
        ("`enqueue`", suite.enqueue_ours),
        (f"`enqueue_many` ({suite.meta['batch']} per call)", suite.many_ours),
        *_insert_alone_rows(suite),
    ):
        if runs:
            body.append(
                [
                    name,
                    _f(_m(runs, "rate")),
                    _f(_m(runs, "producer_cpu_us_per_job")),
                    _f(_m(runs, "pg_cpu_us_per_job")),
                    _f(_m(runs, "redis_cpu_us_per_job")),
                    _f(_m(runs, "commits_per_job"), 3),
                    _f(_m(runs, "redis_commands_per_job"), 2),
                ]
            )
    return [*lines, *_table(header, body), ""]


def _latency_section(suite: Suite) -> list[str]:
    if not suite.latency:
        return []
    lines = [
        "## 4. Enqueue-to-start latency",
        "",
        "Open-loop producer (4 sender threads on a fixed schedule, one `send` or `enqueue` per",
        "job). *Half load* is half of each side's own maximum rate: the lower of its median",
        "steady drain rate and its median single-producer rate (measure 1 and measure 2 or raw",
        "`send`), since jobs can start neither faster than the workers take them nor faster",
        "than the producer makes them. Diagnostic rows (one run each): this system at",
        f"*{SAME_RATE_AS_RAW}* (the same offered load as raw Dramatiq's half load) and at",
        f"*{HALF_OF_DRAIN}* (more",
        "than its single-`enqueue` producer can offer beside the workers: a backlog builds).",
        "Raw: the actor's clock minus the producer's clock",
        "just before `send`; ours: the `started` event's `created_at` minus the job's",
        "`created_at` (both PostgreSQL's clock).",
        "",
    ]
    body = []
    for load in dict.fromkeys(label for label, _ in suite.latency):
        for side in ("raw", "ours"):
            runs = _latency(suite, side, load)
            if runs:
                body.append(
                    [
                        "raw Dramatiq" if side == "raw" else "this system",
                        load,
                        _f(_m(runs, "rate"), 1),
                        _f(_m(runs, "achieved_rate"), 1),
                        str(sum(r.samples for r in runs)),
                        _f(_m(runs, "p50_ms"), 2),
                        _f(_m(runs, "p99_ms"), 2),
                        _f(_m(runs, "max_ms"), 1),
                        _f(_m(runs, "producer_lag_p99_ms"), 2),
                    ]
                )
    header = [
        "side",
        "load",
        "offered jobs/s",
        "achieved jobs/s",
        "samples (all runs)",
        "p50 ms",
        "p99 ms",
        "max ms",
        "producer lag p99 ms",
    ]
    return [*lines, *_table(header, body), ""]


def _queries_section(suite: Suite) -> list[str]:
    if not suite.queries:
        return []
    ds = suite.dataset
    lines = [
        "## 5. Status queries on a large history",
        "",
        f"{ds.get('jobs', 0):,} jobs and {ds.get('events', 0):,} events over "
        f"{ds.get('tenants', 0)} tenants, loaded in {ds.get('load_seconds', 0):,.0f} s "
        f"({ds.get('phases', '')}); final sizes: {ds.get('sizes', '')}.",
        f"{suite.queries[0][0].calls:,} calls of each per run, random tenants and jobs, one",
        "at a time, timed as the caller sees them (pool checkout, SQL, pydantic model).",
        "",
    ]
    body = []
    for i, query in enumerate(suite.queries[0]):
        runs = [run[i] for run in suite.queries]
        body.append(
            [
                f"`{query.name}`",
                _f(_m(runs, "p50_ms"), 2),
                _f(_m(runs, "p99_ms"), 2),
                ", ".join(f"{r.p99_ms:.2f}" for r in runs),
            ]
        )
    lines += _table(["query", "p50 ms", "p99 ms", "p99 per run"], body)
    plans = [q for q in suite.queries[0] if q.plan]
    for q in plans:
        lines += ["", f"Plan of one `{q.name}` call:", "", "```", q.plan, "```"]
    return [*lines, ""]


def _churn_section(suite: Suite) -> list[str]:
    from bench.churn import TUNED

    runs = [c for c in [suite.churn, *suite.churn_more] if c is not None]
    if not runs:
        return []
    lines = ["## Table health under churn", ""]
    for churn in runs:
        lines += _churn_run(churn)
    lines += [
        "Recommended per-table autovacuum settings (a job table is a queue: a small live set",
        "and a steady stream of dead rows, so thresholds should be absolute row counts, not a",
        "fraction of a table whose size swings, and vacuum should not be throttled on it).",
        "They only act when the server runs autovacuum at all (`autovacuum = on`):",
        "",
        "```sql",
    ]
    lines += [f"ALTER TABLE {t} SET ({o});" for t, o in TUNED.items()]
    lines += ["```", ""]
    return lines


def _churn_run(churn: ChurnResult) -> list[str]:
    lines = [
        f"### {churn.jobs:,} jobs, autovacuum {churn.autovacuum}",
        "",
        f"{churn.jobs:,} noop jobs through the system in {churn.seconds:,.0f} s "
        f"({churn.jobs / churn.seconds:,.0f} jobs/s) with `JOBS_RETENTION_DAYS=0.00001` and the "
        f"pruner running ({churn.pruned:,} jobs pruned, their events by cascade); autovacuum "
        f"settings: **{churn.autovacuum}**. Samples of `pg_stat_user_tables` and "
        "`pg_total_relation_size`:",
        "",
    ]
    body = []
    picks = _spread(churn.samples, 12)
    for s in picks:
        jobs, events = s.tables.get("content_jobs", {}), s.tables.get("job_events", {})
        body.append(
            [
                f"{s.elapsed_s:,.0f}",
                f"{s.processed:,}",
                _f(jobs.get("n_live_tup", math.nan)),
                _f(jobs.get("n_dead_tup", math.nan)),
                _f(jobs.get("total_bytes", math.nan) / 2**20, 1),
                _f(events.get("n_live_tup", math.nan)),
                _f(events.get("n_dead_tup", math.nan)),
                _f(events.get("total_bytes", math.nan) / 2**20, 1),
                f"{_f(jobs.get('autovacuum_count', math.nan))} / "
                f"{_f(events.get('autovacuum_count', math.nan))}",
            ]
        )
    header = [
        "s",
        "jobs sent",
        "jobs live",
        "jobs dead",
        "jobs MiB",
        "events live",
        "events dead",
        "events MiB",
        "autovacuums (jobs / events)",
    ]
    lines += _table(header, body)
    bounded, detail = churn_bounded(churn)
    return [*lines, "", f"Bounded: {_met(bounded)} ({detail}).", ""]


def schedules_section(suite: Suite) -> list[str]:
    if not suite.schedules:
        return []
    first = suite.schedules[0]
    lines = [
        "## Periodic schedules",
        "",
        f"{first.schedules:,} active schedules across {first.tenants} tenants, each `* * * * *`"
        " (the noop job type), written by `pgjobs.schedules.sync` (one transaction per tenant:"
        f" {first.write_seconds:.1f} s). The maintenance loop runs as `jobctl maintenance` runs"
        " it, every service included, the scheduler looking every 0.25 s; "
        + ("our workers run the jobs meanwhile. " if first.workers else "no workers run. ")
        + f"Measured over {first.minutes} whole minute(s) per run. Wall time per minute: the"
        " scheduler passes that fired that minute's slots, added up. Firing delay: from a"
        " job's slot to the commit that enqueued it (its message sent). Diagnostic:"
        " `enqueue_many` alone for as many jobs, in batches of 1,000 each in its own"
        " transaction, one thread, half-way through each measured minute (median): the floor"
        " a pass stands on, in the same conditions.",
        "",
    ]
    body = [
        [
            f"{r.jobs:,}",
            f"{r.wall_p50_s:.3f}",
            f"{r.wall_p99_s:.3f}",
            f"{r.wall_max_s:.3f}",
            f"{r.delay_p50_s:.3f}",
            f"{r.delay_p99_s:.3f}",
            f"{r.delay_max_s:.3f}",
            f"{r.idle_pass_ms:.2f}",
            f"{r.enqueue_many_s:.3f}",
        ]
        for r in suite.schedules
    ]
    header = [
        "jobs fired",
        "wall/min p50 s",
        "wall/min p99 s",
        "wall/min max s",
        "delay p50 s",
        "delay p99 s",
        "delay max s",
        "idle pass ms",
        "enqueue_many alone s",
    ]
    wall, floor = _m(suite.schedules, "wall_p50_s"), _m(suite.schedules, "enqueue_many_s")
    ratio = [
        "",
        f"A minute's passes took {_ratio(wall, floor):.2f}x the time `enqueue_many` alone took"
        " for as many jobs (medians): the rest of a pass is locking the due schedules, planning"
        " their slots and advancing them, less what its second thread overlaps.",
    ]
    return [*lines, *_table(header, body), *ratio, ""]


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    if len(items) <= n:
        return list(items)
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


def _method() -> list[str]:
    return [
        "## Method",
        "",
        "- Each measure runs in a scratch database (created, migrated, dropped) and a Redis",
        "  namespace of its own, so the suite never touches user data.",
        "- Workers are real processes from the `dramatiq` CLI with the same processes, threads",
        "  and `dramatiq_worker_timeout` on both sides; ours load `pgjobs.worker.app` with",
        "  `JOBS_IMPORTS=bench.noop_jobs`, raw ones `bench/raw_app.py` (stock `RedisBroker`,",
        "  default middleware).",
        "- Drain completion: ours from the database (`max(completed_at)` - the database clock",
        "  read just before the launch); raw: Redis is polled every 10 ms until the queue's",
        "  `.msgs` hash is empty (Dramatiq deletes a message from it when it is acked, after",
        "  the actor returned), which can only make the raw side look slower, by ≤ 10 ms.",
        "- Latency, raw: the actor RPUSHes its latency to a Redis list (one command per job,",
        "  paid after the time is taken).",
        "- CPU figures come from /proc (user + system); PostgreSQL counts only the backends of",
        "  the run's database, so other users of a shared server are left out, but Redis and the",
        "  machine's cores are shared with whatever else runs (see load average above).",
        "- Commits per job: `pg_stat_database.xact_commit` of the run's database, read after the",
        "  connections closed (a backend flushes its statistics late otherwise); Redis commands:",
        "  `INFO stats` `total_commands_processed` (commands run inside Dramatiq's Lua script",
        "  count too), less the bench's own polls; Redis is shared, so other clients add noise.",
        "",
    ]


def plot(suite: Suite, path: Path) -> None:
    """Ratios against goals, latency percentiles, and table size under churn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if (suite.churn is not None or suite.churn_more) else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    ratio_rows = [r for r in summary_rows(suite) if r.goal.startswith("≥")]
    ax = axes[0]
    names = [r.measure.split(" ", 1)[1].replace("`", "") for r in ratio_rows]
    values = [float(r.ratio.rstrip("x")) for r in ratio_rows]
    goals = [float(r.goal.lstrip("≥ ").rstrip("x")) for r in ratio_rows]
    xs = range(len(names))
    colors = ["tab:green" if v >= g else "tab:red" for v, g in zip(values, goals, strict=True)]
    ax.bar(xs, values, color=colors, width=0.6, label="this system / raw")
    ax.scatter(xs, goals, marker="_", s=2000, color="black", label="goal", zorder=3)
    if values:
        ax.set_ylim(min(values + goals) / 3, max(values + goals) * 3)
    ax.axhline(1, color="gray", linewidth=0.8)
    ax.set_xticks(list(xs), [n.replace(" vs ", "\nvs ") for n in names], fontsize=8)
    ax.set_xlim(-0.7, max(len(names), 2) - 0.3)
    ax.set_yscale("log")
    ax.set_ylabel("ratio (log scale)")
    ax.set_title("Throughput ratio vs goal")
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[1]
    labels, p50s, p99s = [], [], []
    for load in (HALF_LOAD, "5 jobs/s"):
        for side in ("raw", "ours"):
            runs = _latency(suite, side, load)
            if runs:
                labels.append(f"{'raw' if side == 'raw' else 'ours'}\n{load}")
                p50s.append(_m(runs, "p50_ms"))
                p99s.append(_m(runs, "p99_ms"))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], p50s, width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], p99s, width=0.4, label="p99")
    ax.axhline(10, color="tab:blue", linestyle=":", label="p50 goal (half load)")
    ax.axhline(50, color="tab:orange", linestyle=":", label="p99 goal (half load)")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("enqueue-to-start, ms (log scale)")
    ax.set_title("Latency")
    ax.legend(fontsize=7)

    churns = [c for c in [suite.churn, *suite.churn_more] if c is not None]
    if churns:
        ax = axes[2]
        for run, churn in enumerate(churns, 1):
            xs2 = [s.elapsed_s for s in churn.samples]
            sizes = [
                sum(t.get("total_bytes", 0) for t in s.tables.values()) / 2**20
                for s in churn.samples
            ]
            dead = [
                sum(t.get("n_dead_tup", 0) for t in s.tables.values()) / 10_000
                for s in churn.samples
            ]
            ax.plot(xs2, sizes, label=f"run {run}: both tables, MiB")
            ax.plot(xs2, dead, linestyle="--", label=f"run {run}: dead tuples / 10k")
        ax.set_xlabel("seconds into the churn run")
        ax.set_ylabel("MiB / dead tuples (10k)")
        ax.set_title("Churn with pruning on: size and dead tuples")
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load(path: Path) -> Suite:
    """A suite back from the JSON dump of ``--json`` (to re-render without re-measuring)."""
    import json

    data = json.loads(path.read_text())
    suite = Suite(meta=data["meta"], dataset=data["dataset"], notes=data["notes"])
    suite.drain_raw = [DrainResult(**d) for d in data["drain_raw"]]
    suite.drain_ours = [DrainResult(**d) for d in data["drain_ours"]]
    suite.drain_diag = [(label, DrainResult(**d)) for label, d in data["drain_diag"]]
    suite.nap_raw = [DrainResult(**d) for d in data.get("nap_raw", [])]
    suite.nap_ours = [DrainResult(**d) for d in data.get("nap_ours", [])]
    suite.send_raw = [RateResult(**d) for d in data["send_raw"]]
    suite.enqueue_ours = [RateResult(**d) for d in data["enqueue_ours"]]
    suite.many_ours = [RateResult(**d) for d in data["many_ours"]]
    suite.insert_alone = [RateResult(**d) for d in data.get("insert_alone", [])]
    suite.latency = [(label, LatencyResult(**d)) for label, d in data["latency"]]
    suite.queries = [[QueryResult(**q) for q in run] for run in data["queries"]]

    def churn(d: dict[str, Any]) -> ChurnResult:
        samples = [ChurnSample(**s) for s in d.pop("samples")]
        return ChurnResult(samples=samples, **d)

    suite.schedules = [ScheduleResult(**d) for d in data.get("schedules", [])]
    suite.churn = churn(data["churn"]) if data.get("churn") else None
    suite.churn_more = [churn(d) for d in data.get("churn_more", [])]
    return suite


def write(suite: Suite, out: Path) -> Path:
    """Write the markdown to ``out`` and the plot beside it (same name, ``.png``), keeping the
    `jobctl` start-up section that bench/cli_startup.py wrote there."""
    png = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(suite, png)
    page = render(suite, png.name)
    kept = cli_startup.kept_block(out.read_text()) if out.exists() else None
    out.write_text(page if kept is None else cli_startup.put_block(page, kept))
    return png
