"""When a schedule's slots are: a cron expression in an IANA time zone, or a fixed interval.

A slot is an instant (kept in UTC). Cron expressions have five fields (minute, hour, day of
month, month, day of week) or one of the names ``@yearly`` (``@annually``), ``@monthly``,
``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``; cronsim parses and evaluates them
(docs/schedules.md says why cronsim). Daylight-saving transitions follow Debian cron, which
cronsim copies:

* an expression whose minute and hour fields are both fixed (``30 2 * * *``, ``0 9-17 * * 1-5``)
  names wall-clock times: a time that does not exist that day (spring forward) is moved to the
  first minute after the gap (02:30 -> 03:00), and a time that exists twice (fall back) fires
  once, at its first occurrence;
* an expression with a ``*`` in the minute or hour field (``0 * * * *``, ``*/15 * * * *``)
  follows elapsed time: the hour that does not exist has no slots, and the hour that happens
  twice has its slots twice (they are different instants: an hourly schedule fires 25 times
  that day).

An interval schedule's slots are the multiples of the interval since the Unix epoch (UTC), so
``every=10`` fires at :00, :10, :20 seconds of every minute; time zones play no part.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import SupportsFloat

from cronsim import CronSim, CronSimError

from pgjobs.db.timestamps import LATEST
from pgjobs.db.validation import as_text
from pgjobs.schedules.errors import InvalidSchedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Where interval slots are counted from."""
MAX_INTERVAL_SECONDS = 366 * 86400
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SECOND = timedelta(seconds=1)
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)
"""Where a new expression is first evaluated: one that finds no slot within cronsim's 50 years
from here never fires."""


@dataclass(frozen=True, slots=True)
class Timing:
    """A validated cron expression (in ``timezone``) or interval; build with :func:`timing`."""

    cron: str | None
    interval_seconds: int | None
    timezone: str = "UTC"

    def slots(self, start: datetime, end: datetime | None = None) -> Iterator[datetime]:
        """Slots from ``start`` (included) to ``end`` (included; None: without end), in order,
        in UTC. Ends before :data:`pgjobs.db.timestamps.LATEST`."""
        found = self._interval_slots(start) if self.cron is None else self._cron_slots(start)
        for slot in found:
            if slot >= LATEST or (end is not None and slot > end):
                return
            yield slot

    def first_at_or_after(self, moment: datetime) -> datetime | None:
        """The first slot at or after ``moment`` (None: there is none before LATEST)."""
        return next(self.slots(moment), None)

    def first_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after ``moment``."""
        return self.first_at_or_after(moment + timedelta(microseconds=1))

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The first ``count`` slots at or after ``moment``."""
        found = self.slots(moment)
        return [slot for _, slot in zip(range(count), found, strict=False)]

    def latest_before(self, end: datetime, floor: datetime, count: int) -> list[datetime]:
        """The latest ``count`` slots in ``[floor, end)``, in order. Costs about as much as
        the slots it returns, however far back ``floor`` is: the search looks back in windows
        growing eightfold until it has found enough or reached ``floor``."""
        if count <= 0 or floor >= end:
            return []
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            last = _ceil_index(end, step) - 1
            first = max(_ceil_index(floor, step), last - count + 1)
            return [EPOCH + k * step for k in range(first, last + 1)]
        window = timedelta(hours=1)
        while True:
            low = max(floor, end - window)
            found: deque[datetime] = deque(maxlen=count)
            for slot in self.slots(low, end):
                if slot >= end:
                    break
                found.append(slot)
            if len(found) >= count or low == floor:
                return list(found)
            window *= 8

    def _interval_slots(self, start: datetime) -> Iterator[datetime]:
        assert self.interval_seconds is not None
        step = timedelta(seconds=self.interval_seconds)
        k = _ceil_index(start, step)
        while True:
            try:
                yield EPOCH + k * step
            except OverflowError:  # pragma: no cover - past datetime.max, long after LATEST
                return
            k += 1

    def _cron_slots(self, start: datetime) -> Iterator[datetime]:
        assert self.cron is not None
        zone = zone_of(self.timezone)
        # cronsim drops microseconds and yields matches strictly after the moment it starts
        # from: start one second before the first whole second at or after ``start``.
        whole = start.replace(microsecond=0)
        base = (whole if whole == start else whole + _SECOND) - _SECOND
        last: datetime | None = None
        for local in CronSim(expression(self.cron), base.astimezone(zone)):
            slot = local.astimezone(UTC)
            # A wall-clock time found from inside a repeated hour can be its first occurrence,
            # earlier than ``start``: slots only move forward.
            if slot < start or (last is not None and slot <= last):
                continue
            last = slot
            yield slot


def _ceil_index(moment: datetime, step: timedelta) -> int:
    """The index of the first interval slot at or after ``moment``."""
    return -((EPOCH - moment) // step)


def expression(cron: str) -> str:
    """The five fields a cron text stands for (a name like ``@hourly`` expanded)."""
    return ALIASES.get(cron.strip().lower(), cron)


@functools.cache
def zone_names() -> frozenset[str]:
    """Every IANA time zone name this machine knows (the system's database, or tzdata's)."""
    return frozenset(zoneinfo.available_timezones())


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def timing(*, cron: object = None, every: object = None, tz: object = "UTC") -> Timing:
    """A :class:`Timing` from caller input: exactly one of ``cron`` (five fields or a name)
    and ``every`` (whole seconds, or a ``timedelta``), and an IANA time zone name.

    Raises :class:`InvalidSchedule` naming the field, never repeating the value."""
    if (cron is None) == (every is None):
        raise InvalidSchedule("give cron or every, not both and not neither", ("cron", "every"))
    zone = _zone_name(tz)
    if every is not None:
        return Timing(None, _interval(every), zone)
    text = " ".join(
        as_text(cron, "cron", min_length=1, max_length=200, error=InvalidSchedule).split()
    )
    if text.startswith("@"):
        text = text.lower()
    fields = expression(text).split()
    if text.startswith("@") and text not in ALIASES:
        raise InvalidSchedule.for_field("cron", f"names one of {', '.join(ALIASES)}")
    if len(fields) != 5:
        raise InvalidSchedule.for_field(
            "cron", "must have 5 fields (minute hour day month weekday)"
        )
    try:
        probe = CronSim(" ".join(fields), _PROBE)
        next(probe)
    except CronSimError as exc:
        raise InvalidSchedule.for_field("cron", f"does not parse ({exc})") from None
    except StopIteration:
        raise InvalidSchedule.for_field("cron", "never fires") from None
    return Timing(text, None, zone)


def _zone_name(tz: object) -> str:
    name = as_text(tz, "tz", min_length=1, max_length=64, error=InvalidSchedule)
    if name not in zone_names():
        raise InvalidSchedule.for_field("tz", "must be an IANA time zone name (e.g. Europe/Berlin)")
    return name


def _interval(every: object) -> int:
    return whole_seconds(every, "every", 1, MAX_INTERVAL_SECONDS)


def whole_seconds(value: object, field: str, low: int, high: int) -> int:
    """Whole seconds from ``low`` to ``high``, given as a number or a ``timedelta``."""
    try:
        if isinstance(value, bool) or not isinstance(value, timedelta | SupportsFloat):
            raise TypeError(value)
        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidSchedule.for_field(field, "must be seconds or a timedelta") from None
    if not low <= seconds <= high or seconds != int(seconds):
        raise InvalidSchedule.for_field(field, f"must be whole seconds from {low} to {high}")
    return int(seconds)
