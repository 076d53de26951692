"""Checks on caller input that every public function shares: ids, text, integers, moments.

PostgreSQL refuses some values Python holds only after a round trip, as an untyped
``DatabaseError`` (``"abc"`` for a uuid column, text with a NUL character, an integer past
bigint), psycopg refuses others with its own exceptions (a lone surrogate cannot be encoded),
and a time past the year 9999 is written but cannot be read back. Each check here returns the
value in the form the statement takes, or raises ``error`` (``InvalidInput`` unless the caller
names a subclass: the producer passes its ``InvalidOption``) naming the field and the rule,
never the value, which may be a secret.
"""

from __future__ import annotations

import operator
import uuid
from datetime import UTC, datetime

from pgjobs.db.errors import InvalidInput
from pgjobs.db.storable import text_problem
from pgjobs.db.timestamps import EARLIEST, LATEST

BIGINT_MAX = 2**63 - 1
"""The largest id a bigint column holds."""


def as_uuid(value: object, field: str, error: type[InvalidInput] = InvalidInput) -> uuid.UUID:
    """A ``uuid.UUID``, or a string in a form ``uuid.UUID`` reads."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise error.for_field(field, "must be a UUID")


def as_text(
    value: object,
    field: str,
    *,
    min_length: int = 0,
    max_length: int | None = None,
    error: type[InvalidInput] = InvalidInput,
) -> str:
    """A string PostgreSQL can store, ``min_length`` to ``max_length`` characters long."""
    if not isinstance(value, str):
        raise error.for_field(field, "must be a string")
    if max_length is not None and not min_length <= len(value) <= max_length:
        raise error.for_field(field, f"must be {min_length} to {max_length} characters")
    problem = text_problem(value)
    if problem is not None:
        raise error.for_field(field, problem)
    return value


def as_int(
    value: object, field: str, low: int, high: int, error: type[InvalidInput] = InvalidInput
) -> int:
    """An integer (not a bool; numpy's integers are fine) in ``[low, high]``."""
    try:
        if isinstance(value, bool):
            raise TypeError(field)
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise error.for_field(field, "must be an integer") from None
    if not low <= number <= high:
        raise error.for_field(field, f"must be between {low} and {high}")
    return number


def as_id(value: object, field: str, error: type[InvalidInput] = InvalidInput) -> int:
    """A row id: an integer from 1 to the largest bigint."""
    return as_int(value, field, 1, BIGINT_MAX, error)


def as_aware(value: object, field: str, error: type[InvalidInput] = InvalidInput) -> datetime:
    """A timezone-aware datetime (any: for comparing with a column, not for writing)."""
    if not isinstance(value, datetime):
        raise error.for_field(field, "must be a datetime")
    if value.utcoffset() is None:
        raise error.for_field(field, "must be timezone-aware")
    return value


def as_moment(value: object, field: str, error: type[InvalidInput] = InvalidInput) -> datetime:
    """A timezone-aware datetime a row may hold: in ``[EARLIEST, LATEST)``
    (pgjobs/db/timestamps.py)."""
    moment = as_aware(value, field, error)
    try:
        inside = EARLIEST <= moment.astimezone(UTC) < LATEST
    except OverflowError:  # datetime.max at a negative offset is past year 9999 in UTC
        inside = False
    if not inside:
        raise error.for_field(field, f"must be before {LATEST:%Y-%m-%d} and after year 1 (UTC)")
    return moment
