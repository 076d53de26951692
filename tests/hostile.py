"""Hostile input for property tests: what a careless or malicious caller passes, and the checks
every refusal must pass (a documented error, a message that prints, nothing written).

The strategies mix valid values in, so that one hostile argument at a time reaches the checks
behind the others.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import text

from pgjobs.db.engine import transaction
from pgjobs.db.errors import JobsError
from pgjobs.producer import job_type

T = TypeVar("T")

PROPERTY = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
"""Settings of every property test here: a modest number of examples (``HOSTILE_EXAMPLES=500``
runs more, to hunt), no deadline (each example talks to PostgreSQL), one tenant per test
function shared by its examples."""


class AnyPayload(BaseModel):
    """A payload model that lets anything through validation, so the serialisation and jsonb
    checks behind it are reached."""

    data: Any = None
    mapping: dict[str, Any] = {}


any_type = job_type("hostile_any", AnyPayload, queue="hostile")


# --- values -------------------------------------------------------------------------------------

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
small_text = st.text(max_size=12)


def _with(inside: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, c, b: a + c + b, small_text, inside, small_text)


nul_text = _with(st.just("\x00"))
surrogate_text = _with(surrogates)
hostile_text = st.one_of(
    small_text,
    nul_text,
    surrogate_text,
    st.just(""),
    st.text(min_size=200, max_size=400),
    st.just("'; DROP TABLE content_jobs; --"),
)
"""Strings PostgreSQL cannot store (NUL, lone surrogates), empty, long, or just odd."""

huge_ints = st.one_of(
    st.integers(2**63 - 2, 2**63 + 2),
    st.integers(10**22, 10**23 - 1),  # 23 digits
    st.just(10**400),
    st.integers(-(10**30), -1),
)
numbers = st.one_of(
    st.integers(-5, 200),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(1e12),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
"""Numbers of every kind: small, past bigint, past float, NaN, infinite, negative, bools."""

garbage = st.one_of(
    st.none(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.builds(object),
    st.just({"a": 1}),
)

non_uuids = st.one_of(
    hostile_text,
    st.just("not-a-uuid"),
    st.just("123e4567-e89b-12d3-a456-42661417400g"),
    st.uuids().map(lambda u: str(u)[:-1]),
    st.integers(),
    st.binary(min_size=16, max_size=16),
    st.none(),
)
"""Tenant and row ids that are not UUIDs."""

_offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
)
odd_zones = st.one_of(
    st.just(UTC),
    st.builds(timezone, _offsets),
    st.sampled_from([timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]),
)
far_datetimes = st.one_of(
    st.datetimes(timezones=odd_zones),
    st.datetimes(min_value=datetime(9990, 1, 1), timezones=odd_zones),
    st.datetimes(max_value=datetime(1, 1, 3), timezones=odd_zones),
    st.datetimes(),  # naive
    st.just(datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))),
    st.just(datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))),
    st.just(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))),
)
"""Datetimes near and at the ends of Python's range, in odd time zones, and naive ones."""

delays = st.one_of(
    numbers,
    st.timedeltas(),
    st.just(timedelta.max),
    st.just(Decimal("sNaN")),
    st.just("5"),
    st.none(),
)


def cursor_of(value: object) -> str:
    raw = f"v1:{value}".encode(errors="surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


cursors = st.one_of(
    huge_ints.map(cursor_of),
    st.integers(-3, 10**6).map(cursor_of),
    st.binary(max_size=30).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    hostile_text.map(cursor_of),
    st.sampled_from(
        ["v1:1", "djI6MQ", "djE6", "djE6IDE", "djE6KzE", "djE6MV8w", "!!!", "====", ""]
    ),
    hostile_text,
    st.integers(),
    st.none(),
)
"""Cursors: forged ones with ids past bigint (23 digits), negative or spaced ids, other
versions, invalid base64, non-strings."""


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    hostile_text,
    st.binary(max_size=8),
    st.builds(object),
    st.just(b"\xff\xfe"),
)
json_like = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)
    ),
    max_leaves=10,
)
deep_values = st.integers(200, 10_000).map(nested)
hostile_payload_values = st.one_of(json_like, deep_values, st.just(10**140_000 + 1))
"""Values for an ``Any`` payload field: non-JSON objects, invalid UTF-8 bytes, NUL and lone
surrogates in strings and keys, deep nesting, numbers longer than numeric holds."""


class Arguments:
    """Draws a call's arguments: all valid but one hostile (or none, or several), so that each
    check is reached with the arguments before it passing."""

    def __init__(self, data: st.DataObject, *names: str) -> None:
        self.data = data
        self.target = data.draw(st.sampled_from([*names, "(none)", "(several)"]), label="hostile")

    def draw(
        self, name: str, valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]
    ) -> Any:
        bad = self.target == name or (self.target == "(several)" and self.data.draw(st.booleans()))
        if bad:
            event(f"hostile: {name}")
        return self.data.draw(hostile if bad else valid, label=name)


# --- checks -------------------------------------------------------------------------------------


JOB_TABLES = ("content_jobs", "job_events")
REGISTRY_TABLES = ("tenants", "app_credentials", "mcp_servers")


def row_counts(tables: tuple[str, ...] = JOB_TABLES) -> tuple[int, ...]:
    """Rows of each table in the whole database: a refusal must change none, for any
    tenant."""
    counts = ", ".join(f"(SELECT count(*) FROM {table})" for table in tables)
    with transaction() as conn:
        return tuple(int(n) for n in conn.execute(text(f"SELECT {counts}")).one())


def refused_cleanly(exc: BaseException, documented: tuple[type[JobsError], ...]) -> None:
    """``exc`` is one of the documented errors (a bare ``DatabaseError`` never is) and its
    message prints."""
    assert isinstance(exc, documented), f"undocumented {type(exc).__name__}: {exc}"
    str(exc).encode()  # no lone surrogate in a message: it must print anywhere


def call_checked(
    call: Callable[[], T],
    documented: tuple[type[JobsError], ...],
    tables: tuple[str, ...] = JOB_TABLES,
) -> T | JobsError:
    """Run ``call``: its result, or the documented error it raised, having checked that the
    refusal wrote nothing. Anything else propagates and fails the test."""
    before = row_counts(tables)
    try:
        result = call()
    except JobsError as exc:
        event(f"refused: {type(exc).__name__}")
        refused_cleanly(exc, documented)
        assert row_counts(tables) == before, "a refused call wrote rows"
        return exc
    event("succeeded")
    return result
