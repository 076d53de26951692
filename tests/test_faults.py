"""Fault tests: real worker and maintenance processes, real PostgreSQL and Redis.

Each test starts ``dramatiq pgjobs.worker.app`` processes and ``jobctl maintenance``
(tests/processes.py: each in its own process group, logs under ``tmp_path``, all killed at
teardown), runs jobs of tests/fault_jobs.py through them while something breaks, and then
checks what users rely on:

* every job ends in exactly one terminal state, none is lost, its work happened at least once;
* every job's event history is a legal walk of the state machine (tests/jobwait.py);
* a job is never left ``active`` for longer than a lease plus a rescuer pass (plus slack);
* a credential's plaintext appears nowhere outside the handler that used it.

Faults: ``kill -9`` of workers during a 1,000-job run; Redis killed and restarted empty;
PostgreSQL restarted; malformed messages ahead of valid ones.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis as redis_lib
from fault_jobs import (
    QUEUE,
    canary_type,
    create_effects_table,
    flaky_type,
    sha256_hex,
    work_type,
)
from helpers import make_tenant
from jobwait import assert_legal_history, types_of
from processes import Proc, Processes, RedisServer, restart_postgres, worker_env
from sqlalchemy import text

from pgjobs.db import migrate
from pgjobs.db.engine import autocommit, reset_engine
from pgjobs.db.errors import DatabaseError
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import JobRequest, enqueue, enqueue_many, get_job, get_job_events, list_jobs
from pgjobs.producer import broker as broker_module
from pgjobs.services import embedded
from pgjobs.settings import get_settings

pytestmark = pytest.mark.usefixtures("jobs_env")

LEASE_SECONDS = 3.0
HEARTBEAT_SECONDS = 0.5
MAINTENANCE_INTERVAL = 0.5
SLACK_SECONDS = 6.0
"""Scheduling noise on a small, busy machine (2 cores running PostgreSQL, Redis, 4 Pythons)."""
ACTIVE_BOUND = LEASE_SECONDS + MAINTENANCE_INTERVAL + SLACK_SECONDS

SETTINGS: dict[str, str | float | int] = {
    "lease_seconds": LEASE_SECONDS,
    "heartbeat_seconds": HEARTBEAT_SECONDS,
    "broker_heartbeat_timeout_ms": 3000,
    "relay_queued_after_seconds": 5,
    "relay_pending_after_seconds": 2,
    "maintenance_interval_seconds": MAINTENANCE_INTERVAL,
    "log_level": "INFO",
}

TERMINAL_EVENTS = {EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED}
# Events that end an ``active`` period.
LEAVES_ACTIVE = TERMINAL_EVENTS | {EventType.RETRY, EventType.RESCUED}


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    """Every test here looks at all jobs of its database: a database of its own."""
    return use_fresh_db


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Processes of this test; every process group is killed at teardown, pass or fail.

    A SIGTERM to pytest (a CI job cancelled) becomes a KeyboardInterrupt meanwhile, so the
    teardown runs then too: the children live in sessions of their own and would outlive us."""
    started = Processes(tmp_path / "logs")

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield started
    finally:
        started.stop_all()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def effects(db_env: str) -> str:
    with autocommit() as conn:
        create_effects_table(conn)
    return db_env


# --- helpers --------------------------------------------------------------------------------------


def wait_ready(workers: list[Proc], procs: Processes, timeout: float = 60.0) -> None:
    """Until every worker's Dramatiq process says it is ready (it consumes from then on)."""
    procs.wait_ready(workers, timeout)


COMPLETED_BY = text(
    """
    SELECT DISTINCT split_part(e.data ->> 'worker', ':', 2)::int AS pid
    FROM job_events e JOIN content_jobs j ON j.id = e.job_id
    WHERE e.tenant_id = :tenant_id AND e.event_type = 'started' AND j.status = 'succeeded'
    """
)


def worker_pids(worker: Proc) -> set[int]:
    """The Dramatiq CLI and the worker processes it forked."""
    try:
        return {worker.pid, *(c.pid for c in psutil.Process(worker.pid).children(recursive=True))}
    except psutil.Error:
        return set()


def wait_processing(
    workers: list[Proc],
    procs: Processes,
    at_least: int,
    tenant_id: uuid.UUID,
    timeout: float = 30.0,
) -> list[Proc]:
    """The workers that have finished a job (so are running jobs), once there are ``at_least``:
    told by the ``started`` events (their ``worker`` is host:pid) of jobs that succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        with autocommit() as conn:
            pids = set(conn.execute(COMPLETED_BY, {"tenant_id": tenant_id}).scalars())
        busy = [w for w in workers if worker_pids(w) & pids]
        if len(busy) >= at_least:
            return busy
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker is running jobs\n{procs.report()}")
        time.sleep(0.1)


def status_counts(tenant_id: uuid.UUID) -> Counter[str]:
    with autocommit() as conn:
        rows = conn.execute(
            text("SELECT status, count(*) FROM content_jobs WHERE tenant_id = :t GROUP BY status"),
            {"t": tenant_id},
        ).all()
    return Counter({str(status): int(n) for status, n in rows})


def unfinished(tenant_id: uuid.UUID) -> int:
    counts = status_counts(tenant_id)
    return sum(n for s, n in counts.items() if s not in ("succeeded", "failed", "cancelled"))


def wait_done(tenant_id: uuid.UUID, at_least: int, procs: Processes, timeout: float = 30.0) -> int:
    """Until at least ``at_least`` jobs succeeded (so a fault comes in the middle of a run)."""
    deadline = time.monotonic() + timeout
    while (done := status_counts(tenant_id)["succeeded"]) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {done} jobs done after {timeout:.0f}s\n{procs.report()}")
        time.sleep(0.05)
    return done


def wait_all_terminal(
    tenant_id: uuid.UUID, expected: int, procs: Processes, timeout: float
) -> Counter[str]:
    """Until ``expected`` jobs exist and all are terminal; tolerates a database that is down."""
    deadline = time.monotonic() + timeout
    counts: Counter[str] = Counter()
    while time.monotonic() < deadline:
        try:
            counts = status_counts(tenant_id)
        except DatabaseError:
            reset_engine()
        else:
            done = sum(counts[s] for s in ("succeeded", "failed", "cancelled"))
            if sum(counts.values()) == expected and done == expected:
                return counts
        if not procs.running("worker"):
            raise AssertionError(f"no worker is running: {dict(counts)}\n{procs.report()}")
        time.sleep(0.25)
    raise AssertionError(
        f"jobs not all terminal after {timeout:.0f}s: {dict(counts)}\n{procs.report()}"
    )


@dataclass(frozen=True)
class Event:
    id: int
    type: EventType
    data: dict[str, Any]
    created_at: datetime


def histories(tenant_id: uuid.UUID) -> dict[int, list[Event]]:
    """Every job's events in id order (one query for all jobs of the tenant)."""
    with autocommit() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id, id, event_type, data, created_at FROM job_events "
                "WHERE tenant_id = :t ORDER BY job_id, id"
            ),
            {"t": tenant_id},
        ).all()
    found: dict[int, list[Event]] = defaultdict(list)
    for job_id, event_id, event_type, data, created_at in rows:
        found[job_id].append(Event(event_id, EventType(event_type), data, created_at))
    return dict(found)


def effects_by_job(tenant_job_ids: set[int]) -> Counter[int]:
    with autocommit() as conn:
        rows = conn.execute(text("SELECT job_id, count(*) FROM fault_effects GROUP BY job_id"))
        return Counter({job_id: int(n) for job_id, n in rows if job_id in tenant_job_ids})


@dataclass
class RunReport:
    jobs: int
    rescued: int
    takeovers: int
    """Rescues done by a worker's claim of an expired lease (not by the rescuer)."""
    resent: int
    retried: int
    max_active_s: float
    attempts: Counter[int]


def check_run(
    tenant_id: uuid.UUID, job_ids: list[int], procs: Processes, *, active_bound: float
) -> RunReport:
    """Every job succeeded exactly once, with a legal history, its work done at least once, and
    no active period longer than ``active_bound``."""
    problems: list[str] = []
    found = histories(tenant_id)
    if set(found) != set(job_ids):
        problems.append(f"jobs with events: {len(found)}, enqueued: {len(job_ids)}")
    with autocommit() as conn:
        rows = conn.execute(
            text("SELECT id, status, attempts FROM content_jobs WHERE tenant_id = :t"),
            {"t": tenant_id},
        ).all()
    statuses = {job_id: status for job_id, status, _ in rows}
    attempts = Counter(int(a) for _, _, a in rows)
    if sorted(statuses) != sorted(job_ids):
        problems.append(f"{len(statuses)} rows for {len(job_ids)} jobs")
    not_ok = {j: s for j, s in statuses.items() if s != "succeeded"}
    if not_ok:
        problems.append(f"{len(not_ok)} jobs did not succeed, e.g. {list(not_ok.items())[:5]}")
    done = effects_by_job(set(job_ids))
    no_effect = [j for j in job_ids if done[j] < 1]
    if no_effect:
        problems.append(f"{len(no_effect)} jobs never did their work, e.g. {no_effect[:5]}")

    rescued = takeovers = resent = retried = 0
    longest = 0.0
    for job_id in job_ids:
        events = found.get(job_id, [])
        types = [e.type for e in events]
        try:
            final = assert_legal_history(types)
        except AssertionError as exc:
            problems.append(f"job {job_id}: {exc}")
            continue
        if final is not JobStatus.SUCCEEDED:
            problems.append(f"job {job_id}: history ends in {final}: {types}")
        terminal = [t for t in types if t in TERMINAL_EVENTS]
        if terminal != [EventType.COMPLETED]:
            problems.append(f"job {job_id}: terminal events {terminal}")
        rescued += types.count(EventType.RESCUED)
        takeovers += sum(
            1
            for a, b in itertools.pairwise(events)
            if (a.type, b.type) == (EventType.RESCUED, EventType.STARTED)
            and a.created_at == b.created_at
        )
        retried += types.count(EventType.RETRY)
        resent += sum(1 for e in events if e.type is EventType.ENQUEUED and e.data.get("resent"))
        since: datetime | None = None
        for event in events:
            if event.type is EventType.STARTED:
                since = event.created_at
            elif event.type in LEAVES_ACTIVE and since is not None:
                active = (event.created_at - since).total_seconds()
                longest = max(longest, active)
                if active > active_bound:
                    problems.append(
                        f"job {job_id}: active {active:.1f}s > {active_bound:.1f}s: "
                        f"{[(e.type.value, e.created_at.isoformat()) for e in events]}"
                    )
                since = None
        if since is not None:
            problems.append(f"job {job_id}: still active at the end: {types}")
    if problems:
        shown = "\n".join(problems[:20])
        raise AssertionError(f"{len(problems)} problems:\n{shown}\n{procs.report()}")
    return RunReport(len(job_ids), rescued, takeovers, resent, retried, round(longest, 2), attempts)


def log_events(procs: Processes) -> Counter[str]:
    """How often each JSON log event name appears across the processes' logs."""
    seen: Counter[str] = Counter()
    for path in procs.log_files():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    seen[str(json.loads(line).get("event"))] += 1
                except ValueError:
                    pass
    return seen


def work_requests(tenant_id: uuid.UUID, n: int, sleep_ms: tuple[float, float]) -> list[JobRequest]:
    rng = random.Random()
    return [
        JobRequest(work_type, {"n": i, "sleep_ms": rng.uniform(*sleep_ms)}, tenant_id)
        for i in range(n)
    ]


# --- a takeover claim's events, in order ------------------------------------------------------


def test_takeover_claim_records_rescued_before_started(tenant_id: uuid.UUID) -> None:
    """A claim of an expired lease writes ``rescued`` (the old attempt) then ``started``."""
    job = enqueue(work_type, {"n": 1}, tenant_id=tenant_id)
    with autocommit() as conn:
        first = sm.claim(conn, job.id, tenant_id, lease_seconds=0.01, message_id="a", worker="x")
    assert first is not None
    time.sleep(0.05)
    with autocommit() as conn:
        second = sm.claim(conn, job.id, tenant_id, lease_seconds=30, message_id="b", worker="y")
    assert second is not None and second.rescued
    expected = [EventType.ENQUEUED, EventType.STARTED, EventType.RESCUED, EventType.STARTED]
    assert [e.type for e in histories(tenant_id)[job.id]] == expected
    types = types_of(tenant_id, job.id)
    assert types == expected
    assert_legal_history(types)


# --- 1. kill -9 workers during a 1,000-job run ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_workers_during_1000_job_run(
    tenant_id: uuid.UUID,
    jobs_env: str,
    effects: str,
    server_urls: tuple[str, str],
    procs: Processes,
) -> None:
    env = worker_env(database_url=effects, redis_url=server_urls[1], namespace=jobs_env, **SETTINGS)
    procs.maintenance(env)
    workers = [procs.worker(env), procs.worker(env)]
    wait_ready(workers, procs)
    rng = random.Random()
    started = time.monotonic()
    jobs = enqueue_many(work_requests(tenant_id, 1000, (30, 70)))
    kills: list[tuple[str, float, int]] = []
    for _ in range(4):
        # 1-2 s after the last kill (and once its replacement runs jobs too), kill one of the
        # two: every kill hits a worker in the middle of its jobs while the other carries on.
        kill_at = time.monotonic() + rng.uniform(1.0, 2.0)
        wait_processing(workers, procs, at_least=2, tenant_id=tenant_id)
        time.sleep(max(0.0, kill_at - time.monotonic()))
        victim = rng.choice(workers)
        left = unfinished(tenant_id)
        victim.kill()
        kills.append((victim.name, round(time.monotonic() - started, 1), left))
        workers.remove(victim)
        workers.append(procs.worker(env))
    assert all(left > 0 for _, _, left in kills), f"the run ended before the kills: {kills}"

    counts = wait_all_terminal(tenant_id, 1000, procs, timeout=120)
    elapsed = time.monotonic() - started
    assert counts == Counter({"succeeded": 1000}), counts
    report = check_run(tenant_id, [j.id for j in jobs], procs, active_bound=ACTIVE_BOUND)
    # The kills hit running jobs: some were rescued (expired lease) and ran again.
    assert report.rescued >= 1, (kills, report, procs.report())
    print(f"\nkill -9 run: {elapsed:.1f}s, kills {kills}, {report}")


# --- 2. Redis killed and restarted empty ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_redis_restarted_with_data_lost(
    tenant_id: uuid.UUID,
    jobs_env: str,
    effects: str,
    procs: Processes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Redis of this test's own, on a fixed port, so it can come back on the same address and
    # the same worker and maintenance processes have to reconnect by themselves.
    redis_server = RedisServer(procs)
    redis_server.start()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    get_settings.cache_clear()
    broker_module.set_broker(None)
    settings = dict(SETTINGS, relay_queued_after_seconds=2, relay_pending_after_seconds=1)
    env = worker_env(
        database_url=effects, redis_url=redis_server.url, namespace=jobs_env, **settings
    )
    maintenance = procs.maintenance(env)
    workers = [procs.worker(env), procs.worker(env)]
    wait_ready(workers, procs)
    started = time.monotonic()
    # Some jobs fail their first attempt: when Redis dies, their retries wait in its delay queue.
    flaky = [JobRequest(flaky_type, {"n": i, "fail_attempts": 1}, tenant_id) for i in range(30)]
    jobs = enqueue_many(flaky + work_requests(tenant_id, 300, (40, 80)))
    wait_done(tenant_id, 40, procs)
    left_at_kill = unfinished(tenant_id)
    redis_server.kill()
    # While Redis is down, the producer commits more jobs: they stay pending (send failed).
    late = enqueue_many(work_requests(tenant_id, 30, (40, 80)))
    assert {get_job(tenant_id, j.id).status for j in late} == {JobStatus.PENDING}
    time.sleep(2.0)
    redis_server.start()
    job_ids = [j.id for j in jobs + late]

    counts = wait_all_terminal(tenant_id, len(job_ids), procs, timeout=120)
    elapsed = time.monotonic() - started
    assert counts == Counter({"succeeded": len(job_ids)}), counts
    assert left_at_kill > 50, f"the run was nearly over when Redis died: {left_at_kill} left"
    # The same processes reconnected by themselves.
    assert all(p.alive() for p in [maintenance, *workers]), procs.report()
    report = check_run(tenant_id, job_ids, procs, active_bound=ACTIVE_BOUND)
    # Messages were lost with Redis: the relay re-sent them (and sent the pending ones); the
    # flaky jobs' retries were lost from the delay queue and re-sent too.
    assert report.resent >= 30, (report, procs.report())
    assert report.retried >= len(flaky), report
    found = histories(tenant_id)
    retries_resent = sum(
        1
        for job in jobs[: len(flaky)]
        if any(
            a.type is EventType.RETRY and b.type is EventType.ENQUEUED and b.data.get("resent")
            for a, b in itertools.pairwise(found[job.id])
        )
    )
    assert retries_resent >= 1, (report, procs.report())
    print(
        f"\nredis restart run: {elapsed:.1f}s, {left_at_kill} left at the kill, "
        f"{retries_resent} lost retries re-sent, {report}"
    )


PG_DOWN_SECONDS = 3.0
RECOVERY_EVENTS = (
    "db.unavailable.retrying",
    "job.retrying",
    "job.lease_lost",
    "job.complete.lease_lost",
    "lease.heartbeat_failed",
    "maintenance.service_failed",
    "job.claim.took_over_expired_lease",
)

# --- 3. PostgreSQL restarted ----------------------------------------------------------------------


@pytest.fixture
def own_postgres(monkeypatch: pytest.MonkeyPatch, jobs_env: str) -> Iterator[tuple[Path, str]]:
    """An embedded PostgreSQL of this test's own (migrated), which the library then uses."""
    dev_dir = Path(tempfile.mkdtemp(prefix="pgf", dir="/tmp"))  # short: the socket lives here
    try:
        url = embedded.start(dev_dir, postgres=True, redis=False, fast=True).database_url
        assert url is not None
        migrate.upgrade("head", url)
        monkeypatch.setenv("DATABASE_URL", url)
        get_settings.cache_clear()
        reset_engine()
        with autocommit() as conn:
            create_effects_table(conn)
        yield dev_dir, url
    finally:
        reset_engine()
        embedded.stop(dev_dir)
        shutil.rmtree(dev_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_postgres_restarted_mid_run(
    own_postgres: tuple[Path, str],
    jobs_env: str,
    server_urls: tuple[str, str],
    procs: Processes,
) -> None:
    dev_dir, url = own_postgres
    tenant_id = make_tenant()
    env = worker_env(database_url=url, redis_url=server_urls[1], namespace=jobs_env, **SETTINGS)
    maintenance = procs.maintenance(env)
    workers = [procs.worker(env), procs.worker(env)]
    wait_ready(workers, procs)
    started = time.monotonic()
    jobs = enqueue_many(work_requests(tenant_id, 400, (60, 100)))
    done = wait_done(tenant_id, 40, procs)
    # A blip: `pg_ctl restart -m fast` (every connection is cut, the server is back at once) ...
    left_at_restart = unfinished(tenant_id)
    restart_s = restart_postgres(dev_dir)
    reset_engine()  # this process's pooled connections died with the server
    wait_done(tenant_id, done + 40, procs)
    # ... then an outage: no server at all for a few seconds (as long as a lease).
    left_at_outage = unfinished(tenant_id)
    outage_s = restart_postgres(dev_dir, down_seconds=PG_DOWN_SECONDS)
    reset_engine()

    counts = wait_all_terminal(tenant_id, len(jobs), procs, timeout=120)
    elapsed = time.monotonic() - started
    assert counts == Counter({"succeeded": len(jobs)}), counts
    assert min(left_at_restart, left_at_outage) > 50, (
        f"the run was nearly over: {left_at_restart} left at the restart, "
        f"{left_at_outage} at the outage"
    )
    assert all(p.alive() for p in [maintenance, *workers]), procs.report()
    # While PostgreSQL is down nothing can move, so a job may stay active that much longer.
    bound = ACTIVE_BOUND + PG_DOWN_SECONDS
    report = check_run(tenant_id, [j.id for j in jobs], procs, active_bound=bound)
    seen = log_events(procs)
    recovery = {k: seen[k] for k in RECOVERY_EVENTS if seen[k]}
    # The runtime's retry of state-machine writes is what carried the run through.
    assert seen["db.unavailable.retrying"] >= 1, (recovery, procs.report())
    print(
        f"\npostgres restart run: {elapsed:.1f}s, restart {restart_s:.1f}s "
        f"({left_at_restart} left), outage {outage_s:.1f}s ({left_at_outage} left), {report}, "
        f"recovery log events {recovery}"
    )


# --- 4. a canary credential leaks nowhere ---------------------------------------------------------


def redis_dump(client: redis_lib.Redis, pattern: str = "*") -> dict[bytes, str]:
    """Every key matching ``pattern`` with its whole value, whatever its type, as text."""
    dump: dict[bytes, str] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        kind = client.type(key).decode()
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = f"<{kind}>"
        dump[key] = f"{key!r} {kind} {value!r}"
    return dump


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_canary_credential_leaks_nowhere(
    tenant_id: uuid.UUID,
    jobs_env: str,
    effects: str,
    server_urls: tuple[str, str],
    redis_client: redis_lib.Redis,
    procs: Processes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pgjobs.vault.credentials import create_credential
    from pgjobs.vault.keys import generate_key, reset_cipher

    keys = f"k1:{generate_key()}"
    monkeypatch.setenv("JOBS_ENCRYPTION_KEYS", keys)
    get_settings.cache_clear()
    reset_cipher()
    canary = f"CANARY-{uuid.uuid4().hex}"
    credential = create_credential(tenant_id, provider="custom", name="canary", secret=canary)

    settings = dict(SETTINGS, log_level="DEBUG", heartbeat_seconds=0.2, encryption_keys=keys)
    env = worker_env(database_url=effects, redis_url=server_urls[1], namespace=jobs_env, **settings)
    procs.maintenance(env)
    workers = [procs.worker(env), procs.worker(env)]
    wait_ready(workers, procs)
    job = enqueue(canary_type, {"credential_id": str(credential.id)}, tenant_id=tenant_id)
    wait_all_terminal(tenant_id, 1, procs, timeout=60)
    time.sleep(0.5)  # let the last log lines reach the files

    done = get_job(tenant_id, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 3, (done, procs.report())
    assert done.error_message == "time limit of 1.5s exceeded", done.error_message
    events = get_job_events(tenant_id, job.id).items
    types = [e.event_type for e in events]
    assert assert_legal_history(types) is JobStatus.FAILED
    assert types.count(EventType.RETRY) == 2 and types[-1] is EventType.FAILED, types
    retry_errors = [e.data["error"] for e in events if e.event_type is EventType.RETRY]
    assert all("[REDACTED]" in error for error in retry_errors), retry_errors

    # It was used: every attempt decrypted it (the handler kept a SHA-256 of what it saw) ...
    with autocommit() as conn:
        notes = conn.execute(
            text("SELECT attempt, note FROM fault_effects WHERE job_id = :j ORDER BY attempt"),
            {"j": job.id},
        ).all()
    expected = hashlib.sha256(canary.encode()).hexdigest()
    assert [(a, n) for a, n in notes] == [(1, expected), (2, expected), (3, expected)]
    assert sha256_hex(canary) == expected
    # ... and logged it: the line is there, with the value redacted.
    using = []
    for path in procs.log_files():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"using"' in line:
                using.append(json.loads(line))
    assert [u["key"] for u in using] == ["[REDACTED]"] * 3, (using, procs.report())

    # And it appears nowhere else.
    leaks: list[str] = []
    for path in procs.log_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if canary in line:
                leaks.append(f"{path.name}:{number}: {line[:300]}")
    # Every key of the Redis database the workers use (this test's namespace and any other).
    dump = redis_dump(redis_client)
    assert any(key.startswith(jobs_env.encode()) for key in dump), sorted(dump)
    leaks.extend(f"redis: {entry[:300]}" for entry in dump.values() if canary in entry)
    with autocommit() as conn:
        for table, column in (
            ("job_events", "data::text"),
            ("content_jobs", "row_to_json(content_jobs)::text"),
            ("app_credentials", "row_to_json(app_credentials)::text"),
            ("fault_effects", "row_to_json(fault_effects)::text"),
        ):
            found = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE strpos({column}, :c) > 0"),
                {"c": canary},
            ).scalar_one()
            if found:
                leaks.append(f"{found} rows of {table}")
    answers = {
        "get_job": get_job(tenant_id, job.id).model_dump_json(),
        "list_jobs": json.dumps([j.model_dump(mode="json") for j in list_jobs(tenant_id).items]),
        "get_job_events": json.dumps([e.model_dump(mode="json") for e in events]),
    }
    leaks.extend(name for name, answer in answers.items() if canary in answer)
    assert not leaks, "\n".join(leaks)
    # The search covered real DEBUG output (the credential's own debug line included).
    seen = log_events(procs)
    assert seen["credential.used"] == 3 and seen["db.query"] > 10, seen


# --- 5. malformed messages ahead of valid ones ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_malformed_messages_with_real_workers(
    tenant_id: uuid.UUID,
    jobs_env: str,
    effects: str,
    server_urls: tuple[str, str],
    redis_client: redis_lib.Redis,
    procs: Processes,
) -> None:
    broker = broker_module.get_broker()
    broker.declare_queue(QUEUE)
    broker.do_enqueue(QUEUE, "garbage-1", b"this is not json")
    broker.do_enqueue(QUEUE, "garbage-2", b'{"json": "but not a message"}')
    bad_args = broker_module.Outgoing(0, tenant_id, QUEUE, "garbage-3").to_message()
    broker.do_enqueue(QUEUE, "garbage-3", bad_args.copy(args=("not-an-id", "x")).encode())
    jobs = enqueue_many(work_requests(tenant_id, 50, (5, 15)))

    env = worker_env(database_url=effects, redis_url=server_urls[1], namespace=jobs_env, **SETTINGS)
    procs.maintenance(env)
    workers = [procs.worker(env), procs.worker(env)]
    counts = wait_all_terminal(tenant_id, 50, procs, timeout=60)
    assert counts == Counter({"succeeded": 50}), counts
    check_run(tenant_id, [j.id for j in jobs], procs, active_bound=ACTIVE_BOUND)

    bad = {b"garbage-1", b"garbage-2", b"garbage-3"}
    deadline = time.monotonic() + 15
    dead: set[bytes] = set()
    while time.monotonic() < deadline:
        dead = set(redis_client.zrange(f"{jobs_env}:{QUEUE}.XQ", 0, -1))
        if bad <= dead:
            break
        time.sleep(0.1)
    assert bad <= dead, (dead, procs.report())
    waiting = set(redis_client.lrange(f"{jobs_env}:{QUEUE}", 0, -1))
    assert not bad & waiting, waiting
    assert all(w.alive() for w in workers), procs.report()
