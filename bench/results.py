"""What each measure returns: plain dataclasses, so the report and the JSON dump share them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DrainResult:
    """N jobs queued, then workers started: how long until the last one completed."""

    side: str
    jobs: int
    seconds: float
    """From launching the workers to the last completion (start-up included, as the issue asks)."""
    steady_seconds: float
    """From the first job started to the last completion (start-up excluded)."""
    worker_cpu_ms_per_job: float
    pg_cpu_ms_per_job: float
    redis_cpu_ms_per_job: float
    redis_commands_per_job: float
    commits_per_job: float = float("nan")
    redis_empty_seconds: float = float("nan")
    """Ours only: when Redis's ``.msgs`` hash emptied (the raw side's method), as a cross-check."""

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def steady_rate(self) -> float:
        return self.jobs / self.steady_seconds


@dataclass
class RateResult:
    """Producer throughput: calls (or jobs) per second from one thread, no workers running."""

    side: str
    jobs: int
    seconds: float
    producer_cpu_us_per_job: float
    pg_cpu_us_per_job: float = float("nan")
    redis_cpu_us_per_job: float = float("nan")
    commits_per_job: float = float("nan")
    redis_commands_per_job: float = float("nan")
    machine_busy_pct: float = float("nan")
    """Percent of the machine's cores busy during the timed calls (every process)."""

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


def insert_alone_side(batch: int) -> str:
    """The ``side`` of a :class:`RateResult` of the outbox INSERT alone, ``batch`` jobs per call."""
    return f"INSERT alone ({batch} per call)"


@dataclass
class LatencyResult:
    """Enqueue-to-start latency under an open-loop producer at a fixed rate."""

    side: str
    rate: float
    achieved_rate: float
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    producer_lag_p99_ms: float


@dataclass
class QueryResult:
    name: str
    calls: int
    p50_ms: float
    p99_ms: float
    plan: str = ""


@dataclass
class ChurnSample:
    elapsed_s: float
    processed: int
    tables: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per table: n_live_tup, n_dead_tup, total_bytes, autovacuum_count."""


@dataclass
class ChurnResult:
    jobs: int
    seconds: float
    pruned: int
    samples: list[ChurnSample]
    autovacuum: str
    """'default' or the per-table settings applied for the run."""


@dataclass
class ScheduleResult:
    """Periodic schedules firing every minute (bench/schedules.py)."""

    schedules: int
    tenants: int
    minutes: int
    jobs: int
    """Jobs the measured minutes' passes created."""
    workers: bool
    """Our workers ran the jobs meanwhile."""
    wall_p50_s: float
    """The scheduler's wall time per minute (the passes that fired jobs, added up)."""
    wall_p99_s: float
    wall_max_s: float
    delay_p50_s: float
    """From a job's slot to the commit that enqueued it."""
    delay_p99_s: float
    delay_max_s: float
    idle_pass_ms: float
    """A pass that found nothing due (median)."""
    write_seconds: float
    """Writing the schedules (``sync``, one transaction per tenant)."""
    enqueue_many_s: float = float("nan")
    """Diagnostic: as many jobs through ``enqueue_many`` alone (batches of 1,000, each in a
    transaction, sent after commit, one thread), half-way through each measured minute
    (median)."""
