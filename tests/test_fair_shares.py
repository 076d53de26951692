"""Fair shares between tenants on a queue (docs/limits.md, "Fair shares").

The statements alone first: a due job beyond its tenant's share is written ``held`` with no
message, a delayed one never is, a weight scales the share, a freed share sends the oldest held
job once, a held job can be cancelled, and nothing changes on a queue that is not fair. Then
real worker processes: a tenant with a large backlog does not delay another tenant's new jobs by
more than a small bounded amount (and does without fair shares), and two tenants with weights
3:1 start jobs in that proportion.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fair_jobs import QUEUE, fair_type
from helpers import make_tenant
from jobwait import assert_legal_history, types_of
from processes import Proc, Processes, worker_env
from sqlalchemy import text

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import JobRequest, cancel_job, enqueue, enqueue_many, flush
from pgjobs.producer.errors import InvalidOption, UnknownTenant
from pgjobs.producer.shares import set_share_weight, share_weight
from pgjobs.settings import get_settings
from pgjobs.worker import metrics
from pgjobs.worker.limits import release_slots, sweep_waiting

pytestmark = pytest.mark.usefixtures("jobs_env")

SETTINGS: dict[str, str | float | int] = {
    "lease_seconds": 5.0,
    "heartbeat_seconds": 0.5,
    "maintenance_interval_seconds": 0.5,
    "relay_queued_after_seconds": 2,
    "relay_pending_after_seconds": 2,
    "broker_heartbeat_timeout_ms": 3000,
    "log_level": "INFO",
}


def _fair(monkeypatch: pytest.MonkeyPatch, share: int, queues: str = QUEUE) -> None:
    monkeypatch.setenv("JOBS_FAIR_QUEUES", queues)
    monkeypatch.setenv("JOBS_FAIR_SHARE_IN_FLIGHT", str(share))
    get_settings.cache_clear()


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    """These tests look at every job of their database: a database of their own."""
    return use_fresh_db


@pytest.fixture
def fair(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test queue is fair, with a share of 3 jobs in flight per tenant of weight 1."""
    _fair(monkeypatch, 3)


def _statuses(tenant: uuid.UUID) -> list[str]:
    flush(timeout=10)  # the sender's pending -> queued marks
    with autocommit() as conn:
        rows = conn.execute(
            text("SELECT status FROM content_jobs WHERE tenant_id = :t ORDER BY id"), {"t": tenant}
        )
        return [str(s) for s in rows.scalars()]


def _queue_length(redis_client: redis_lib.Redis, namespace: str) -> int:
    return int(redis_client.llen(f"{namespace}:{QUEUE}"))


def _many(tenant: uuid.UUID, n: int, seconds: float = 0.005) -> list[int]:
    requests = [JobRequest(fair_type, {"seconds": seconds}, tenant) for _ in range(n)]
    return [job.id for job in enqueue_many(requests)]


@pytest.mark.usefixtures("fair")
def test_beyond_its_share_a_job_is_held_without_a_message(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    jobs = [enqueue(fair_type, {}, tenant_id=tenant_id) for _ in range(5)]
    assert [j.status for j in jobs] == [JobStatus.PENDING] * 3 + [JobStatus.HELD] * 2
    assert _statuses(tenant_id) == ["queued"] * 3 + ["held"] * 2
    assert _queue_length(redis_client, jobs_env) == 3  # held jobs have no message
    with autocommit() as conn:
        data = conn.execute(
            text("SELECT data FROM job_events WHERE job_id = :j"), {"j": jobs[3].id}
        ).scalar_one()
    assert data["held"] == "fair share"
    # a delayed job is not in flight until it is due, and never held
    later = enqueue(fair_type, {}, tenant_id=tenant_id, delay=60)
    assert later.status is JobStatus.PENDING
    # another tenant has a share of its own
    other = make_tenant()
    assert [j.status for j in (enqueue(fair_type, {}, tenant_id=other),)] == [JobStatus.PENDING]


@pytest.mark.usefixtures("fair")
def test_a_batch_fills_each_share_in_order_and_weights_scale_it(tenant_id: uuid.UUID) -> None:
    other = make_tenant()
    assert share_weight(other) == 1
    assert set_share_weight(other, 2) == 2
    requests = [JobRequest(fair_type, {}, t) for t in [tenant_id, other] * 8]
    statuses = [(j.tenant_id, j.status) for j in enqueue_many(requests)]
    mine = [s for t, s in statuses if t == tenant_id]
    theirs = [s for t, s in statuses if t == other]
    assert mine == [JobStatus.PENDING] * 3 + [JobStatus.HELD] * 5
    assert theirs == [JobStatus.PENDING] * 6 + [JobStatus.HELD] * 2
    # once jobs are held, a new one is held too even if room appeared: the held go first
    assert enqueue(fair_type, {}, tenant_id=tenant_id).status is JobStatus.HELD


def test_weights_are_checked(tenant_id: uuid.UUID) -> None:
    for bad in (0, 101, -1, 1.5, True, "2"):
        with pytest.raises(InvalidOption, match="weight"):
            set_share_weight(tenant_id, bad)  # type: ignore[arg-type]
    with pytest.raises(UnknownTenant):
        set_share_weight(uuid.uuid4(), 2)
    assert share_weight(tenant_id) == 1


@pytest.mark.usefixtures("fair")
def test_a_freed_share_sends_the_oldest_held_job_once(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    ids = _many(tenant_id, 6)
    key = f"{QUEUE}:{tenant_id}"
    assert release_slots([], [key]) == 0  # the share is full
    cancel_job(tenant_id, ids[0])  # one leaves flight
    cancel_job(tenant_id, ids[5])  # a held one can be cancelled
    assert _statuses(tenant_id) == ["cancelled", "queued", "queued", "held", "held", "cancelled"]
    assert release_slots([], [key]) == 1
    assert release_slots([], [key]) == 0  # it is on its way: in flight
    assert _statuses(tenant_id) == ["cancelled", "queued", "queued", "queued", "held", "cancelled"]
    assert _queue_length(redis_client, jobs_env) == 4  # the cancelled job's message stays
    history = types_of(tenant_id, ids[3])
    assert history == [EventType.ENQUEUED, EventType.ENQUEUED]
    assert assert_legal_history(history) is JobStatus.QUEUED
    assert assert_legal_history(types_of(tenant_id, ids[5])) is JobStatus.CANCELLED
    with autocommit() as conn:
        (usage,) = [u for u in sm.share_usage(conn) if u.key == key]
    assert (usage.in_flight, usage.held, usage.max) == (3, 1, 3)
    metrics.shares([usage])
    assert metrics.share_held.labels(key)._value.get() == 1
    # the maintenance sweep does the same for every share with held jobs
    cancel_job(tenant_id, ids[1])
    assert sweep_waiting() == 1
    assert _statuses(tenant_id)[4] == "queued"


@pytest.mark.usefixtures("fair")
def test_two_releases_never_fill_the_same_room_twice(tenant_id: uuid.UUID) -> None:
    """A release holds its shares' locks until it commits; a second one waits, then counts the
    room after the first: one place free, one job sent (without the locks: two)."""
    import threading

    from pgjobs.db.engine import transaction
    from pgjobs.db.jobs import state_machine as sm
    from pgjobs.db.statements import execute_step

    ids = _many(tenant_id, 6)
    cancel_job(tenant_id, ids[0])  # one place free
    key = f"{QUEUE}:{tenant_id}"
    second: list[int] = []
    with transaction() as conn:
        execute_step(conn, sm.lock_release_step([], [key]))
        assert len(sm.release_waiting(conn, [key], held=True)) == 1
        waiting = threading.Thread(target=lambda: second.append(release_slots([], [key])))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # it waits for this release's commit
    waiting.join(10)
    assert second == [0]
    assert _statuses(tenant_id).count("held") == 2  # of the 3 held, one was sent


def test_a_queue_that_is_not_fair_holds_nothing(
    monkeypatch: pytest.MonkeyPatch, tenant_id: uuid.UUID
) -> None:
    _fair(monkeypatch, 1, queues="some_other_queue")
    assert {j.status for j in enqueue_many([JobRequest(fair_type, {}, tenant_id)] * 4)} == {
        JobStatus.PENDING
    }
    with autocommit() as conn:
        keys = conn.execute(
            text("SELECT DISTINCT share_key FROM content_jobs WHERE tenant_id = :t"),
            {"t": tenant_id},
        ).scalars()
        assert list(keys) == [None]
    _fair(monkeypatch, 1, queues="*")
    assert [j.status for j in enqueue_many([JobRequest(fair_type, {}, tenant_id)] * 2)] == [
        JobStatus.PENDING,
        JobStatus.HELD,
    ]


def test_jobctl_tenants_sets_and_shows_the_weight(tenant_id: uuid.UUID) -> None:
    from click.testing import CliRunner

    from pgjobs.cli.groups import JobsGroup
    from pgjobs.cli.tenant_commands import tenants
    from pgjobs.db.tenants import get_tenant

    slug = get_tenant(tenant_id).slug
    cli = JobsGroup("jobctl", commands=[tenants])
    made = CliRunner().invoke(cli, ["tenants", "set-weight", slug, "3", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output) == {"share_weight": 3}
    shown = CliRunner().invoke(cli, ["tenants", "show", slug])
    assert "weight in fair queues: 3" in shown.output, shown.output
    bad = CliRunner().invoke(cli, ["tenants", "set-weight", slug, "0"])
    assert bad.exit_code != 0 and "weight" in bad.output
    assert share_weight(tenant_id) == 3


# --- real processes ----------------------------------------------------------------------------


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path / "logs") as started:
        yield started


@pytest.fixture
def start_workers(
    procs: Processes, db_env: str, jobs_env: str, server_urls: tuple[str, str]
) -> Callable[[], list[Proc]]:
    """Starts two worker processes of 4 threads and a maintenance process on this test's
    database and namespace; returns the workers."""

    def start() -> list[Proc]:
        env = worker_env(
            database_url=db_env, redis_url=server_urls[1], namespace=jobs_env, **SETTINGS
        )
        env["JOBS_IMPORTS"] = "fair_jobs"
        workers = [procs.worker(env, threads=4), procs.worker(env, threads=4)]
        procs.maintenance(env)
        procs.wait_ready(workers)
        return workers

    return start


def _starts(tenants: list[uuid.UUID]) -> list[tuple[uuid.UUID, float, float]]:
    """(tenant, enqueued, started) by the database clock, per first start, in start order."""
    with autocommit() as conn:
        rows = conn.execute(
            text(
                """
                SELECT j.tenant_id, extract(epoch FROM j.created_at) AS enqueued,
                       extract(epoch FROM min(e.created_at)) AS started
                FROM content_jobs j JOIN job_events e ON e.job_id = j.id
                WHERE j.tenant_id = ANY(:t) AND e.event_type = 'started'
                GROUP BY j.id ORDER BY 3
                """
            ),
            {"t": tenants},
        ).all()
    return [(r.tenant_id, float(r.enqueued), float(r.started)) for r in rows]


def _wait_done(tenants: list[uuid.UUID], n: int, procs: Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with autocommit() as conn:
            done = conn.execute(
                text(
                    "SELECT count(*) FROM content_jobs WHERE tenant_id = ANY(:t)"
                    " AND status = 'succeeded'"
                ),
                {"t": tenants},
            ).scalar_one()
        if done >= n:
            return
        assert time.monotonic() < deadline, f"{done} of {n} done\n{procs.report()}"
        time.sleep(0.2)


def _noisy_neighbour(start_workers: Callable[[], list[Proc]], procs: Processes) -> list[float]:
    """Tenant A enqueues 4,000 jobs at once, then B one every 100 ms for 3 s: B's waits."""
    start_workers()
    a, b = make_tenant(), make_tenant()
    _many(a, 4000)
    for _ in range(30):
        enqueue(fair_type, {"seconds": 0.005}, tenant_id=b)
        time.sleep(0.1)
    _wait_done([a, b], 4030, procs, timeout=180)
    return sorted(started - enqueued for tenant, enqueued, started in _starts([b]))


@pytest.mark.slow
def test_a_backlog_does_not_delay_another_tenant(
    monkeypatch: pytest.MonkeyPatch, start_workers: Callable[[], list[Proc]], procs: Processes
) -> None:
    """The issue's noisy neighbour, smaller: B's enqueue-to-start p99 within 1 s."""
    _fair(monkeypatch, 16)
    waits = _noisy_neighbour(start_workers, procs)
    assert len(waits) == 30
    assert waits[-1] <= 1.0, waits  # 30 samples: the worst is the p99


@pytest.mark.slow
def test_without_fair_shares_the_backlog_delays_another_tenant(
    start_workers: Callable[[], list[Proc]], procs: Processes
) -> None:
    """The same run on a queue that is not fair: B's jobs wait behind A's whole backlog (the
    test above can fail)."""
    waits = _noisy_neighbour(start_workers, procs)
    assert statistics.median(waits) > 1.0, waits


@pytest.mark.slow
def test_weights_three_to_one_start_jobs_three_to_one(
    monkeypatch: pytest.MonkeyPatch, start_workers: Callable[[], list[Proc]], procs: Processes
) -> None:
    """A (weight 3) and B (weight 1) each enqueue 2,500 jobs at once: while both have jobs
    held, A starts three for each of B's, within 10%."""
    _fair(monkeypatch, 32)
    a, b = make_tenant(), make_tenant()
    set_share_weight(a, 3)
    _many(a, 2500)
    _many(b, 2500)
    start_workers()
    _wait_done([a, b], 5000, procs, timeout=240)
    starts = _starts([a, b])
    # while both have a backlog: A's 2,500 last about 3,300 starts; the first 200 are the
    # shares sent at enqueue (A's before B's)
    window = [tenant for tenant, _, _ in starts[200:3000]]
    ratio = window.count(a) / window.count(b)
    assert 2.7 <= ratio <= 3.3, ratio
    for job_id in _held_ids(a)[:20]:
        assert assert_legal_history(types_of(a, job_id)) is JobStatus.SUCCEEDED


@pytest.mark.slow
def test_a_killed_worker_and_an_emptied_redis_lose_no_held_job(
    monkeypatch: pytest.MonkeyPatch,
    start_workers: Callable[[], list[Proc]],
    procs: Processes,
    jobs_env: str,
    redis_client: redis_lib.Redis,
) -> None:
    """kill -9 of a worker running the tenant's jobs, then every key of the namespace deleted
    while most jobs are held: the share comes back when the leases expire, the lost messages
    are re-sent by the relay, and every job runs once to success."""
    _fair(monkeypatch, 8)
    tenant = make_tenant()
    ids = _many(tenant, 300, seconds=0.05)
    workers = start_workers()
    deadline = time.monotonic() + 30
    while _statuses(tenant).count("succeeded") < 20:
        assert time.monotonic() < deadline, procs.report()
        time.sleep(0.05)
    workers[0].kill()
    keys = list(redis_client.scan_iter(match=f"{jobs_env}*", count=1000))
    if keys:
        redis_client.delete(*keys)
    assert "held" in _statuses(tenant)
    _wait_done([tenant], len(ids), procs, timeout=180)
    for job_id in ids:
        assert assert_legal_history(types_of(tenant, job_id)) is JobStatus.SUCCEEDED


def _held_ids(tenant: uuid.UUID) -> list[int]:
    """Jobs of the tenant that were held at enqueue."""
    with autocommit() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT job_id FROM job_events WHERE tenant_id = :t"
                    " AND event_type = 'enqueued' AND data ? 'held' ORDER BY job_id"
                ),
                {"t": tenant},
            ).scalars()
        )
