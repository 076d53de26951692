"""Concurrent standalone enqueues of one process share one write (pgjobs/producer/combine.py).

A tenant row locked by another transaction holds the first call's INSERT (its foreign-key
check waits for the lock), so the calls made meanwhile queue behind it for certain. When the
lock goes, they are written together: one transaction, seen in their rows' ``xmin``. Each
call still gets its own job, event and message; a refusal that one call brings (an unknown
tenant, a quota) is that call's alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from helpers import job_ids_in_redis, make_tenant

from pgjobs import aio
from pgjobs.producer import EnqueuedJob, UnknownTenant, enqueue, flush, get_job, get_job_events
from pgjobs.producer.combine import WAIT_SECONDS, Combiner, Rules
from pgjobs.producer.enqueue import ALONE_UP_TO, _combined
from pgjobs.producer.errors import QuotaExceeded
from pgjobs.producer.quotas import set_quota

pytestmark = pytest.mark.usefixtures("jobs_env")


@pytest.fixture
def combining(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call beyond the writes in flight waits, however few calls there are (the
    process's rule waits only beyond ``ALONE_UP_TO`` calls under way: tested last)."""
    monkeypatch.setattr(_combined.rules, "crowd", 0)


def _payload(n: int) -> dict[str, object]:
    return {"credential_id": str(uuid.uuid4()), "season": 2026, "team": f"team-{n}"}


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@contextmanager
def _tenant_locked(db_url: str, tenant_id: uuid.UUID) -> Iterator[psycopg.Connection[Any]]:
    """The tenant's row locked until the block ends: an INSERT of its jobs waits."""
    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        conn.execute("SELECT 1 FROM tenants WHERE id = %s FOR UPDATE", (tenant_id,))
        yield conn


class _Calls:
    """Enqueues made from their own threads; each outcome kept (a job or an exception)."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.outcomes: dict[str, EnqueuedJob | BaseException] = {}

    def start(self, name: str, tenant_id: uuid.UUID, n: int, **options: Any) -> None:
        def call() -> None:
            try:
                job = enqueue("scheduled_preview", _payload(n), tenant_id=tenant_id, **options)
                self.outcomes[name] = job
            except BaseException as exc:  # kept for the test to look at
                self.outcomes[name] = exc

        thread = threading.Thread(target=call, name=name)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)
            assert not thread.is_alive()

    def job(self, name: str) -> EnqueuedJob:
        outcome = self.outcomes[name]
        assert isinstance(outcome, EnqueuedJob), outcome
        return outcome


def _held_behind_lock(
    db_url: str, tenant_id: uuid.UUID, waiting: int, start_waiting: Callable[[_Calls], None]
) -> _Calls:
    """First calls held by the tenant's lock (as many as the process writes at once: ``first-0``
    and on), then ``start_waiting`` starts ``waiting`` calls that queue behind them; the lock
    goes once they all wait. Returns every call, finished."""
    calls = _Calls()
    with _tenant_locked(db_url, tenant_id):
        for n in range(_combined.rules.writers):
            calls.start(f"first-{n}", tenant_id, -1 - n)
        _wait_for(lambda: _combined._writing == _combined.rules.writers, "the first calls' writes")
        start_waiting(calls)
        _wait_for(lambda: len(_combined._waiting) == waiting, "the calls to queue")
    calls.join()
    return calls


def _xmins(db_url: str, job_ids: list[int]) -> dict[int, str]:
    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        rows = conn.execute(
            "SELECT id, xmin::text FROM content_jobs WHERE id = ANY(%s)", (job_ids,)
        ).fetchall()
    return dict(rows)


@pytest.mark.usefixtures("combining")
def test_calls_made_during_a_write_are_written_together(
    db_env: str, tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    names = [f"waiting-{n}" for n in range(5)]

    def start_waiting(calls: _Calls) -> None:
        for n, name in enumerate(names, start=1):
            calls.start(name, tenant_id, n, idempotency_key=f"key-{n}" if n == 3 else None)

    calls = _held_behind_lock(db_env, tenant_id, len(names), start_waiting)
    firsts = [f"first-{n}" for n in range(_combined.rules.writers)]
    jobs = {name: calls.job(name) for name in [*firsts, *names]}
    ids = [job.id for job in jobs.values()]
    assert len(set(ids)) == len(jobs) and all(job.created for job in jobs.values())

    xmins = _xmins(db_env, ids)
    assert len({xmins[jobs[name].id] for name in names}) == 1  # one transaction for the five
    assert all(xmins[jobs[first].id] != xmins[jobs[names[0]].id] for first in firsts)

    # each its own job: its own row, event and message; the key kept by the job it named
    assert sorted(job_ids_in_redis(redis_client, jobs_env, "content")) == sorted(ids)
    assert flush(timeout=10)
    for n, name in enumerate(names, start=1):
        job = jobs[name]
        stored = get_job(tenant_id, job.id)
        assert stored.status.value == "queued" and stored.payload["team"] == f"team-{n}"
        events = get_job_events(tenant_id, job.id).items
        assert [e.event_type.value for e in events] == ["enqueued"]
    keyed = enqueue("scheduled_preview", _payload(9), tenant_id=tenant_id, idempotency_key="key-3")
    assert not keyed.created and keyed.id == jobs[names[2]].id  # the call made with n = 3


@pytest.mark.usefixtures("combining")
def test_a_refusal_one_call_brings_is_that_calls_alone(
    db_env: str, tenant_id: uuid.UUID, jobs_env: str
) -> None:
    unknown = uuid.uuid4()

    def start_waiting(calls: _Calls) -> None:
        calls.start("a", tenant_id, 1)
        calls.start("unknown", unknown, 2)
        calls.start("b", tenant_id, 3)

    calls = _held_behind_lock(db_env, tenant_id, 3, start_waiting)
    assert isinstance(calls.outcomes["unknown"], UnknownTenant)
    jobs = [calls.job(name) for name in ("first-0", "a", "b")]
    assert len({job.id for job in jobs}) == 3
    for job, team in zip(jobs, ["team--1", "team-1", "team-3"], strict=True):
        assert get_job(tenant_id, job.id).payload["team"] == team
        assert len(get_job_events(tenant_id, job.id).items) == 1


@pytest.mark.usefixtures("combining")
def test_a_quota_is_never_passed_by_calls_written_together(db_env: str, jobs_env: str) -> None:
    tenant_id = make_tenant()
    set_quota(tenant_id, _combined.rules.writers + 2)  # two left after the first calls

    def start_waiting(calls: _Calls) -> None:
        for n in range(1, 5):
            calls.start(f"waiting-{n}", tenant_id, n)

    # the four together would pass it, so each tries alone: two fit
    calls = _held_behind_lock(db_env, tenant_id, 4, start_waiting)
    outcomes = [calls.outcomes[f"waiting-{n}"] for n in range(1, 5)]
    created = [o for o in outcomes if isinstance(o, EnqueuedJob)]
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert all(calls.job(f"first-{n}").created for n in range(_combined.rules.writers))
    assert len(created) == 2 and len(refused) == 2


@pytest.mark.usefixtures("combining")
def test_calls_of_different_actors_are_not_written_together(
    db_env: str, tenant_id: uuid.UUID, jobs_env: str
) -> None:
    def start_waiting(calls: _Calls) -> None:
        for n, actor in enumerate(["alice", "bob", "alice", "bob"], start=1):
            calls.start(f"{actor}-{n}", tenant_id, n, actor=actor)

    calls = _held_behind_lock(db_env, tenant_id, 4, start_waiting)
    names = ["alice-1", "bob-2", "alice-3", "bob-4"]
    jobs = {name: calls.job(name) for name in names}
    xmins = _xmins(db_env, [job.id for job in jobs.values()])
    assert xmins[jobs["alice-1"].id] == xmins[jobs["alice-3"].id]
    assert xmins[jobs["bob-2"].id] == xmins[jobs["bob-4"].id]
    assert xmins[jobs["alice-1"].id] != xmins[jobs["bob-2"].id]
    for name, job in jobs.items():
        (event,) = get_job_events(tenant_id, job.id).items
        assert event.data["actor"] == name.split("-")[0]


def test_an_error_of_a_combined_write_is_every_members() -> None:
    """The combiner alone, on plain functions: a failed write fails each call it held."""
    release = threading.Event()
    writes: list[list[int]] = []

    def write(items: Any) -> list[int]:
        writes.append(list(items))
        if len(writes) == 1:
            release.wait(10)
            return list(items)
        raise RuntimeError("the server went away")

    rules: Rules[int] = Rules(key=lambda _: None, size=lambda _: 1, refusals=())
    combiner: Combiner[int, list[int], int] = Combiner(write, lambda _, written: written, rules)
    outcomes: dict[int, object] = {}

    def call(n: int) -> None:
        try:
            outcomes[n] = combiner(n)
        except RuntimeError as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
    threads[0].start()
    _wait_for(lambda: combiner._writing == 1, "the first write")
    for thread in threads[1:]:
        thread.start()
    _wait_for(lambda: len(combiner._waiting) == 3, "the calls to queue")
    release.set()
    for thread in threads:
        thread.join(10)
    assert outcomes[0] == 0
    assert sorted(writes[1]) == [1, 2, 3]  # the three waiting calls, in one write
    assert all(isinstance(outcomes[n], RuntimeError) for n in (1, 2, 3))
    assert combiner._writing == 0 and not combiner._waiting


def test_a_few_calls_each_write_at_once(db_env: str, tenant_id: uuid.UUID) -> None:
    """Up to ``ALONE_UP_TO`` calls under way, each writes at once (in its own transaction);
    the next one waits for them and is written after."""
    calls = _Calls()
    with _tenant_locked(db_env, tenant_id):
        for n in range(ALONE_UP_TO):
            calls.start(f"alone-{n}", tenant_id, n)
        _wait_for(lambda: _combined._writing == ALONE_UP_TO, "the calls' own writes")
        calls.start("crowded", tenant_id, ALONE_UP_TO)
        _wait_for(lambda: len(_combined._waiting) == 1, "the next call to wait")
    calls.join()
    jobs = [calls.job(f"alone-{n}") for n in range(ALONE_UP_TO)] + [calls.job("crowded")]
    xmins = _xmins(db_env, [job.id for job in jobs])
    assert len(set(xmins.values())) == len(jobs)  # each its own transaction


def _loop_calls(
    db_url: str, tenant_id: uuid.UUID, later: list[uuid.UUID], cancel: int | None = None
) -> list[Any]:
    """``ALONE_UP_TO`` calls of one loop held by the tenant's lock (each writing), then one
    call for each of ``later`` (tenants), which wait; the later call ``cancel`` (an index) is
    cancelled as it waits; the lock goes once they all wait. Every call's outcome, in order
    (payload ``team-<n>``), once the loop's queue is empty again."""
    crowd = ALONE_UP_TO

    def call(n: int, tenant: uuid.UUID) -> asyncio.Task[EnqueuedJob]:
        made = aio.enqueue("scheduled_preview", _payload(n), tenant_id=tenant)
        return asyncio.create_task(made)

    async def until(predicate: Callable[[], bool]) -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    async def scenario() -> list[Any]:
        queue = aio._combined.queue()
        with _tenant_locked(db_url, tenant_id):
            tasks = [call(n, tenant_id) for n in range(crowd)]
            await until(lambda: queue.writing == crowd)  # each writing, held by the lock
            tasks += [call(n, tenant) for n, tenant in enumerate(later, start=crowd)]
            await until(lambda: len(queue.waiting) == len(later))
            if cancel is not None:
                tasks[crowd + cancel].cancel()
                await until(lambda: len(queue.waiting) == len(later) - 1)
        outcomes = list(await asyncio.gather(*tasks, return_exceptions=True))
        await until(lambda: queue.writing == 0 and not queue.waiting and queue.calls == 0)
        return outcomes

    async def whole() -> list[Any]:
        try:
            return await asyncio.wait_for(scenario(), 30)
        finally:
            await aio.aclose()

    return asyncio.run(whole())


def test_coroutines_waiting_together_are_one_transaction(db_env: str, tenant_id: uuid.UUID) -> None:
    """``pgjobs.aio``: beyond ``ALONE_UP_TO`` calls under way in a loop, the calls that wait
    for the loop's writes are written together, each still its own job."""
    jobs = _loop_calls(db_env, tenant_id, [tenant_id] * 3)
    assert all(isinstance(job, EnqueuedJob) for job in jobs)
    xmins = _xmins(db_env, [job.id for job in jobs])
    assert len({xmins[job.id] for job in jobs[ALONE_UP_TO:]}) == 1  # the three waiting
    assert len({xmins[job.id] for job in jobs[:ALONE_UP_TO]}) == ALONE_UP_TO  # each its own
    teams = [get_job(tenant_id, job.id).payload["team"] for job in jobs]
    assert teams == [f"team-{n}" for n in range(len(jobs))]


def test_a_coroutines_refusal_is_its_own(db_env: str, tenant_id: uuid.UUID) -> None:
    outcomes = _loop_calls(db_env, tenant_id, [tenant_id, uuid.uuid4(), tenant_id])
    assert isinstance(outcomes[ALONE_UP_TO + 1], UnknownTenant)
    jobs = [o for o in outcomes if isinstance(o, EnqueuedJob)]
    assert len({job.id for job in jobs}) == ALONE_UP_TO + 2
    for job in jobs:
        assert len(get_job_events(tenant_id, job.id).items) == 1


def test_a_coroutine_cancelled_as_it_waits_leaves_the_rest_to_be_written(
    db_env: str, tenant_id: uuid.UUID
) -> None:
    """The first waiting call would lead the others: cancelled, it leaves the queue, nothing of
    it is written, and the calls behind it are written without it (not stranded)."""
    outcomes = _loop_calls(db_env, tenant_id, [tenant_id] * 3, cancel=0)
    assert isinstance(outcomes[ALONE_UP_TO], asyncio.CancelledError)
    rest = outcomes[ALONE_UP_TO + 1 :]
    assert all(isinstance(job, EnqueuedJob) for job in rest)
    xmins = _xmins(db_env, [job.id for job in rest])
    assert len(set(xmins.values())) == 1  # the two left, written together
    teams = [get_job(tenant_id, job.id).payload["team"] for job in outcomes[:ALONE_UP_TO] + rest]
    assert f"team-{ALONE_UP_TO}" not in teams and len(teams) == ALONE_UP_TO + 2


@pytest.mark.usefixtures("combining")
def test_a_call_never_waits_for_a_write_its_own_transaction_holds_up(
    db_env: str, tenant_id: uuid.UUID
) -> None:
    """This thread's transaction locks a tenant's row; another thread's write waits on it. A
    standalone call this thread makes meanwhile (for another tenant) writes alone once it has
    waited ``WAIT_SECONDS``, instead of waiting for that write (which would never end)."""
    other = make_tenant()
    calls = _Calls()
    with _tenant_locked(db_env, tenant_id):
        calls.start("held up", tenant_id, 0)
        _wait_for(lambda: _combined._writing == 1, "the other thread's write")
        started = time.monotonic()
        job = enqueue("scheduled_preview", _payload(1), tenant_id=other)
        waited = time.monotonic() - started
    calls.join()
    assert job.created and WAIT_SECONDS <= waited < 10
    assert calls.job("held up").created


@pytest.mark.usefixtures("combining")
def test_a_coroutine_never_waits_for_a_write_its_own_transaction_holds_up(
    db_env: str, tenant_id: uuid.UUID
) -> None:
    other = make_tenant()

    async def scenario() -> tuple[EnqueuedJob, EnqueuedJob, float]:
        queue = aio._combined.queue()
        with _tenant_locked(db_env, tenant_id):
            made = aio.enqueue("scheduled_preview", _payload(0), tenant_id=tenant_id)
            held_up = asyncio.create_task(made)
            while queue.writing < 1:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            job = await aio.enqueue("scheduled_preview", _payload(1), tenant_id=other)
            waited = time.monotonic() - started
        return job, await held_up, waited

    async def whole() -> tuple[EnqueuedJob, EnqueuedJob, float]:
        try:
            return await asyncio.wait_for(scenario(), 30)
        finally:
            await aio.aclose()

    job, held_up, waited = asyncio.run(whole())
    assert job.created and held_up.created and WAIT_SECONDS <= waited < 10
