"""Timestamps at the ends of the ranges: the window every write keeps to, and a loader that
reads back any value a ``timestamptz`` column can hold.

PostgreSQL stores times from 4713 BC to 294276 AD, and ``infinity``; Python's ``datetime``
stops at the years 1 and 9999, and psycopg raises ``DataError`` ("timestamp too large (after
year 10K)") on any value beyond, for the whole result. One such row would break every query
that reads it, for good. So:

* writes keep to ``[EARLIEST, LATEST)`` (checked by ``db.validation.as_moment`` before any
  statement): a day inside year 1, and a year before the end of 9999, so every value read back
  can be shown in any time zone and a delay added by the database's clock (which may differ
  from ours) still lands inside;
* reads of a value beyond Python's range (written by hand or before this rule) give
  ``datetime.max`` (or ``datetime.min``) in UTC instead of an error: the row stays readable,
  and the far end of the range says "later than anything representable".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format
from sqlalchemy import Engine, event

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
"""The earliest moment a caller may write (inclusive)."""
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""The first moment a caller may not write: ``run_at`` and every other given time stay before it."""

FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
"""What a stored time after 9999 (or ``infinity``) reads as."""
FAR_PAST = datetime.min.replace(tzinfo=UTC)
"""What a stored time before the year 1 (or ``-infinity``) reads as."""

_TIMESTAMPTZ = psycopg.adapters.types["timestamptz"].oid


class BoundedTimestamptzLoader(Loader):
    """psycopg's own ``timestamptz`` text loader for every value a ``datetime`` can hold, and
    :data:`FAR_FUTURE` / :data:`FAR_PAST` for the values beyond (instead of ``DataError``)."""

    format = Format.TEXT

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        default = psycopg.adapters.get_loader(oid, Format.TEXT)
        assert default is not None
        self._load = default(oid, context).load

    def load(self, data: Buffer) -> Any:
        try:
            return self._load(data)
        except psycopg.DataError:
            beyond = beyond_python(bytes(data))
            if beyond is None:
                raise
            return beyond


def beyond_python(text: bytes) -> datetime | None:
    """The stand-in for a timestamptz text outside Python's range; None if ``text`` is not one
    (some other malformed value, which stays an error)."""
    if text == b"infinity":
        return FAR_FUTURE
    if text == b"-infinity" or text.endswith(b" BC"):
        return FAR_PAST
    year, dash, _ = text.partition(b"-")
    if dash and year.isdigit() and len(year) > 4:
        return FAR_FUTURE
    return None


def read_any_timestamp(engine: Engine) -> None:
    """Make every connection of ``engine`` read timestamps with :class:`BoundedTimestamptzLoader`
    (per connection: an application's own psycopg connections are left as they are)."""

    @event.listens_for(engine, "connect")
    def _register(dbapi_connection: Any, _record: Any) -> None:
        use_bounded_loader(dbapi_connection)


def use_bounded_loader(connection: psycopg.BaseConnection[Any]) -> None:
    """Make one psycopg connection (threaded or asyncio) read timestamps with
    :class:`BoundedTimestamptzLoader`."""
    connection.adapters.register_loader(_TIMESTAMPTZ, BoundedTimestamptzLoader)
