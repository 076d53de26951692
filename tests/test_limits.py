"""Concurrency limits per key (docs/limits.md) through real worker and maintenance processes.

The measure of a limit is the handler runs themselves (tests/limit_jobs.py records each run's
start and end): at no instant may more than ``MAX_PER_KEY`` runs of one key overlap, whatever
the number of workers and threads; a job over its limit waits without using an attempt; a
worker killed with -9 while holding slots gives them back when its leases expire; Redis
emptied while jobs wait loses none of them.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from helpers import make_tenant
from jobwait import assert_legal_history, status_counts, types_of, wait_succeeded
from limit_jobs import MAX_PER_KEY, Sleep, create_runs_table, limited_type
from processes import Processes, worker_env
from sqlalchemy import text

from pgjobs.db.engine import autocommit
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import JobRequest, enqueue_many, flush
from pgjobs.producer.errors import InvalidPayload
from pgjobs.producer.job_types import Limit

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
    """These tests look at every job and run of their database: a database of their own."""
    with autocommit() as conn:
        create_runs_table(conn)
    return use_fresh_db


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """This test's processes, every group killed at teardown."""
    with Processes(tmp_path / "logs") as started:
        yield started


def _env(db_env: str, jobs_env: str, server_urls: tuple[str, str]) -> dict[str, str]:
    env = worker_env(database_url=db_env, redis_url=server_urls[1], namespace=jobs_env, **SETTINGS)
    env["JOBS_IMPORTS"] = "limit_jobs"
    return env


def _enqueue(tenant: uuid.UUID, accounts: list[str], seconds: float) -> list[int]:
    requests = [
        JobRequest(limited_type, {"account": a, "seconds": seconds}, tenant) for a in accounts
    ]
    return [job.id for job in enqueue_many(requests)]


def _max_overlap() -> dict[str, int]:
    """Per key, the most handler runs that were running at the same instant."""
    with autocommit() as conn:
        runs = conn.execute(text("SELECT key, started, ended FROM limit_runs")).all()
    edges: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for key, started, ended in runs:
        edges[key] += [(started, 1), (ended, -1)]
    most: dict[str, int] = {}
    for key, points in edges.items():
        running = top = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start
            running += step
            top = max(top, running)
        most[key] = top
    return most


def _waiting_events(tenant: uuid.UUID) -> int:
    with autocommit() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM job_events WHERE tenant_id = :t"
                    " AND event_type = 'waiting'"
                ),
                {"t": tenant},
            ).scalar_one()
        )


def _attempts(tenant: uuid.UUID) -> set[int]:
    with autocommit() as conn:
        rows = conn.execute(
            text("SELECT DISTINCT attempts FROM content_jobs WHERE tenant_id = :t"), {"t": tenant}
        )
        return set(rows.scalars())


def test_limit_declaration_and_keys() -> None:
    assert Limit(3, "tenant").key_for("t", "abc", {}) == "t:abc"
    assert Limit(3, "job_type", scope="shared").key_for("t", "abc", {}) == "shared:t"
    assert Limit(1, "payload.a.b").key_for("t", 1, {"a": {"b": 7}}) == "t:7"
    assert Limit(1, lambda p: p["x"].upper()).key_for("t", 1, {"x": "k"}) == "t:K"
    for bad in (0, -1, True, 10_001, 1.5):
        with pytest.raises(ValueError, match="max"):
            Limit(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        Limit(1, "credential_id")
    with pytest.raises(ValueError, match=r"no 'a\.c'"):
        Limit(1, "payload.a.c").key_for("t", 1, {"a": {"b": 7}})


def test_missing_key_field_refuses_the_job_and_writes_nothing(tenant_id: uuid.UUID) -> None:
    from pgjobs.producer import enqueue
    from pgjobs.producer.job_types import job_type, unregister

    declared = job_type(
        "limit_missing_field", Sleep, queue="limits", concurrency=Limit(1, "payload.nope")
    )
    try:
        with pytest.raises(InvalidPayload, match="concurrency key"):
            enqueue(declared, {"account": "a"}, tenant_id=tenant_id)
        assert status_counts(tenant_id) == {}
    finally:
        unregister("limit_missing_field")


def test_at_most_n_run_per_key_across_workers(
    procs: Processes, db_env: str, jobs_env: str, server_urls: tuple[str, str]
) -> None:
    """Two worker processes of 4 threads (8 runs could overlap) and 3 keys of 2 slots each."""
    env = _env(db_env, jobs_env, server_urls)
    workers = [procs.worker(env, threads=4), procs.worker(env, threads=4)]
    procs.maintenance(env)
    procs.wait_ready(workers)
    tenant = make_tenant()
    accounts = [f"acct-{i % 3}" for i in range(36)]
    ids = _enqueue(tenant, accounts, seconds=0.3)
    wait_succeeded(tenant, len(ids), procs.report, timeout=120)

    overlap = _max_overlap()
    assert set(overlap) == {"acct-0", "acct-1", "acct-2"}
    assert max(overlap.values()) <= MAX_PER_KEY, overlap
    assert max(overlap.values()) == MAX_PER_KEY, overlap  # the slots were used, not just one
    assert _waiting_events(tenant) > 0  # jobs did wait (8 threads for 6 slots)
    assert _attempts(tenant) == {1}  # waiting used no attempt
    for job_id in ids:
        assert assert_legal_history(types_of(tenant, job_id)) is JobStatus.SUCCEEDED
    # one `waiting` event per time a job was parked, each followed by its re-send
    for job_id in ids:
        history = types_of(tenant, job_id)
        for i, event in enumerate(history):
            if event is EventType.WAITING:
                assert history[i + 1] in (EventType.ENQUEUED, EventType.CANCELLED), history


def test_worker_killed_holding_slots_gives_them_back(
    procs: Processes, db_env: str, jobs_env: str, server_urls: tuple[str, str]
) -> None:
    """kill -9 of the only worker while it holds both slots of a key: after the leases expire
    another worker runs every job, and never more than the limit at once."""
    env = _env(db_env, jobs_env, server_urls)
    first = procs.worker(env, threads=4)
    procs.wait_ready([first])
    tenant = make_tenant()
    ids = _enqueue(tenant, ["held"] * 8, seconds=1.5)
    deadline = time.monotonic() + 30
    while status_counts(tenant).get("active", 0) < MAX_PER_KEY:
        assert time.monotonic() < deadline, procs.report()
        time.sleep(0.05)
    first.kill()
    assert status_counts(tenant).get("succeeded", 0) == 0
    second = procs.worker(env, threads=4)
    procs.maintenance(env)
    procs.wait_ready([second])
    wait_succeeded(tenant, len(ids), procs.report, timeout=120)
    assert _max_overlap()["held"] <= MAX_PER_KEY
    for job_id in ids:
        assert assert_legal_history(types_of(tenant, job_id)) is JobStatus.SUCCEEDED


def test_redis_emptied_while_jobs_wait_loses_nothing(
    procs: Processes,
    db_env: str,
    jobs_env: str,
    server_urls: tuple[str, str],
    redis_client: redis_lib.Redis,
) -> None:
    """Every key of this test's namespace deleted while most jobs wait for a slot: the waiting
    ones are in PostgreSQL only, the queued ones are re-sent by the relay; all run, within
    the limit."""
    env = _env(db_env, jobs_env, server_urls)
    worker = procs.worker(env, threads=4)
    procs.maintenance(env)
    procs.wait_ready([worker])
    tenant = make_tenant()
    ids = _enqueue(tenant, [f"k{i % 2}" for i in range(16)], seconds=0.5)
    deadline = time.monotonic() + 30
    while status_counts(tenant).get("waiting", 0) == 0:
        assert time.monotonic() < deadline, procs.report()
        time.sleep(0.02)
    keys = list(redis_client.scan_iter(match=f"{jobs_env}*", count=1000))
    if keys:
        redis_client.delete(*keys)
    wait_succeeded(tenant, len(ids), procs.report, timeout=120)
    assert max(_max_overlap().values()) <= MAX_PER_KEY
    for job_id in ids:
        assert assert_legal_history(types_of(tenant, job_id)) is JobStatus.SUCCEEDED


def test_claim_parks_over_the_limit_and_a_freed_slot_releases_one(tenant_id: uuid.UUID) -> None:
    """The statements alone: three jobs of one key (2 slots) claimed in one limited round, two
    claimed and one parked; usage says so; completing one releases the waiting one, once."""
    from pgjobs.db.jobs import state_machine as sm
    from pgjobs.worker import metrics
    from pgjobs.worker.state_writer import limited_round

    ids = _enqueue(tenant_id, ["solo"] * 3, seconds=0)
    requests = [sm.ClaimRequest(i, tenant_id, f"m{i}") for i in ids]
    with autocommit() as conn:
        claimed = limited_round(conn, requests, [], lease_seconds=30, worker="t").claimed
    assert [c is not None for c in claimed] == [True, True, False]
    assert status_counts(tenant_id) == {"active": 2, "waiting": 1}
    with autocommit() as conn:
        usage = {u.key: u for u in sm.slot_usage(conn)}
        assert sm.release_waiting(conn, ["limit_sleep:solo"]) == []  # no slot free yet
    assert (usage["limit_sleep:solo"].in_use, usage["limit_sleep:solo"].waiting) == (2, 1)
    metrics.limits(list(usage.values()))
    assert metrics.limit_waiting.labels("limit_sleep:solo")._value.get() == 1

    first = claimed[0]
    assert first is not None and first.concurrency_key == "limit_sleep:solo"
    with autocommit() as conn:
        assert sm.complete_many(conn, [sm.Completion(first.id, 1, "null", 1.0)]) == [True]
        released = sm.release_waiting(conn, ["limit_sleep:solo"])
        assert [r.id for r in released] == [ids[2]]
        assert sm.release_waiting(conn, ["limit_sleep:solo"]) == []  # it is on its way
    history = types_of(tenant_id, ids[2])
    assert history == [EventType.ENQUEUED, EventType.WAITING, EventType.ENQUEUED]
    assert assert_legal_history(history) is JobStatus.QUEUED
    with autocommit() as conn:
        waiting = conn.execute(
            text("SELECT data FROM job_events WHERE job_id = :j AND event_type = 'waiting'"),
            {"j": ids[2]},
        ).scalar_one()
    assert waiting == {"attempt": 0, "reason": "concurrency", "key": "limit_sleep:solo", "max": 2}


def test_a_round_waits_for_a_round_in_flight_on_its_key_and_sees_its_claims(
    tenant_id: uuid.UUID,
) -> None:
    """The locks make limited rounds exact: a round whose key another round holds waits, and
    its claim then sees that round's claims (without the lock it would see none and run a
    third job of a key of 2)."""
    import threading

    from pgjobs.db.engine import transaction
    from pgjobs.db.jobs import state_machine as sm
    from pgjobs.db.statements import execute_step
    from pgjobs.worker.state_writer import LimitedRound, limited_round

    ids = _enqueue(tenant_id, ["solo"] * 3, seconds=0)
    requests = [sm.ClaimRequest(i, tenant_id, f"m{i}") for i in ids]
    answer: list[LimitedRound] = []

    def third_round() -> None:
        with autocommit() as conn:
            answer.append(limited_round(conn, requests[2:], [], lease_seconds=30, worker="b"))

    with transaction() as conn:  # a round in flight: its locks taken, its claims not committed
        for step in (
            sm.lock_keys_step(ids[:2]),
            sm.claim_round_step(requests[:2], [], lease_seconds=30, worker="a", limited=True),
        ):
            execute_step(conn, step)
        other = threading.Thread(target=third_round)
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive(), "the round did not wait for the key's lock"
    other.join(timeout=10)
    assert [c is None for c in answer[0].claimed] == [True]
    assert status_counts(tenant_id) == {"active": 2, "waiting": 1}


def test_a_claim_made_ahead_leaves_a_full_key_alone_and_a_completion_says_when_a_slot_frees(
    tenant_id: uuid.UUID,
) -> None:
    """A claim made ahead (when messages are fetched) neither claims nor parks a job whose key
    is full: its thread claims it later. A claim on a thread parks it, and the round names its
    key (to release once committed). A completion frees a slot for a waiting job only when the
    key's jobs in flight, queued ones included, leave room."""
    from pgjobs.db.jobs import state_machine as sm
    from pgjobs.worker.state_writer import limited_round

    key = "limit_sleep:solo"
    ids = _enqueue(tenant_id, ["solo"] * 4, seconds=0)
    flush()  # marked sent: queued

    def request(i: int, *, ahead: bool) -> sm.ClaimRequest:
        return sm.ClaimRequest(ids[i], tenant_id, f"m{ids[i]}", ahead=ahead)

    def round_of(*requests: sm.ClaimRequest, done: tuple[sm.ClaimedJob, ...] = ()) -> Any:
        completions = [sm.Completion(job.id, job.attempt, "null", 1.0) for job in done]
        with autocommit() as conn:
            return limited_round(conn, requests, completions, lease_seconds=30, worker="t")

    ahead = round_of(*(request(i, ahead=True) for i in range(4)))
    assert [c is not None for c in ahead.claimed] == [True, True, False, False]
    assert status_counts(tenant_id) == {"active": 2, "queued": 2}
    assert ahead.parked_keys == []
    assert types_of(tenant_id, ids[2]) == [EventType.ENQUEUED]  # left alone: no event

    at_thread = round_of(request(2, ahead=False))
    assert at_thread.claimed == [None]
    assert at_thread.parked_keys == [key]
    assert status_counts(tenant_id) == {"active": 2, "queued": 1, "waiting": 1}

    first, second = (job for job in ahead.claimed if job is not None)
    # one slot frees, but the queued job (on its way) takes it: nothing to release
    assert round_of(done=(first,)).answers.frees == [False]
    last = round_of(request(3, ahead=False))
    assert last.claimed[0] is not None
    # the second frees a slot that nothing in flight takes: the waiting job's
    assert round_of(done=(second,)).answers.frees == [True]
    with autocommit() as conn:
        assert [r.id for r in sm.release_waiting(conn, [key])] == [ids[2]]
        # nothing waits any more: the last completion frees nothing to release
        assert sm.complete_round(conn, [sm.Completion(ids[3], 1, "null", 1.0)]) == ([True], [False])


def test_a_job_left_unclaimed_ahead_is_claimed_in_the_next_fetchs_round(
    tenant_id: uuid.UUID,
) -> None:
    """Claims made ahead leave a job whose key is full in hand, unclaimed; once a slot frees,
    the round of the next fetch claims it, so its thread finds it claimed and it never waits."""
    from dramatiq import Message

    from pgjobs.db.jobs import state_machine as sm
    from pgjobs.worker.claim_ahead import ClaimAhead, NotClaimed
    from pgjobs.worker.leases import LeaseKeeper
    from pgjobs.worker.state_writer import StateWriter

    ids = _enqueue(tenant_id, ["solo"] * 3, seconds=0)
    flush()
    writer = StateWriter(worker="t")
    keeper = LeaseKeeper(lease_seconds=30, heartbeat_seconds=10, grace=1)
    ahead = ClaimAhead(lambda: writer, lambda: keeper)
    messages = [
        Message("q", "run_job", (i, str(tenant_id)), {}, {}, message_id=f"m{i}") for i in ids
    ]
    ahead.claim_fetched(messages)
    assert status_counts(tenant_id) == {"active": 2, "queued": 1}
    first = ahead.take(f"m{ids[0]}")
    assert isinstance(first, sm.ClaimedJob)
    with autocommit() as conn:
        assert sm.complete_many(conn, [sm.Completion(first.id, first.attempt, "1", 1.0)])
    ahead.claim_fetched([])  # a fetch that found nothing new: the one in hand rides along
    third = ahead.take(f"m{ids[2]}")
    assert isinstance(third, sm.ClaimedJob) and third.id == ids[2]
    assert types_of(tenant_id, ids[2]) == [EventType.ENQUEUED, EventType.STARTED]
    assert ahead.take("never fetched") is NotClaimed.NOT_CLAIMED
    second = ahead.take(f"m{ids[1]}")
    assert isinstance(second, sm.ClaimedJob)
    assert keeper._held == {}  # every claim taken: none held for a thread any more
