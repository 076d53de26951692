"""Schedule timing without a database: parsing, slots across daylight-saving transitions
against a reference computation, misfire planning, slot keys.

The reference below states the documented rules (docs/schedules.md, "Daylight saving")
directly, minute by minute with zoneinfo, sharing no code with cronsim or
pgjobs/schedules/timing.py.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgjobs.db.models.job_schedule import MisfirePolicy
from pgjobs.schedules.errors import InvalidSchedule
from pgjobs.schedules.firing import jitter, parse_key, plan, run_now_key, slot_key
from pgjobs.schedules.timing import Timing, timing

MINUTE = timedelta(minutes=1)

# The four transitions of 2026 the tests walk across (UTC instants).
TRANSITIONS = {
    "Europe/Berlin": (datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)),
    "America/New_York": (
        datetime(2026, 3, 8, 7, tzinfo=UTC),
        datetime(2026, 11, 1, 6, tzinfo=UTC),
    ),
}
SCHEDULES = {"hourly": "@hourly", "daily at 02:30": "30 2 * * *", "every 15 min": "*/15 * * * *"}


# --- the reference ---------------------------------------------------------------------------


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    aware = wall.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def reference(kind: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Slots in [start, end] by the documented rules."""
    zone = ZoneInfo(tz)
    if kind == "daily at 02:30":  # wall-clock time: moved out of a gap, first of two
        out = []
        day = start.astimezone(zone).date() - timedelta(days=1)
        while day <= end.astimezone(zone).date() + timedelta(days=1):
            wall = datetime(day.year, day.month, day.day, 2, 30)
            while not _exists(wall, zone):
                wall += MINUTE
            slot = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            if start <= slot <= end:
                out.append(slot)
            day += timedelta(days=1)
        return out
    minutes = {0} if kind == "hourly" else {0, 15, 30, 45}  # elapsed time: every instant
    moment = start.replace(second=0, microsecond=0)
    if moment < start:
        moment += MINUTE
    out = []
    while moment <= end:
        if moment.astimezone(zone).minute in minutes:
            out.append(moment)
        moment += MINUTE
    return out


def window(tz: str, which: int, offset_minutes: int, span_minutes: int) -> tuple[datetime, ...]:
    start = TRANSITIONS[tz][which] + timedelta(minutes=offset_minutes, seconds=offset_minutes % 7)
    return start, start + timedelta(minutes=span_minutes)


windows = st.tuples(
    st.sampled_from(sorted(TRANSITIONS)),
    st.integers(0, 1),
    st.integers(-3 * 1440, 2 * 1440),
    st.integers(0, 3 * 1440),
)


# --- slots against the reference ----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@settings(max_examples=60, deadline=None)
@given(where=windows)
def test_slots_across_dst_match_the_reference(kind: str, where: tuple[str, int, int, int]) -> None:
    tz, which, offset, span = where
    start, end = window(tz, which, offset, span)
    found = list(timing(cron=SCHEDULES[kind], tz=tz).slots(start, end))
    assert found == reference(kind, tz, start, end)


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@settings(max_examples=40, deadline=None)
@given(where=windows, count=st.integers(1, 30))
def test_latest_before_matches_the_reference(
    kind: str, where: tuple[str, int, int, int], count: int
) -> None:
    tz, which, offset, span = where
    floor, end = window(tz, which, offset, span)
    found = timing(cron=SCHEDULES[kind], tz=tz).latest_before(end, floor, count)
    expected = [s for s in reference(kind, tz, floor, end) if s < end][-count:]
    assert found == expected


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@settings(max_examples=40, deadline=None)
@given(
    where=windows,
    passes=st.lists(st.integers(1, 200), min_size=1, max_size=40),
)
def test_passes_at_any_times_fire_every_slot_once(
    kind: str, where: tuple[str, int, int, int], passes: list[int]
) -> None:
    """The scheduler's view: passes at arbitrary moments (a generous grace, so nothing is
    missed) fire each reference slot exactly once, whatever the transition does."""
    tz, which, offset, _ = where
    start, _ = window(tz, which, offset, 0)
    spec = timing(cron=SCHEDULES[kind], tz=tz)
    next_run = spec.first_at_or_after(start)
    assert next_run is not None
    now = start
    fired: list[datetime] = []
    for gap in passes:
        now += timedelta(minutes=gap, seconds=gap % 13)
        if next_run > now:
            continue
        step = plan(spec, next_run, now, MisfirePolicy.SKIP, None, timedelta(days=30))
        fired += step.slots
        next_run = step.next_run_at
    assert fired == [s for s in reference(kind, tz, start, now) if s < next_run]
    assert len(fired) == len(set(fired))


def test_the_documented_transitions() -> None:
    """The examples docs/schedules.md gives, spelled out."""
    berlin = "Europe/Berlin"
    daily = timing(cron="30 2 * * *", tz=berlin)
    # spring: 02:30 does not exist on 2026-03-29; it is moved to 03:00 CEST (01:00 UTC)
    assert daily.upcoming(datetime(2026, 3, 28, 12, tzinfo=UTC), 2) == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    # autumn: 02:30 happens twice on 2026-10-25; it fires once, at the first (CEST)
    assert daily.upcoming(datetime(2026, 10, 24, 12, tzinfo=UTC), 2) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    hourly = timing(cron="@hourly", tz=berlin)
    autumn_day = list(
        hourly.slots(
            datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 22, 59, tzinfo=UTC)
        )
    )
    assert len(autumn_day) == 25  # the local day has 25 hours, each fired
    spring_day = list(
        hourly.slots(
            datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 21, 59, tzinfo=UTC)
        )
    )
    assert len(spring_day) == 23
    # from inside the repeated hour, the first 02:30 is already past: next is tomorrow's
    inside = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET, the second 02:15
    assert daily.first_at_or_after(inside) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_names_mean_their_expressions(cron: str, fields: str) -> None:
    after = datetime(2026, 5, 17, 13, 7, tzinfo=UTC)
    named = timing(cron=cron).upcoming(after, 5)
    assert named == timing(cron=fields).upcoming(after, 5)


def test_whitespace_is_normalised_and_names_lowercased() -> None:
    assert timing(cron="  */5   *  * * MON-FRI ").cron == "*/5 * * * MON-FRI"
    assert timing(cron="@Hourly").cron == "@hourly"


@pytest.mark.parametrize(
    "cron",
    [
        "",
        "   ",
        "* * * *",  # four fields
        "0 * * * * *",  # six fields (seconds): not cron's five
        "61 * * * *",
        "* 24 * * *",
        "*/0 * * * *",
        "0 0 30 2 *",  # 30 February: never
        "@fortnightly",
        "a b c d e",
        "0 0 * * 8",
        "1-",
        "0\x00 * * * *",
        "x" * 201,
        5,
        None if False else b"* * * * *",
    ],
)
def test_bad_cron_is_refused_naming_the_field(cron: object) -> None:
    with pytest.raises(InvalidSchedule) as err:
        timing(cron=cron)
    assert err.value.fields == ("cron",)
    if isinstance(cron, str) and len(cron) > 3:
        assert cron.strip() not in str(err.value)  # the value is never repeated


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "utc+2", "../../etc/passwd", "Europe/", 7])
def test_unknown_time_zone_is_refused(tz: object) -> None:
    with pytest.raises(InvalidSchedule) as err:
        timing(cron="@daily", tz=tz)
    assert err.value.fields == ("tz",)


@pytest.mark.parametrize(
    "every", [0, -1, 0.5, 1.5, float("nan"), float("inf"), 366 * 86400 + 1, "10", True]
)
def test_bad_interval_is_refused(every: object) -> None:
    with pytest.raises(InvalidSchedule) as err:
        timing(every=every)
    assert err.value.fields == ("every",)


def test_cron_and_every_are_exclusive() -> None:
    with pytest.raises(InvalidSchedule):
        timing()
    with pytest.raises(InvalidSchedule):
        timing(cron="@daily", every=60)


def test_interval_slots_are_multiples_since_the_epoch() -> None:
    every10 = timing(every=timedelta(seconds=10))
    after = datetime(2026, 1, 1, 12, 0, 3, 500, tzinfo=UTC)
    assert every10.upcoming(after, 3) == [
        datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, 20, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC),
    ]
    exact = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    assert every10.first_at_or_after(exact) == exact
    assert every10.first_after(exact) == exact + timedelta(seconds=10)
    assert Timing(None, 7, "Asia/Tokyo").upcoming(EPOCH_PLUS(7), 1) == [EPOCH_PLUS(7)]


def EPOCH_PLUS(seconds: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


# --- misfire planning -------------------------------------------------------------------------

NOW = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
TEN_MINUTES_AGO = datetime(2030, 1, 1, 11, 50, tzinfo=UTC)
GRACE = timedelta(seconds=60)
EVERY_MINUTE = timing(cron="* * * * *")


def _at(hour: int, minute: int) -> datetime:
    return datetime(2030, 1, 1, hour, minute, tzinfo=UTC)


def test_skip_drops_missed_slots_and_fires_the_ones_on_time() -> None:
    step = plan(EVERY_MINUTE, TEN_MINUTES_AGO, NOW, MisfirePolicy.SKIP, None, GRACE)
    assert step.slots == (_at(12, 0),)  # 30 s late: within the grace
    assert step.missed
    assert step.next_run_at == _at(12, 1)


def test_run_once_fires_one_job_for_every_due_slot() -> None:
    step = plan(EVERY_MINUTE, TEN_MINUTES_AGO, NOW, MisfirePolicy.RUN_ONCE, None, GRACE)
    assert step.slots == (_at(12, 0),)
    # when no slot is on time, the one job is for the latest missed slot
    late = NOW + timedelta(seconds=45)  # 12:01:15, grace 60 s: 12:00 is 75 s late
    step = plan(EVERY_MINUTE, TEN_MINUTES_AGO, late, MisfirePolicy.RUN_ONCE, None, GRACE)
    assert step.slots == (_at(12, 1),)
    step = plan(EVERY_MINUTE, TEN_MINUTES_AGO, late, MisfirePolicy.RUN_ONCE, None, timedelta(0))
    assert step.slots == (_at(12, 1),)
    step = plan(
        EVERY_MINUTE, TEN_MINUTES_AGO, late, MisfirePolicy.RUN_ONCE, None, timedelta(seconds=10)
    )
    assert step.slots == (_at(12, 1),)


def test_catch_up_fires_the_latest_n_missed_slots() -> None:
    step = plan(EVERY_MINUTE, TEN_MINUTES_AGO, NOW, MisfirePolicy.CATCH_UP, 3, GRACE)
    assert step.slots == (_at(11, 57), _at(11, 58), _at(11, 59), _at(12, 0))
    step = plan(EVERY_MINUTE, TEN_MINUTES_AGO, NOW, MisfirePolicy.CATCH_UP, 1000, GRACE)
    assert step.slots == (*tuple(_at(11, m) for m in range(50, 60)), _at(12, 0))


def test_a_slot_within_the_grace_is_never_a_misfire() -> None:
    for policy in MisfirePolicy:
        step = plan(
            EVERY_MINUTE, _at(11, 59), NOW, policy, 2 if policy == "catch_up" else None, GRACE * 2
        )
        assert step.slots == (_at(11, 59), _at(12, 0))
        assert not step.missed


def test_catch_up_costs_what_it_fires_however_long_ago() -> None:
    years_ago = datetime(2020, 1, 1, tzinfo=UTC)
    step = plan(EVERY_MINUTE, years_ago, NOW, MisfirePolicy.CATCH_UP, 5, GRACE)
    assert len(step.slots) == 6
    step = plan(timing(every=1), years_ago, NOW, MisfirePolicy.RUN_ONCE, None, GRACE)
    assert step.slots == (NOW.replace(microsecond=0),)


# --- keys and jitter ------------------------------------------------------------------------------


def test_slot_keys_name_the_schedule_and_slot() -> None:
    schedule_id = uuid.uuid4()
    slot = datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # first occurrence
    key = slot_key(schedule_id, slot)
    assert key == f"schedule:{schedule_id}:2026-10-25T00:30:00Z"
    ref = parse_key(key)
    assert ref is not None and ref.schedule_id == schedule_id
    assert ref.slot == slot.astimezone(UTC)  # PEP 495: compare ambiguous times in UTC
    manual = parse_key(run_now_key(schedule_id))
    assert manual is not None and manual.schedule_id == schedule_id and manual.slot is None
    for other in (None, "", "img-42", f"schedule:{schedule_id}:tomorrow", key + "x"):
        assert parse_key(other) is None


@given(st.text(max_size=80), st.integers(0, 86400))
def test_jitter_is_stable_and_within_bounds(key: str, seconds: int) -> None:
    delay = jitter(key, seconds)
    assert delay == jitter(key, seconds)
    assert timedelta(0) <= delay <= timedelta(seconds=seconds)


def test_dates_are_days_apart_by_the_local_calendar() -> None:
    """Daily slots in New York around the spring change are 23 hours apart in UTC once."""
    daily = timing(cron="0 9 * * *", tz="America/New_York")
    slots = daily.upcoming(datetime(2026, 3, 6, tzinfo=UTC), 4)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert gaps == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]
    assert [s.astimezone(ZoneInfo("America/New_York")).date() for s in slots] == [
        date(2026, 3, 6),
        date(2026, 3, 7),
        date(2026, 3, 8),
        date(2026, 3, 9),
    ]
