"""Rate limits per key (docs/limits.md) through real worker and maintenance processes.

The measure of a rate is the jobs' ``started`` events, written by the claim with the database
clock the windows are kept by: in no window of ``per`` seconds may more than ``n`` jobs of one
key start, whatever the number of workers and threads, and a backlog starts at close to ``n``
per window. A job over its rate waits without using an attempt (one ``waiting`` event, however
often it is checked); Redis emptied while jobs wait loses none of them.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest
import redis as redis_lib
from helpers import make_tenant
from jobwait import assert_legal_history, status_counts, types_of, wait_succeeded
from processes import Processes, worker_env
from rate_jobs import PER_SECOND, Tick, both_type, rated_type
from sqlalchemy import text

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import JobRequest, enqueue_many
from pgjobs.producer.errors import InvalidPayload
from pgjobs.producer.job_types import JobType, Rate, job_type, unregister
from pgjobs.worker import metrics
from pgjobs.worker.rates import rate_check
from pgjobs.worker.state_writer import limited_round

pytestmark = pytest.mark.usefixtures("jobs_env")

SETTINGS: dict[str, str | float | int] = {
    "lease_seconds": 3.0,
    "heartbeat_seconds": 0.5,
    "broker_heartbeat_timeout_ms": 3000,
    "relay_queued_after_seconds": 3,
    "relay_pending_after_seconds": 2,
    "maintenance_interval_seconds": 0.5,
    "log_level": "INFO",
}


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    """These tests look at every job of their database: a database of their own."""
    return use_fresh_db


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path / "logs") as started:
        yield started


def _start(
    procs: Processes, db_env: str, jobs_env: str, urls: tuple[str, str], workers: int
) -> None:
    env = worker_env(database_url=db_env, redis_url=urls[1], namespace=jobs_env, **SETTINGS)
    env["JOBS_IMPORTS"] = "rate_jobs"
    started = [procs.worker(env, threads=4) for _ in range(workers)]
    procs.maintenance(env)
    procs.wait_ready(started)


def _enqueue(tenant: uuid.UUID, declared: JobType[Tick], accounts: list[str]) -> list[int]:
    requests = [JobRequest(declared, {"account": a}, tenant) for a in accounts]
    return [job.id for job in enqueue_many(requests)]


def _events(tenant: uuid.UUID, kind: str) -> dict[str, list[tuple[int, float]]]:
    """Per account, (job id, epoch seconds) of each ``kind`` event of the tenant's jobs."""
    with autocommit() as conn:
        rows = conn.execute(
            text(
                "SELECT j.payload->>'account', e.job_id, e.created_at FROM job_events e"
                " JOIN content_jobs j ON j.id = e.job_id"
                " WHERE e.tenant_id = :t AND e.event_type = :kind"
            ),
            {"t": tenant, "kind": kind},
        ).all()
    found: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for account, job_id, at in rows:
        assert isinstance(at, datetime)
        found[account].append((job_id, at.timestamp()))
    return found


def _most_in_a_window(times: list[float], per: float = 1.0) -> int:
    """The most starts in any window [t, t + per) of one key."""
    ordered = sorted(times)
    most = end = 0
    for begin, at in enumerate(ordered):
        while end < len(ordered) and ordered[end] < at + per:
            end += 1
        most = max(most, end - begin)
    return most


def _achieved(times: list[float], per: float = 1.0) -> float:
    """Starts per second: the starts over the time from the first to the end of the last's
    window (a backlog of k * n jobs at exactly n per window takes k windows)."""
    return len(times) / (max(times) - min(times) + per)


def test_rate_declaration_and_keys(tenant_id: uuid.UUID) -> None:
    assert Rate(20).key_for("t", "abc", {}) == "t:abc"
    assert Rate(2, per=60, key="payload.a", scope="api").key_for("t", 1, {"a": 5}) == "api:5"
    for bad in (0, True, 1001, 2.5):
        with pytest.raises(ValueError, match="Rate n"):
            Rate(bad)  # type: ignore[arg-type]
    for per in (0, -1, 0.001, 86401, "1"):
        with pytest.raises(ValueError, match="Rate per"):
            Rate(1, per=per)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Rate key"):
        Rate(1, key="account")
    declared = job_type("rate_missing", Tick, queue="rates", rate=Rate(1, key="payload.nope"))
    try:
        with pytest.raises(InvalidPayload, match="rate key"):
            _enqueue(tenant_id, declared, ["a"])
        assert status_counts(tenant_id) == {}
    finally:
        unregister("rate_missing")


def _rated_round(
    tenant: uuid.UUID, messages: dict[int, str]
) -> tuple[list[bool], list[sm.ReleasedJob]]:
    """A worker's claim round for these jobs (job id: message id), rate-checked: which started,
    and which it parked for their rate."""
    requests = [sm.ClaimRequest(i, tenant, m) for i, m in messages.items()]
    with autocommit() as conn:
        assert rate_check(conn, list(messages)) is not None
        done = limited_round(conn, requests, [], lease_seconds=30, worker="t")
    return [c is not None for c in done.claimed], done.parked


def test_the_sweep_resends_a_lost_rate_wait_once_per_grace(tenant_id: uuid.UUID) -> None:
    """A job whose turn passed long ago gets a new message, due now, once: the next pass leaves
    it alone (a pass every tick would replace each message before a long queue delivers it)."""
    declared = job_type("rate_sweep", Tick, queue="rates", rate=Rate(1, per=60))
    try:
        ids = _enqueue(tenant_id, declared, ["a", "b"])
        started, parked = _rated_round(tenant_id, {i: f"m{i}" for i in ids})
        assert started == [True, False] and [p.id for p in parked] == [ids[1]]
        with autocommit() as conn:  # its turn, an hour ago: its message was lost
            conn.execute(
                text("UPDATE content_jobs SET run_at = now() - interval '1 hour' WHERE id = :j"),
                {"j": ids[1]},
            )
            lost = sm.resend_lost_rate_waits(conn, grace_seconds=5, limit=10)
            assert [(j.id, j.due_in_ms) for j in lost] == [(ids[1], 0)]
            assert lost[0].queue_job_id != parked[0].queue_job_id
            assert sm.resend_lost_rate_waits(conn, grace_seconds=5, limit=10) == []
        assert types_of(tenant_id, ids[1]) == [EventType.ENQUEUED, EventType.WAITING]
    finally:
        unregister("rate_sweep")


def test_claim_parks_over_the_rate_once_and_its_message_claims_it_when_due(
    tenant_id: uuid.UUID,
) -> None:
    """The statements alone: three jobs of a key of 2 per 0.5 s claimed in one round: two start,
    one waits with its not-before time and a new message id; an old message does nothing; its
    own message before the window has room parks it again without a second event; after, it
    starts, with no attempt used by the wait."""
    declared = job_type("rate_statement", Tick, queue="rates", rate=Rate(2, per=0.5))
    try:
        ids = _enqueue(tenant_id, declared, ["solo"] * 3)

        def claim(messages: dict[int, str]) -> tuple[list[bool], list[sm.ReleasedJob]]:
            return _rated_round(tenant_id, messages)

        started, parked = claim({i: f"m{i}" for i in ids})
        assert started == [True, True, False]
        assert status_counts(tenant_id) == {"active": 2, "waiting": 1}
        assert [p.id for p in parked] == [ids[2]]
        assert 0 < parked[0].due_in_ms <= 600
        key = f"rate_statement:{tenant_id}"
        with autocommit() as conn:
            waiting = conn.execute(
                text("SELECT data FROM job_events WHERE job_id = :j AND event_type = 'waiting'"),
                {"j": ids[2]},
            ).scalar_one()
            usage = sm.rate_waiting(conn)
        assert {k: waiting[k] for k in ("attempt", "reason", "key", "n", "per")} == {
            "attempt": 0, "reason": "rate", "key": key, "n": 2, "per": 0.5,
        }  # fmt: skip
        assert [(u.key, u.waiting) for u in usage] == [(key, 1)]
        metrics.rates(usage)
        assert metrics.rate_waiting.labels(key)._value.get() == 1

        assert claim({ids[2]: f"m{ids[2]}"}) == ([False], [])  # its old message: nothing
        again, reparked = claim({ids[2]: parked[0].queue_job_id})  # too early: parked again
        assert again == [False] and [p.id for p in reparked] == [ids[2]]
        time.sleep(reparked[0].due_in_ms / 1000 + 0.05)
        assert claim({ids[2]: reparked[0].queue_job_id}) == ([True], [])
        history = types_of(tenant_id, ids[2])
        assert history == [EventType.ENQUEUED, EventType.WAITING, EventType.STARTED]
        assert assert_legal_history(history) is JobStatus.ACTIVE
        with autocommit() as conn:
            attempts = conn.execute(
                text("SELECT attempts FROM content_jobs WHERE id = :j"), {"j": ids[2]}
            ).scalar_one()
        assert attempts == 1
    finally:
        unregister("rate_statement")


def test_at_most_n_starts_per_window_across_workers(
    procs: Processes, db_env: str, jobs_env: str, server_urls: tuple[str, str]
) -> None:
    """Two worker processes of 4 threads, two keys of 5 starts per second, 30 jobs each: no
    window of a second holds more than 5 starts of a key, the backlog runs at close to 5 per
    second, each job waits at most once (one event) and uses one attempt. A type with both a
    concurrency limit of 1 and a rate of 2 per second keeps both."""
    _start(procs, db_env, jobs_env, server_urls, workers=2)
    tenant = make_tenant()
    ids = _enqueue(tenant, rated_type, [f"acct-{i % 2}" for i in range(60)])
    ids += _enqueue(tenant, both_type, ["both"] * 6)
    wait_succeeded(tenant, len(ids), procs.report, timeout=120)

    starts = {k: [at for _, at in v] for k, v in _events(tenant, "started").items()}
    assert sorted(starts) == ["acct-0", "acct-1", "both"]
    for account in ("acct-0", "acct-1"):
        assert _most_in_a_window(starts[account]) == PER_SECOND, starts[account]
        assert _achieved(starts[account]) >= 0.85 * PER_SECOND, starts[account]
    assert _most_in_a_window(starts["both"]) <= 2
    ends = sorted(at for _, at in _events(tenant, "completed")["both"])
    begun = sorted(starts["both"])
    assert all(e <= s for e, s in zip(ends, begun[1:], strict=False))  # one at a time

    waits: dict[int, int] = defaultdict(int)
    for account, events in _events(tenant, "waiting").items():
        for job_id, _ in events:
            waits[job_id] += account != "both"
    assert len(waits) >= 40 and set(waits.values()) - {0} == {1}  # waited, recorded once
    with autocommit() as conn:
        attempts = conn.execute(
            text("SELECT DISTINCT attempts FROM content_jobs WHERE tenant_id = :t"), {"t": tenant}
        ).scalars()
        assert set(attempts) == {1}
    for job_id in ids:
        history = types_of(tenant, job_id)
        assert assert_legal_history(history) is JobStatus.SUCCEEDED
        # a job waiting for its slot, then for its rate, has a `waiting` event per wait
        assert (EventType.WAITING, EventType.WAITING) not in pairwise(history), history


def test_redis_emptied_while_jobs_wait_for_their_rate_loses_nothing(
    procs: Processes,
    db_env: str,
    jobs_env: str,
    server_urls: tuple[str, str],
    redis_client: redis_lib.Redis,
) -> None:
    """Every key of this test's namespace deleted while most jobs wait for their rate (their
    delayed messages are lost with it): the maintenance sweep sends them new ones once they are
    overdue; all run, and the rate still holds."""
    _start(procs, db_env, jobs_env, server_urls, workers=1)
    tenant = make_tenant()
    ids = _enqueue(tenant, rated_type, ["flushed"] * 20)
    deadline = time.monotonic() + 30
    while status_counts(tenant).get("waiting", 0) < 10:
        assert time.monotonic() < deadline, procs.report()
        time.sleep(0.02)
    keys = list(redis_client.scan_iter(match=f"{jobs_env}*", count=1000))
    if keys:
        redis_client.delete(*keys)
    wait_succeeded(tenant, len(ids), procs.report, timeout=120)
    starts = [at for _, at in _events(tenant, "started")["flushed"]]
    assert _most_in_a_window(starts) <= PER_SECOND
    for job_id in ids:
        assert assert_legal_history(types_of(tenant, job_id)) is JobStatus.SUCCEEDED
