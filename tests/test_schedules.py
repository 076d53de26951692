"""Schedules against real PostgreSQL and Redis: the API, firing through the enqueue path, each
misfire policy with the clock moved (``fire_due(now=...)``, or ``next_run_at`` set ten minutes
back), concurrent passes, a pass that dies between its writes, bad input.

Every test has a database of its own: a pass fires every tenant's due schedules.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import make_tenant
from hostile import PROPERTY, Arguments, call_checked, garbage, hostile_text, non_uuids, numbers
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import text

from pgjobs import schedules
from pgjobs.db.engine import transaction
from pgjobs.db.errors import JobsError, UnknownTenant
from pgjobs.db.models import EventType, MisfirePolicy, ScheduleStatus
from pgjobs.producer import get_job_events, job_type, list_jobs
from pgjobs.producer.errors import InvalidOption, InvalidPayload, ProducerError, UnknownJobType
from pgjobs.schedules import statements as schedule_statements
from pgjobs.schedules.errors import (
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotActive,
    ScheduleNotFound,
)
from pgjobs.worker.scheduler import fire_due

pytestmark = pytest.mark.usefixtures("jobs_env")


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db


class Report(BaseModel):
    kind: str
    copies: int = 1


report = job_type("sched_report", Report, queue="reports")

TABLES = ("job_schedules", "content_jobs", "job_events")
NOW = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def wide_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misfire grace of two hours: these tests fire slots minutes late on purpose."""
    from pgjobs.settings import get_settings

    monkeypatch.setenv("JOBS_SCHEDULE_MISFIRE_GRACE_SECONDS", "7200")
    get_settings.cache_clear()


def counts() -> tuple[int, ...]:
    joined = ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES)
    with transaction() as conn:
        return tuple(conn.execute(text(f"SELECT {joined}")).one())


def set_next_run(schedule_id: uuid.UUID, moment: datetime) -> None:
    """Test setup: the clock moved (maintenance was down since ``moment``)."""
    with transaction() as conn:
        conn.execute(
            text("UPDATE job_schedules SET next_run_at = :m WHERE id = :id"),
            {"m": moment, "id": schedule_id},
        )


def db_now() -> datetime:
    with transaction() as conn:
        return schedule_statements.clock(conn)


def slots_fired(tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> list[datetime]:
    """The slot of every job of the schedule, from the jobs' keys, in order."""
    found = []
    for job in list_jobs(tenant_id, limit=500, order="oldest").items:
        ref = schedules.parse_key(job.idempotency_key)
        if ref is not None and ref.schedule_id == schedule_id and ref.slot is not None:
            found.append(ref.slot)
    return sorted(found)


def minute(hour: int, m: int) -> datetime:
    return datetime(2030, 1, 1, hour, m, tzinfo=UTC)


# --- the API -------------------------------------------------------------------------------------


def test_create_read_list_and_change(tenant_id: uuid.UUID) -> None:
    made = schedules.create(
        tenant_id, "nightly", report, cron="30 2 * * *", tz="Europe/Berlin", payload={"kind": "n"}
    )
    assert made.status is ScheduleStatus.ACTIVE and made.declared is False
    assert made.payload == {"kind": "n", "copies": 1}  # as the model writes it
    assert made.next_run_at is not None and made.next_run_at > db_now()
    assert schedules.get(tenant_id, made.id) == made
    assert schedules.get_by_name(tenant_id, "nightly") == made
    every = schedules.create(tenant_id, "often", "sched_report", every=10, payload={"kind": "o"})
    assert [s.name for s in schedules.list(tenant_id).items] == ["nightly", "often"]
    assert schedules.upcoming(tenant_id, every.id, 3) == [
        every.next_run_at + timedelta(seconds=10 * i) for i in range(3)
    ]

    changed = schedules.update(tenant_id, every.id, cron="@hourly", payload={"kind": "h"})
    assert changed.cron == "@hourly" and changed.interval_seconds is None
    assert changed.next_run_at is not None and changed.next_run_at.minute == 0
    assert changed.payload == {"kind": "h", "copies": 1}
    renamed = schedules.update(tenant_id, every.id, name="hourly", jitter=5)
    assert renamed.name == "hourly" and renamed.next_run_at == changed.next_run_at
    caught = schedules.update(tenant_id, every.id, misfire="catch_up", catch_up_limit=4)
    assert caught.misfire_policy is MisfirePolicy.CATCH_UP and caught.catch_up_limit == 4
    back = schedules.update(tenant_id, every.id, misfire="skip")
    assert back.catch_up_limit is None

    paused = schedules.pause(tenant_id, made.id)
    assert paused.status is ScheduleStatus.PAUSED and paused.next_run_at is None
    assert schedules.pause(tenant_id, made.id) == paused  # idempotent
    assert len(schedules.upcoming(tenant_id, made.id, 2)) == 2  # what a resume would fire
    archived = schedules.archive(tenant_id, made.id)
    assert archived.status is ScheduleStatus.ARCHIVED
    assert [s.name for s in schedules.list(tenant_id).items] == ["hourly"]
    assert [s.name for s in schedules.list(tenant_id, status="archived").items] == ["nightly"]
    with pytest.raises(ScheduleNotActive):
        schedules.pause(tenant_id, made.id)
    resumed = schedules.resume(tenant_id, made.id)
    assert resumed.status is ScheduleStatus.ACTIVE and resumed.next_run_at is not None


def test_list_pages_by_name(tenant_id: uuid.UUID) -> None:
    for n in range(7):
        schedules.create(tenant_id, f"s{n}", report, every=60, payload={"kind": "x"})
    names, cursor = [], None
    while True:
        page = schedules.list(tenant_id, limit=3, cursor=cursor)
        names += [s.name for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert names == [f"s{n}" for n in range(7)]
    for forged in ("bjE6", "!!!", "djE6MQ", "x" * 300):
        with pytest.raises(InvalidOption):
            schedules.list(tenant_id, cursor=forged)


def test_run_now_is_one_more_job_through_the_enqueue_path(tenant_id: uuid.UUID) -> None:
    made = schedules.create(tenant_id, "r", report, cron="@daily", payload={"kind": "r"})
    job = schedules.run_now(tenant_id, made.id)
    again = schedules.run_now(tenant_id, made.id)
    assert job.created and again.created and job.id != again.id
    ref = schedules.parse_key(list_jobs(tenant_id, limit=1).items[0].idempotency_key)
    assert ref is not None and ref.schedule_id == made.id and ref.slot is None
    after = schedules.get(tenant_id, made.id)
    assert after.last_job_id == again.id and after.next_run_at == made.next_run_at


# --- firing --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("wide_grace")
def test_each_due_slot_becomes_one_job_with_its_key(tenant_id: uuid.UUID) -> None:
    made = schedules.create(tenant_id, "m", report, cron="* * * * *", payload={"kind": "m"})
    set_next_run(made.id, minute(11, 58))
    result = fire_due(now=NOW)
    assert (result.jobs, result.schedules, result.misfired) == (3, 1, 0)
    assert slots_fired(tenant_id, made.id) == [minute(11, 58), minute(11, 59), minute(12, 0)]

    key = schedules.slot_key(made.id, minute(11, 59))
    (job,) = list_jobs(tenant_id, idempotency_key=key).items
    assert job.type == "sched_report" and job.payload == {"kind": "m", "copies": 1}
    assert job.run_at == minute(11, 59)
    (enqueued,) = get_job_events(tenant_id, job.id).items
    assert enqueued.event_type is EventType.ENQUEUED
    assert enqueued.data["idempotency_key"] == key  # the event records schedule and slot

    after = schedules.get(tenant_id, made.id)
    assert after.next_run_at == minute(12, 1) and after.last_run_at == minute(12, 0)
    assert fire_due(now=NOW).jobs == 0  # nothing is due twice
    assert fire_due(now=NOW + timedelta(seconds=30)).jobs == 1


def test_jitter_delays_the_job_not_the_slot(tenant_id: uuid.UUID) -> None:
    made = schedules.create(
        tenant_id, "j", report, cron="* * * * *", payload={"kind": "j"}, jitter=30
    )
    set_next_run(made.id, minute(12, 0))
    fire_due(now=NOW)
    (job,) = list_jobs(tenant_id).items
    assert schedules.parse_key(job.idempotency_key).slot == minute(12, 0)  # type: ignore[union-attr]
    assert minute(12, 0) <= job.run_at < minute(12, 0) + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("policy", "limit", "expected"),
    [
        ("skip", None, [minute(12, 0)]),
        ("run_once", None, [minute(12, 0)]),
        ("catch_up", 3, [minute(11, 57), minute(11, 58), minute(11, 59), minute(12, 0)]),
        ("catch_up", 100, [minute(11, m) for m in range(50, 60)] + [minute(12, 0)]),
    ],
)
def test_maintenance_down_ten_minutes_each_policy(
    tenant_id: uuid.UUID, policy: str, limit: int | None, expected: list[datetime]
) -> None:
    """Every minute, last fired at 11:49, the scheduler back at 12:00:30 (grace 60 s)."""
    made = schedules.create(
        tenant_id,
        "p",
        report,
        cron="* * * * *",
        payload={"kind": "p"},
        misfire=policy,
        catch_up_limit=limit,
    )
    set_next_run(made.id, minute(11, 50))
    result = fire_due(now=NOW)
    assert result.misfired == 1
    assert slots_fired(tenant_id, made.id) == expected
    assert schedules.get(tenant_id, made.id).next_run_at == minute(12, 1)


def test_maintenance_down_ten_minutes_by_the_database_clock(tenant_id: uuid.UUID) -> None:
    """The same without a given clock: next_run_at ten minutes back, the pass uses now()."""
    policies = {"skip": None, "run_once": None, "catch_up": 2}
    made = {
        p: schedules.create(
            tenant_id, p.replace("_", "-"), report, every=60, payload={"kind": p},
            misfire=p, catch_up_limit=limit,
        )
        for p, limit in policies.items()
    }  # fmt: skip
    ten_ago = db_now() - timedelta(minutes=10)
    for schedule in made.values():
        set_next_run(schedule.id, ten_ago.replace(second=0, microsecond=0))
    result = fire_due()
    assert result.misfired == 3
    fired = {p: slots_fired(tenant_id, s.id) for p, s in made.items()}
    late = {p: [db_now() - s for s in slots] for p, slots in fired.items()}
    grace = timedelta(seconds=60)
    assert all(d <= grace + timedelta(seconds=5) for d in late["skip"])  # on time only
    assert len(fired["run_once"]) == 1
    missed = [d for d in late["catch_up"] if d > grace]
    assert len(missed) == 2  # the latest two missed slots, and any on time
    assert fired["catch_up"][-len(fired["skip"]) :] == fired["skip"]


@pytest.mark.usefixtures("wide_grace")
def test_a_daily_slot_that_happens_twice_fires_once(tenant_id: uuid.UUID) -> None:
    made = schedules.create(
        tenant_id, "d", report, cron="30 2 * * *", tz="Europe/Berlin", payload={"kind": "d"}
    )
    set_next_run(made.id, datetime(2026, 10, 24, 0, 30, tzinfo=UTC))
    for hour in range(24, 72):  # a pass every hour over the autumn change
        fire_due(now=datetime(2026, 10, 23, tzinfo=UTC) + timedelta(hours=hour, minutes=40))
    assert slots_fired(tenant_id, made.id) == [
        datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST, the first of the two
    ]


def test_concurrent_passes_fire_each_slot_once(tenant_id: uuid.UUID) -> None:
    made = [
        schedules.create(tenant_id, f"c{n}", report, every=1, payload={"kind": "c"},
                         misfire="catch_up", catch_up_limit=1000)
        for n in range(20)
    ]  # fmt: skip
    for schedule in made:
        set_next_run(schedule.id, NOW - timedelta(minutes=10))
    errors: list[BaseException] = []

    def passes() -> None:
        try:
            for step in range(0, 8):
                fire_due(now=NOW + timedelta(seconds=step * 15), batch_size=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=passes) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for schedule in made:
        fired = slots_fired_all(tenant_id, schedule.id)
        per_slot = Counter(fired)
        assert set(per_slot.values()) == {1}
        expected_count = 10 * 60 + 7 * 15 + 1
        assert len(fired) == expected_count  # every slot from 11:50:30 to 12:02:15


def slots_fired_all(tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> list[datetime]:
    prefix = f"schedule:{schedule_id}:"
    with transaction() as conn:
        keys = conn.execute(
            text(
                "SELECT idempotency_key FROM content_jobs "
                "WHERE tenant_id = :t AND idempotency_key LIKE :p"
            ),
            {"t": tenant_id, "p": prefix + "%"},
        ).scalars()
        return [schedules.parse_key(k).slot for k in keys]  # type: ignore[union-attr,misc]


@pytest.mark.usefixtures("wide_grace")
def test_a_pass_that_dies_between_its_writes_leaves_nothing(
    tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = schedules.create(tenant_id, "k", report, cron="* * * * *", payload={"kind": "k"})
    set_next_run(made.id, minute(11, 59))

    def die(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed after the jobs were written")

    monkeypatch.setattr(schedule_statements, "advance", die)
    before = counts()
    with pytest.raises(RuntimeError):
        fire_due(now=NOW)
    assert counts() == before  # the jobs rolled back with the advance
    monkeypatch.undo()
    assert fire_due(now=NOW).jobs == 2
    assert slots_fired(tenant_id, made.id) == [minute(11, 59), minute(12, 0)]


@pytest.mark.usefixtures("wide_grace")
def test_a_rewound_schedule_cannot_fire_a_slot_twice(tenant_id: uuid.UUID) -> None:
    made = schedules.create(tenant_id, "w", report, cron="* * * * *", payload={"kind": "w"})
    set_next_run(made.id, minute(11, 59))
    fire_due(now=NOW)
    set_next_run(made.id, minute(11, 59))  # as if something rewound it
    result = fire_due(now=NOW)
    assert result.jobs == 0 and result.schedules == 1
    assert slots_fired(tenant_id, made.id) == [minute(11, 59), minute(12, 0)]


def test_unfireable_schedules_wait_and_the_others_fire(tenant_id: uuid.UUID) -> None:
    class Gone(BaseModel):
        n: int = 0

    gone = job_type("sched_gone", Gone)
    lost = schedules.create(tenant_id, "lost", gone, cron="* * * * *")
    fine = schedules.create(tenant_id, "fine", report, cron="* * * * *", payload={"kind": "f"})
    for schedule in (lost, fine):
        set_next_run(schedule.id, minute(12, 0))
    from pgjobs.producer.job_types import unregister

    unregister("sched_gone")  # this process no longer knows the type
    try:
        result = fire_due(now=NOW, batch_size=1)
    finally:
        job_type("sched_gone", Gone)
    assert (result.jobs, result.unfireable) == (1, 1)
    assert schedules.get(tenant_id, lost.id).next_run_at == minute(12, 0)  # left due
    assert fire_due(now=NOW).jobs == 1  # known again: it fires


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"cron": "61 * * * *"}, InvalidSchedule, "cron"),
        ({"cron": "@sometimes"}, InvalidSchedule, "cron"),
        ({"cron": "@daily", "tz": "Europe/Atlantis"}, InvalidSchedule, "tz"),
        ({"every": 0}, InvalidSchedule, "every"),
        ({"cron": "@daily", "payload": {"kind": 5}}, InvalidPayload, None),
        ({"cron": "@daily", "payload": {}}, InvalidPayload, None),
        ({"cron": "@daily", "misfire": "sometimes"}, InvalidSchedule, "misfire"),
        ({"cron": "@daily", "misfire": "catch_up"}, InvalidSchedule, "catch_up_limit"),
        ({"cron": "@daily", "catch_up_limit": 3}, InvalidSchedule, "catch_up_limit"),
        ({"cron": "@daily", "jitter": -1}, InvalidSchedule, "jitter"),
    ],
)
def test_bad_input_is_a_typed_error_and_writes_nothing(
    tenant_id: uuid.UUID, kwargs: dict[str, Any], error: type[Exception], field: str | None
) -> None:
    kwargs.setdefault("payload", {"kind": "ok"})
    before = counts()
    with pytest.raises(error) as err:
        schedules.create(tenant_id, "bad", report, **kwargs)
    assert counts() == before
    if field is not None:
        assert err.value.fields == (field,)  # type: ignore[attr-defined]
    if "payload" in kwargs and error is InvalidPayload:
        assert "5" not in str(err.value)


def test_bad_names_types_and_taken_names(tenant_id: uuid.UUID) -> None:
    schedules.create(tenant_id, "taken", report, cron="@daily", payload={"kind": "t"})
    before = counts()
    for name in ("", "Upper", "with space", "x" * 101, "a\x00b", "-lead"):
        with pytest.raises(InvalidSchedule):
            schedules.create(tenant_id, name, report, cron="@daily", payload={"kind": "t"})
    with pytest.raises(UnknownJobType):
        schedules.create(tenant_id, "t2", "no_such_type", cron="@daily")
    with pytest.raises(ScheduleExists):
        schedules.create(tenant_id, "taken", report, cron="@hourly", payload={"kind": "t"})
    with pytest.raises(UnknownTenant):
        schedules.create(uuid.uuid4(), "t3", report, cron="@daily", payload={"kind": "t"})
    assert counts() == before


def test_paused_schedule_run_now_is_refused_and_writes_nothing(tenant_id: uuid.UUID) -> None:
    made = schedules.create(
        tenant_id, "p", report, cron="@daily", payload={"kind": "p"}, paused=True
    )
    assert made.status is ScheduleStatus.PAUSED and made.next_run_at is None
    before = counts()
    with pytest.raises(ScheduleNotActive):
        schedules.run_now(tenant_id, made.id)
    schedules.archive(tenant_id, made.id)
    with pytest.raises(ScheduleNotActive):
        schedules.run_now(tenant_id, made.id)
    assert counts()[1:] == before[1:]  # no job, no event


def test_another_tenants_schedule_looks_missing(tenant_id: uuid.UUID) -> None:
    theirs = schedules.create(make_tenant(), "theirs", report, cron="@daily", payload={"kind": "x"})
    before = counts()
    calls = [
        lambda: schedules.get(tenant_id, theirs.id),
        lambda: schedules.update(tenant_id, theirs.id, cron="@hourly"),
        lambda: schedules.pause(tenant_id, theirs.id),
        lambda: schedules.resume(tenant_id, theirs.id),
        lambda: schedules.archive(tenant_id, theirs.id),
        lambda: schedules.run_now(tenant_id, theirs.id),
        lambda: schedules.upcoming(tenant_id, theirs.id),
        lambda: schedules.get_by_name(tenant_id, "theirs"),
    ]
    for call in calls:
        with pytest.raises(ScheduleNotFound) as err:
            call()
        assert isinstance(err.value, ProducerError)
    assert counts() == before
    assert schedules.get(theirs.tenant_id, theirs.id) == theirs


def test_a_failed_update_changes_nothing(tenant_id: uuid.UUID) -> None:
    made = schedules.create(tenant_id, "u", report, cron="@daily", payload={"kind": "u"})
    schedules.create(tenant_id, "other", report, cron="@daily", payload={"kind": "o"})
    for change in (
        {"cron": "bad"},
        {"tz": "Nowhere/Town"},
        {"payload": {"copies": "many"}},
        {"job_type": "no_such_type"},
        {"name": "other"},
    ):
        with pytest.raises((ProducerError, JobsError)):
            schedules.update(tenant_id, made.id, **change)
    assert schedules.get(tenant_id, made.id) == made


@PROPERTY
@given(data=st.data())
def test_hostile_create_is_refused_cleanly(tenant_id: uuid.UUID, data: st.DataObject) -> None:
    args = Arguments(data, "tenant", "name", "cron", "tz", "payload", "jitter", "limit")
    tenant = args.draw("tenant", st.just(tenant_id), non_uuids)
    name = args.draw("name", st.uuids().map(lambda u: u.hex[:20]), hostile_text)
    cron = args.draw("cron", st.sampled_from(["@daily", "*/5 * * * *"]), hostile_text)
    tz = args.draw("tz", st.just("Europe/Berlin"), st.one_of(hostile_text, garbage))
    payload = args.draw("payload", st.just({"kind": "h"}), st.one_of(garbage, st.just({})))
    jitter = args.draw("jitter", st.integers(0, 60), st.one_of(numbers, garbage))
    limit = args.draw("limit", st.just(5), st.one_of(numbers, garbage))
    documented = (ProducerError, UnknownTenant)
    call_checked(
        lambda: schedules.create(
            tenant, name, report, cron=cron, tz=tz, payload=payload, jitter=jitter,
            misfire="catch_up", catch_up_limit=limit,
        ),
        documented,
        TABLES,
    )  # fmt: skip
